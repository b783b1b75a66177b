"""Every failed call or task leads, after a capped backoff, to the step being tried again.

The status goes through merge-patch semantics here (the driver applies each write as the API
server applies kopf's patch): a field a write leaves out keeps its old value. That is how a
failed task once pinned every later pass to itself and the stop or DELETE was never resent.
"""

from __future__ import annotations

import itertools

from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator

from .conftest import MakeDriver
from .driver import Driver, calls, ownership_tag, proxmox_vm

VMID = 131
LOCK_TIMEOUT = f"can't lock file '/var/lock/qemu-server/lock-{VMID}.conf' - got timeout"


async def test_a_stop_that_fails_on_a_busy_vm_lock_is_sent_again_once_the_lock_is_free(
    sim: Simulator, driver: Driver
) -> None:
    """The everyday failure: another client's task holds the VM's lock file, our stop task
    waits 10 s for it and fails. The stop must go out again, not be re-read forever."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.hold_flock(VMID, 25)

    destroy = await driver.destroy(proxmox_vm(VMID), max_passes=40)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    stops = calls(sim.requests, "stop", VMID)
    assert len(stops) >= 2, destroy.describe()
    assert all("skiplock" not in r.params for r in stops)
    locked = [p for p in destroy.passes if p.stalled is StallReason.VM_LOCKED]
    assert locked and LOCK_TIMEOUT in locked[0].message, destroy.describe()
    assert len(calls(sim.requests, "delete", VMID)) == 1


async def test_a_delete_task_that_fails_on_a_busy_vm_lock_is_sent_again(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=False)
    sim.hold_flock(VMID, 15)

    destroy = await driver.destroy(proxmox_vm(VMID), max_passes=40)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    deletes = calls(sim.requests, "delete", VMID)
    assert len(deletes) == 2, destroy.describe()
    assert not sim.vm_exists(VMID)


async def test_a_500_on_the_delete_after_a_stop_sends_the_delete_again(
    sim: Simulator, driver: Driver
) -> None:
    """With the stop's UPID left in the status, the next pass took the DELETE for done and
    waited in VerifyingAbsence, "VM is still listed", forever."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_next(rf"^/nodes/pve1/qemu/{VMID}$", method="DELETE", status=500)

    destroy = await driver.destroy(proxmox_vm(VMID), max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert [r.status for r in calls(sim.requests, "delete", VMID)] == [500, 200]
    assert not any("still listed" in p.message for p in destroy.passes)


async def test_failed_calls_are_retried_2_4_8_seconds_apart_not_4_16_60(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_next(rf"/qemu/{VMID}/status/stop$", method="POST", status=500, times=3)

    destroy = await driver.destroy(proxmox_vm(VMID), max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    stop_times = [p.at for p in destroy.passes if p.action.startswith("stop")]
    assert len(stop_times) == 4, destroy.describe()
    gaps = [b - a for a, b in itertools.pairwise(stop_times)]
    assert gaps == [2.0, 4.0, 8.0], destroy.describe()


async def test_deletion_stalled_is_reported_on_time_with_a_short_stall_after(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    """With --stall-after 5 the stall showed 20 s in: each failure counted twice, and the
    backoff slept past the moment the stall was due."""
    driver = make_driver(stall_after=5)
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_next(rf"/qemu/{VMID}/status/stop$", method="POST", status=500, times=50)

    destroy = driver.add(proxmox_vm(VMID))
    await driver.run(max_passes=8)

    stalls = destroy.stalls()
    assert stalls, destroy.describe()
    first_at, reason = stalls[0]
    assert reason is StallReason.PROXMOX_UNREACHABLE  # an unrecognised 500
    assert 5.0 <= first_at <= 6.0, destroy.describe()
