"""A shutdown another user started holds the VM's lock. Without Sys.Modify on the node our
stop cannot overrule it (pve-guest-common GuestHelpers.pm abort_guest_tasks aborts only the
caller's own tasks), fails on the lock, and is sent again until that shutdown ends."""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .driver import TOKEN_ID, Driver, calls, ownership_tag, proxmox_vm

VMID = 191
VM_PRIVILEGES = ["VM.Audit", "VM.PowerMgmt", "VM.Allocate"]


def someone_elses_shutdown(sim: Simulator, driver: Driver, *, sys_modify: bool) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=GuestBehaviour(obeys_acpi=False))
    sim.set_privsep(TOKEN_ID, True)
    sim.grant(TOKEN_ID, "/vms", VM_PRIVILEGES)
    if sys_modify:
        sim.grant(TOKEN_ID, "/nodes/pve1", ["Sys.Modify"])
    sim.start_task_as("alice@pve", VMID, "shutdown", timeout=40)
    driver.advance(0.1)  # her task is under way and holds the VM's lock


async def test_a_stop_blocked_by_someone_elses_shutdown_is_retried_until_it_ends(
    sim: Simulator, driver: Driver
) -> None:
    someone_elses_shutdown(sim, driver, sys_modify=False)

    destroy = await driver.destroy(proxmox_vm(VMID), max_passes=40)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    stops = calls(sim.requests, "stop", VMID)
    assert len(stops) >= 2, destroy.describe()
    assert any(p.stalled is StallReason.VM_LOCKED for p in destroy.passes), destroy.describe()
    assert len(calls(sim.requests, "delete", VMID)) == 1


async def test_with_sys_modify_on_the_node_the_stop_overrules_it_at_once(
    sim: Simulator, driver: Driver
) -> None:
    someone_elses_shutdown(sim, driver, sys_modify=True)

    destroy = await driver.destroy(proxmox_vm(VMID), max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "stop", VMID)) == 1
    assert not any(p.stalled for p in destroy.passes), destroy.describe()
