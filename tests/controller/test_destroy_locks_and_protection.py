"""Step 6: protection=1 and config locks make the destroy wait and report; never skiplock."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .driver import Driver, calls, ownership_tag, proxmox_vm, writes

VMID = 106


def _no_skiplock(sim: Simulator) -> None:
    assert [r for r in sim.requests if "skiplock" in r.params] == []


def _clear_protection(sim: Simulator, vmid: int) -> None:
    sim.call(lambda: sim.cluster.vms[vmid].config.pop("protection", None))


async def test_a_protected_vm_is_waited_for_and_never_deleted_until_protection_is_cleared(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, protection=True)
    destroy = driver.add(proxmox_vm(VMID))

    await driver.run(max_passes=8)

    assert destroy.outcome is None
    assert {p.stalled for p in destroy.passes} == {StallReason.PROTECTED}
    assert writes(sim.requests) == []
    assert destroy.record is not None
    assert "protection" in destroy.record["lastError"]

    _clear_protection(sim, VMID)
    await driver.run(max_passes=10)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
    assert len(calls(sim.requests, "delete", VMID)) == 1
    _no_skiplock(sim)


@pytest.mark.parametrize("lock", ["backup", "clone", "migrate"])
async def test_a_locked_vm_is_waited_for_without_skiplock_until_the_lock_is_gone(
    sim: Simulator, driver: Driver, lock: str
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, lock=lock)
    destroy = driver.add(proxmox_vm(VMID))

    await driver.run(max_passes=8)

    assert destroy.outcome is None
    assert {p.stalled for p in destroy.passes} == {StallReason.VM_LOCKED}
    assert writes(sim.requests) == []
    assert lock in destroy.passes[-1].message

    sim.set_lock(VMID, None)
    await driver.run(max_passes=10)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "stop", VMID)) == 1
    _no_skiplock(sim)


async def test_a_backup_lock_taken_while_the_vm_is_stopped_blocks_the_delete(
    sim: Simulator, driver: Driver
) -> None:
    """The lock appears between the stop and the DELETE: wait, then delete once."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    destroy = driver.add(proxmox_vm(VMID))
    await driver.step()  # stop sent
    sim.set_lock(VMID, "backup")

    await driver.run(max_passes=6)

    assert destroy.outcome is None
    assert calls(sim.requests, "delete") == []
    assert destroy.passes[-1].stalled is StallReason.VM_LOCKED

    sim.set_lock(VMID, None)
    await driver.run(max_passes=10)
    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "delete", VMID)) == 1
    _no_skiplock(sim)


async def test_a_shutdown_that_fails_on_a_lock_waits_for_the_lock_instead_of_forcing_a_stop(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=GuestBehaviour(obeys_acpi=False))
    destroy = driver.add(
        proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 600})
    )
    sim.fail_task("qmshutdown", vmid=VMID, message="VM is locked (backup)")
    await driver.step()  # shutdown sent; its task fails on the lock a backup just took
    sim.set_lock(VMID, "backup")

    await driver.run(max_passes=6)

    assert calls(sim.requests, "stop") == [], destroy.describe()
    assert destroy.passes[-1].stalled is StallReason.VM_LOCKED, destroy.describe()
    assert "ShutdownTimedOut" not in destroy.warnings()
