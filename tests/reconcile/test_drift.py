"""Changes made in Proxmox behind the operator's back are undone by the next passes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxmox_vm_operator.proxmox import ProxmoxClient
from proxmox_vm_operator.simulator import Simulator

from .driver import OWNER_TAG, Driver, tag_set, vm_state


async def finish(sim: Simulator, upid: object) -> None:
    """Wait until the simulator has ended the task; it must have succeeded."""
    for _ in range(500):
        task = next(t for t in sim.tasks() if t["upid"] == str(upid))
        if task["status"] == "stopped":
            assert task.get("exitstatus") == "OK", task
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {upid} still running")


async def test_a_vm_deleted_behind_our_back_is_recreated(
    sim: Simulator, admin: ProxmoxClient, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver(cores=2, tags=["web"])
    await driver.settle()
    vmid = driver.vmid
    await finish(sim, await admin.stop_vm("pve1", vmid))
    await finish(sim, await admin.delete_vm("pve1", vmid, purge=True))
    assert sim.vm(vmid) is None

    await driver.settle()

    state = vm_state(sim, vmid)
    assert state["running"] is True
    assert tag_set(state["config"]["tags"]) == {"web", OWNER_TAG}
    assert state["config"]["cores"] == 2
    assert driver.status["vmid"] == vmid
    assert (driver.ready["status"], driver.status["phase"]) == ("True", "Running")
    assert driver.event_reasons() == ["Creating", "Starting", "Creating", "Starting"]


async def test_a_vm_stopped_behind_our_back_is_started_again(
    sim: Simulator, admin: ProxmoxClient, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver()
    await driver.settle()
    vmid = driver.vmid
    await finish(sim, await admin.stop_vm("pve1", vmid))

    noticed = await driver.step()
    assert (noticed.writes[0].method, noticed.writes[0].path) == (
        "POST",
        f"/nodes/pve1/qemu/{vmid}/status/start",
    )
    await driver.settle()

    assert vm_state(sim, vmid)["running"] is True
    assert (driver.status["phase"], driver.status["powerState"]) == ("Running", "Running")
    assert driver.ready["status"] == "True"
    assert not [r for r in driver.writes() if r.path == "/nodes/pve1/qemu"][1:]  # not re-created


async def test_a_stopped_vm_started_behind_our_back_is_stopped_again(
    sim: Simulator, admin: ProxmoxClient, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver(powerState="Stopped")
    await driver.settle()
    vmid = driver.vmid
    await finish(sim, await admin.start_vm("pve1", vmid))

    await driver.settle()

    assert vm_state(sim, vmid)["running"] is False
    assert driver.status["phase"] == "Stopped"
    assert driver.event_reasons()[-1] == "Stopping"


async def test_a_vm_locked_by_a_backup_is_waited_for_and_not_written_to(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver(cores=1)
    await driver.settle()
    sim.set_lock(driver.vmid, "backup")
    driver.update_spec(cores=2)
    writes_before = len(driver.writes())

    records = await driver.run_passes(3)

    assert driver.writes()[writes_before:] == []
    assert all(r.result.retry_after is not None for r in records)
    assert (driver.ready["status"], driver.ready["reason"]) == ("Unknown", "VMLocked")
    sim.set_lock(driver.vmid, None)
    await driver.settle()
    assert vm_state(sim, driver.vmid)["pending"].get("cores") == 2
    assert driver.ready["status"] == "True"
