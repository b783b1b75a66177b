"""The default destroy (mode Stop) of a guest that ignores ACPI: one hard stop, then DELETE.

This is the regression the project exists for: a graceful shutdown request to a frozen guest
blocks the destroy until someone notices. Under the default policy no shutdown is ever sent.
"""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .driver import Driver, calls, ownership_tag, proxmox_vm

VMID = 101
FROZEN_GUEST = GuestBehaviour(obeys_acpi=False)


async def test_default_policy_hard_stops_a_guest_that_ignores_acpi_then_deletes_it(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag(), "web"], running=True, guest=FROZEN_GUEST)

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
    requests = sim.requests
    stops = calls(requests, "stop", VMID)
    assert len(stops) == 1
    assert stops[0].params.get("overrule-shutdown") == "1"
    assert calls(requests, "shutdown") == []
    assert len(calls(requests, "delete", VMID)) == 1
    # stop, (stopped) delete, (deleting) wait, (gone) release: a handful of passes, seconds.
    assert destroy.actions()[0] == "stop"
    assert destroy.actions()[-1] == "release:deleted"
    assert len(destroy.passes) <= 6, destroy.describe()
    assert destroy.passes[-1].at <= 10
    assert destroy.stalls() == []
    assert destroy.warnings() == []


async def test_the_stop_is_followed_by_its_task_before_the_delete(
    sim: Simulator, driver: Driver
) -> None:
    """DELETE is only sent once the stop task ended OK and the VM is stopped."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=FROZEN_GUEST)

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    names = [(r.method, r.path.rsplit("/", 1)[-1]) for r in sim.requests]
    stop = names.index(("POST", "stop"))
    delete = names.index(("DELETE", str(VMID)))
    between = names[stop + 1 : delete]
    assert ("GET", "status") in between, "the stop task's status was never read"
    assert ("GET", "current") in between, "the VM's power state was never read"
    # The record tracked the stop task, then the delete task.
    steps = [(p.step, p.task_upid is not None) for p in destroy.passes]
    assert ("Stopping", True) in steps
    assert ("DeletingVM", True) in steps
