"""VMIDs taken from /cluster/nextid: objects created together, and what a race may leave.

nextid reserves nothing, so objects applied together (`kubectl apply -f vms/`, a GitOps sync)
all get the same VMID before any of them has created a VM. The first create wins it; each other
object sees a VM carrying another object's tag, which can never be its own, and takes the next
free VMID. A VM without any ownership tag is different: it may be a VM this object created
whose tag someone removed, so it stays NotOwned and untouched, as before.
"""

from __future__ import annotations

from collections.abc import Callable

from proxmox_vm_operator.domain.vmconfig import ownership_tag
from proxmox_vm_operator.proxmox import ProxmoxClient
from proxmox_vm_operator.simulator import Simulator

from .driver import Driver, tag_set, vm_state, writes_to


def second(make_driver: Callable[..., Driver], name: str, uid: str) -> Driver:
    driver = make_driver()
    driver.name, driver.uid = name, uid
    return driver


async def test_objects_created_together_end_with_a_vm_each(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    first = make_driver()
    others = [second(make_driver, f"web-{n}", f"uid-{n}") for n in (2, 3)]
    for driver in (first, *others):
        await driver.step()  # each persists the VMID nextid gave: the same one
    assert {d.status["vmid"] for d in (first, *others)} == {100}

    for driver in (first, *others):
        await driver.settle()

    vmids = [d.status["vmid"] for d in (first, *others)]
    assert len(set(vmids)) == 3, vmids
    for driver in (first, *others):
        assert (driver.ready["status"], driver.ready["reason"]) == ("True", "Reconciled")
        config = vm_state(sim, driver.status["vmid"])["config"]
        assert ownership_tag(driver.uid) in tag_set(config.get("tags")), config
    assert "VMIDReassigned" in [e.reason for e in others[0].events]
    # The winner's VM was never written to by the others.
    writers = {r.user for r in writes_to(sim.requests, 100)}
    assert len(writers) <= 1
    assert [r.path for r in writes_to(sim.requests, 100) if r.method == "POST"] == [
        "/nodes/pve1/qemu",
        "/nodes/pve1/qemu/100/status/start",
    ]


async def test_an_untagged_vm_at_a_vmid_from_nextid_is_still_left_alone(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver()
    await driver.step()
    vmid = driver.status["vmid"]
    sim.add_vm(vmid, running=True, tags=["legacy"])  # created behind our back, untagged
    before = vm_state(sim, vmid)

    await driver.run_passes(3)

    assert driver.status["vmid"] == vmid  # not reassigned: it might be ours, tag removed
    assert driver.ready["reason"] == "NotOwned"
    assert driver.writes() == []
    assert vm_state(sim, vmid) == before


async def test_an_explicit_vmid_held_by_another_object_is_never_reassigned(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=False, tags=["vmop-other"])
    driver = make_driver(vmid=150)
    await driver.run_passes(3)

    assert driver.status["vmid"] == 150  # the user asked for 150: say so, do not move
    assert driver.ready["reason"] == "NotOwned"
    assert driver.writes() == []


async def test_a_vm_still_being_created_is_waited_for_before_judging_whose_it_is(
    sim: Simulator, make_driver: Callable[..., Driver], admin: ProxmoxClient
) -> None:
    """Another object's create in flight: the VM has no tags yet, only `lock: create`.
    Judged then, it would look foreign and untagged (NotOwned, stalled for good)."""
    driver = make_driver()
    await driver.step()
    vmid = driver.status["vmid"]
    sim.add_vm(vmid, running=False, tags=[])
    sim.set_lock(vmid, "create")

    record = await driver.step()
    assert driver.reason == "Waiting"
    assert record.result.retry_after is not None and record.writes == []
    assert driver.status["vmid"] == vmid

    # The other object's create ends: its tag is on the VM, and this object moves on.
    sim.set_lock(vmid, None)
    await admin.update_config("pve1", vmid, {"tags": "vmop-someone-else"})
    await driver.settle()
    assert driver.status["vmid"] != vmid
    assert driver.ready["reason"] == "Reconciled"
