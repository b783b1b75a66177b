"""No Secret, or no Proxmox: reported, retried later, and recovered from without duplicates."""

from __future__ import annotations

from collections.abc import Callable

from proxmox_vm_operator.simulator import Simulator

from .driver import TOKEN_SECRET, Driver, FakeSecrets, vm_state


async def test_a_missing_secret_is_connection_unavailable_and_retried(
    sim: Simulator, secrets: FakeSecrets, make_driver: Callable[..., Driver]
) -> None:
    saved = dict(secrets.data or {})
    secrets.remove()
    driver = make_driver()
    records = await driver.run_passes(2)

    assert sim.requests == []
    assert all(r.result.retry_after is not None for r in records)
    ready = driver.ready
    assert (ready["status"], ready["reason"]) == ("False", "ConnectionUnavailable")
    assert "lab/pve" in ready["message"]
    assert [(e.type, e.reason) for e in driver.events] == [("Warning", "ConnectionUnavailable")]
    assert "vmid" not in driver.status

    secrets.restore(saved)
    await driver.settle()
    assert (driver.ready["status"], driver.status["phase"]) == ("True", "Running")
    assert TOKEN_SECRET not in repr(driver.status) + repr(driver.events)


async def test_an_unreachable_proxmox_is_ready_unknown_and_recovers(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.make_unreachable("refuse")
    driver = make_driver()
    records = await driver.run_passes(3)

    assert all(r.result.retry_after is not None for r in records)
    ready = driver.ready
    assert (ready["status"], ready["reason"]) == ("Unknown", "ProxmoxUnreachable")
    assert "vmid" not in driver.status
    assert not [e for e in driver.events if e.type == "Warning"]  # Unknown is not a failure

    sim.restore()
    await driver.settle()
    assert (driver.ready["status"], driver.status["phase"]) == ("True", "Running")
    assert vm_state(sim, driver.vmid)["running"] is True


async def test_an_outage_while_a_create_task_runs_keeps_the_task_and_creates_once(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver()
    await driver.run_passes(2)  # VMID, then the create call
    task = dict(driver.status["task"])
    assert task["action"] == "create"

    sim.make_unreachable("refuse")
    await driver.run_passes(2)
    assert driver.ready["reason"] == "ProxmoxUnreachable"
    assert driver.status["task"] == task  # not forgotten: the outcome is still unknown

    sim.restore()
    await driver.settle()
    assert driver.ready["status"] == "True"
    assert len([r for r in driver.writes() if r.path == "/nodes/pve1/qemu"]) == 1


async def test_a_missing_secret_is_looked_for_again_soon_then_every_30_seconds(
    secrets: FakeSecrets, make_driver: Callable[..., Driver]
) -> None:
    """GitOps often applies the Secret a moment after the VM, and nothing watches Secrets."""
    secrets.remove()
    driver = make_driver()
    records = [await driver.step() for _ in range(7)]
    assert [r.result.retry_after for r in records] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
