"""Step 4: only a positive answer that the VM is absent lets the finalizer go.

A refused or reset connection, a hung reply, a 401 and a 5xx are never "gone": the finalizer
stays, the pass backs off (capped), and once --stall-after has passed DeletionStalled says
ProxmoxUnreachable. When Proxmox answers again the destroy finishes.

A hang costs the client's read timeout (60 s, fixed by ClientPool) per pass, so the long runs
below use refused and reset connections; the hang test restores the simulator while the pass
is waiting and checks that nothing is released meanwhile.
"""

from __future__ import annotations

import asyncio

import pytest

from proxmox_vm_operator.controller.destroyer import DestroyRequest
from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator

from .conftest import MakeDriver
from .driver import (
    NAMESPACE,
    TOKEN_SECRET,
    Destroy,
    Driver,
    FakeSecrets,
    calls,
    ownership_tag,
    proxmox_vm,
    run_until,
)

VMID = 103
STALL_AFTER = 30.0


async def test_a_vm_that_is_absent_is_released_as_already_absent(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(999, tags=["unrelated"], running=True)  # another VM: the cluster answers

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.ALREADY_ABSENT
    assert len(destroy.passes) == 1
    # Not listed, and proven absent by a per-VM lookup on its node (a listing leaves out
    # what the token may not audit); the same listing shows no other VM with the object's tag.
    assert [(r.path, r.status) for r in sim.requests] == [
        ("/cluster/resources", 200),
        (f"/nodes/pve1/qemu/{VMID}/status/current", 500),
    ]
    assert sim.vm_exists(999)


def writes_made(sim: Simulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in sim.requests if r.method != "GET"]


def _assert_stall_reported_once_stall_after_passed(destroy: Destroy, until: float) -> None:
    """No stall before stall_after; ProxmoxUnreachable on every pass after it, until ``until``."""
    cut = [p for p in destroy.passes if 0 < p.at < until]
    assert cut, destroy.describe()
    for p in cut:
        assert p.outcome is None, f"released while unreachable:\n{destroy.describe()}"
        assert p.action == "wait", destroy.describe()
        if p.at < STALL_AFTER:
            assert p.stalled is None, destroy.describe()
        else:
            assert p.stalled is StallReason.PROXMOX_UNREACHABLE, destroy.describe()
    assert any(p.at >= STALL_AFTER for p in cut), destroy.describe()
    # Capped exponential backoff.
    delays = [p.retry_after for p in cut]
    assert delays == sorted(delays), destroy.describe()
    assert max(delays) <= 60
    assert destroy.record is not None
    assert destroy.record["lastError"]


@pytest.mark.parametrize("mode", ["refuse", "reset"])
async def test_proxmox_unreachable_mid_destroy_never_releases_and_stalls_then_finishes(
    sim: Simulator, make_driver: MakeDriver, mode: str
) -> None:
    driver = make_driver(stall_after=STALL_AFTER)
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    destroy = driver.add(proxmox_vm(VMID))
    await driver.step()  # the stop task is in flight
    assert destroy.passes[0].action == "stop"

    sim.make_unreachable(mode)
    await driver.run(max_passes=12, until=lambda d: d.elapsed >= 300)
    _assert_stall_reported_once_stall_after_passed(destroy, until=driver.elapsed)
    assert sim.vm_exists(VMID)

    sim.restore()
    restored = len(destroy.passes)
    await driver.run(max_passes=10)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
    # The stop task ended while Proxmox was cut off: it was followed up, not repeated.
    assert len(calls(sim.requests, "stop", VMID)) == 1
    assert len(calls(sim.requests, "delete", VMID)) == 1
    after = destroy.passes[restored:]
    assert all(p.stalled is not StallReason.PROXMOX_UNREACHABLE for p in after)
    assert after[0].action == "delete", destroy.describe()


async def test_a_hung_reply_is_not_taken_for_an_answer(
    sim: Simulator, secrets: FakeSecrets, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    obj = proxmox_vm(VMID)
    sim.make_unreachable("hang")
    request = DestroyRequest(
        namespace=NAMESPACE,
        name="web-1",
        uid=obj["metadata"]["uid"],
        annotations={},
        spec=obj["spec"],
        status=obj["status"],
    )
    pending = asyncio.ensure_future(driver.operator.destroyer.run_pass(request, driver.now()))
    done, _ = await asyncio.wait({pending}, timeout=0.5)
    assert not done, "a pass came back while Proxmox did not answer"
    assert sim.requests == []

    sim.restore()  # the hung replies come now, with the real answers
    result = await asyncio.wait_for(pending, timeout=30)

    assert result.outcome is None
    assert sim.vm_exists(VMID)
    assert len(calls(sim.requests, "stop", VMID)) == 1


async def test_a_wrong_token_is_never_taken_for_absence(
    sim: Simulator, secrets: FakeSecrets, make_driver: MakeDriver
) -> None:
    driver = make_driver(stall_after=STALL_AFTER)
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    secrets.update(tokenSecret="not-the-token")
    destroy = driver.add(proxmox_vm(VMID))

    await driver.run(max_passes=8, until=lambda d: d.elapsed >= 120)

    assert destroy.outcome is None, destroy.describe()
    assert {r.status for r in sim.requests} == {401}
    assert writes_made(sim) == []
    assert (destroy.passes[-1].stalled) is StallReason.PROXMOX_UNREACHABLE
    assert "not-the-token" not in destroy.describe()
    assert "not-the-token" not in str(destroy.record)

    secrets.update(tokenSecret=TOKEN_SECRET)
    await driver.run(max_passes=10)
    assert destroy.outcome is Outcome.DELETED, destroy.describe()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (r"^/cluster/resources$", "simulated failure"),
        (r"/status/current$", "simulated failure"),
        (r"/config$", "simulated failure"),
        # Listed, then "not on this node": the VM moved or is being deleted, not gone.
        (
            r"/status/current$",
            f"Configuration file 'nodes/pve1/qemu-server/{VMID}.conf' does not exist",
        ),
    ],
)
async def test_a_server_error_during_the_lookup_is_never_taken_for_absence(
    sim: Simulator, driver: Driver, path: str, message: str
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_next(path, method="GET", times=3, status=500, message=message)
    destroy = driver.add(proxmox_vm(VMID))

    await driver.run(max_passes=3)
    assert destroy.outcome is None, destroy.describe()
    assert destroy.actions() == ["wait"] * 3
    assert writes_made(sim) == []

    await driver.run(max_passes=10)
    assert destroy.outcome is Outcome.DELETED, destroy.describe()


async def test_a_missing_secret_keeps_the_finalizer(
    sim: Simulator, secrets: FakeSecrets, make_driver: MakeDriver
) -> None:
    driver = make_driver(stall_after=STALL_AFTER)
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    saved = dict(secrets.data or {})
    secrets.remove()
    destroy = driver.add(proxmox_vm(VMID))

    await run_until(driver, lambda d: bool(d.passes) and d.passes[-1].at >= STALL_AFTER)

    assert destroy.outcome is None
    assert sim.requests == []
    assert destroy.passes[-1].stalled is StallReason.PROXMOX_UNREACHABLE

    secrets.update(**saved)
    await driver.run(max_passes=10)
    assert destroy.outcome is Outcome.DELETED, destroy.describe()
