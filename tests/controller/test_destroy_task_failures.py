"""Proxmox accepts a call (HTTP 200, a UPID) and the task fails later: only exitstatus OK counts."""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator

from .driver import Driver, calls, ownership_tag, proxmox_vm

VMID = 109


async def test_a_failed_stop_task_is_reported_and_retried(sim: Simulator, driver: Driver) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_task("qmstop", vmid=VMID, message="unable to stop VM: simulated failure")

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "stop", VMID)) == 2
    assert len(calls(sim.requests, "delete", VMID)) == 1
    failed = [p for p in destroy.passes if p.stalled is StallReason.TASK_FAILED]
    assert len(failed) == 1, destroy.describe()
    assert "simulated failure" in failed[0].message
    # Retried after the report, not in the same pass, and no DELETE while the VM ran.
    actions = destroy.actions()
    stops = [i for i, action in enumerate(actions) if action == "stop"]
    assert len(stops) == 2
    assert stops[1] > stops[0] + 1, destroy.describe()
    assert actions.index("delete") > stops[1]


async def test_a_delete_task_that_fails_on_a_lock_is_reported_as_vm_locked_and_retried(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_task("qmdestroy", vmid=VMID, message="VM is locked (backup)")

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "delete", VMID)) == 2
    locked = [p for p in destroy.passes if p.stalled is StallReason.VM_LOCKED]
    assert len(locked) == 1, destroy.describe()
    assert "locked (backup)" in locked[0].message
    assert not any(p.stalled is StallReason.TASK_FAILED for p in destroy.passes)


async def test_a_delete_task_that_fails_otherwise_is_reported_as_task_failed(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_task("qmdestroy", vmid=VMID, times=2, message="storage 'local-lvm' is not online")

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "delete", VMID)) == 3
    assert [p.stalled for p in destroy.passes if p.stalled] == [StallReason.TASK_FAILED] * 2
    # Backoff grows with the failures.
    delays = [p.retry_after for p in destroy.passes if p.stalled]
    assert delays[1] > delays[0]


async def test_a_refused_delete_call_is_retried_without_a_task(
    sim: Simulator, driver: Driver
) -> None:
    """A 500 on the DELETE itself (no task started) is an error to retry, not a success."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.fail_next(rf"^/nodes/pve1/qemu/{VMID}$", method="DELETE", status=500)

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    deletes = calls(sim.requests, "delete", VMID)
    assert [r.status for r in deletes] == [500, 200]
