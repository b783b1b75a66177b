"""Our own work first, ownership second: a VM the object itself is creating or deleting is
never judged NotOwned because its tags are not there yet, or not there any more."""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator

from .driver import NAMESPACE, NODE, SECRET_NAME, Driver, calls, ownership_tag, proxmox_vm

VMID = 151


async def test_a_vm_created_just_before_a_restart_is_waited_for_and_destroyed(
    sim: Simulator, driver: Driver
) -> None:
    """The operator died between the create call and the status write, and the object was
    deleted while it was down: status.vmid is there, status.task is not, and the VM sits
    under "lock: create" without tags until its create ends."""
    client = await driver.operator.pool.client(NAMESPACE, SECRET_NAME)
    await client.create_vm(NODE, VMID, {"name": "web-1", "memory": 512, "tags": ownership_tag()})
    assert sim.vm(VMID) is not None
    obj = proxmox_vm(VMID)
    obj["status"] = {"vmid": VMID, "phase": "Provisioning"}  # no record of the create task

    destroy = await driver.destroy(obj, max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert "NotOwned" not in destroy.warnings()
    assert any("being provisioned" in p.message for p in destroy.passes), destroy.describe()
    assert not sim.vm_exists(VMID)
    assert len(calls(sim.requests, "delete", VMID)) == 1


async def test_a_delete_whose_record_was_lost_in_a_restart_is_followed_not_sent_twice(
    sim: Simulator, driver: Driver
) -> None:
    """The DELETE went out, the status write that would have recorded its task did not: the
    restarted operator finds the delete task running and follows it."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=False)
    destroy = driver.add(proxmox_vm(VMID))
    before = dict(destroy.status)
    first = await driver.step()
    assert first.action == "delete"
    destroy.obj["status"] = before  # the write of that pass was lost
    await driver.step(restart=True)
    await driver.run(max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "delete", VMID)) == 1, destroy.describe()
    assert "NotOwned" not in destroy.warnings()


async def test_every_vm_with_the_objects_tag_is_destroyed_not_just_the_one_status_names(
    sim: Simulator, driver: Driver
) -> None:
    """A create and destroy raced under a slow API server: a pass acting on a stale object
    made VM 113 while the status names VM 103. Releasing after 103 alone leaked 113."""
    sim.add_vm(103, tags=[ownership_tag()], running=True)
    sim.add_vm(113, tags=[ownership_tag()], running=True)
    sim.add_vm(120, tags=["vmop-someone-else"], running=True)

    destroy = await driver.destroy(proxmox_vm(103), max_passes=30)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(103) and not sim.vm_exists(113)
    assert sim.vm_exists(120)
    assert "StrayVM" in destroy.warnings()
    for vmid in (103, 113):
        assert len(calls(sim.requests, "delete", vmid)) == 1


async def test_the_first_phase_of_proxmoxs_delete_is_followed_after_a_lost_record(
    sim: Simulator, driver: Driver
) -> None:
    """qmdestroy frees the volumes with the config untouched (tags and all), then rewrites it
    to only "lock: destroyed", then removes it. In the first phase the VM looks like any
    stopped VM of ours: only the node's running tasks tell that a delete is under way."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=False)
    destroy = driver.add(proxmox_vm(VMID))
    before = dict(destroy.status)
    assert (await driver.step()).action == "delete"
    destroy.obj["status"] = before  # the status write of that pass was lost
    vm = sim.vm(VMID)
    assert vm is not None and ownership_tag() in vm["config"]["tags"]  # still phase one

    followed = await driver.step(restart=True)

    assert "already running" in followed.message, destroy.describe()
    await driver.run(max_passes=20)
    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "delete", VMID)) == 1
