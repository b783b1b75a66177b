"""VMIDs for objects without spec.vmid: objects created together, and what a race may leave.

nextid reserves nothing, so the operator hands VMIDs out itself (controller/vmids.py): objects
applied together (`kubectl apply -f vms/`, a GitOps sync) get distinct ids at once. Another
creator may still win an id: a create refused with "already exists" moves on to a free id at
once, and an object that finds a VM carrying another object's tag, which can never be its own,
takes the next free VMID. A VM without any ownership tag is different: it may be a VM this
object created whose tag someone removed, so it stays NotOwned and untouched, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxmox_vm_operator.controller.reconciler import Reconciler
from proxmox_vm_operator.domain.vmconfig import ownership_tag
from proxmox_vm_operator.proxmox import ProxmoxClient
from proxmox_vm_operator.simulator import Simulator

from .driver import Driver, base_spec, tag_set, vm_state, writes_to


def second(make_driver: Callable[..., Driver], name: str, uid: str) -> Driver:
    driver = make_driver()
    driver.name, driver.uid = name, uid
    return driver


async def test_objects_created_together_get_distinct_vmids_without_a_race(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    """One operator hands out VMIDs itself: nextid's answer, and the next free ids after the
    ones it already handed out, so no create is sent to lose."""
    first = make_driver()
    others = [second(make_driver, f"web-{n}", f"uid-{n}") for n in (2, 3)]
    for driver in (first, *others):
        await driver.step()  # each persists its VMID before any VM exists
    assert [d.status["vmid"] for d in (first, *others)] == [100, 101, 102]

    for driver in (first, *others):
        await driver.settle()

    for driver in (first, *others):
        assert (driver.ready["status"], driver.ready["reason"]) == ("True", "Reconciled")
        config = vm_state(sim, driver.status["vmid"])["config"]
        assert ownership_tag(driver.uid) in tag_set(config.get("tags")), config
        assert "VMIDReassigned" not in driver.event_reasons()
    creates = [r for r in sim.requests if r.method == "POST" and r.path == "/nodes/pve1/qemu"]
    assert [(r.params["vmid"], r.status) for r in creates] == [
        ("100", 200),
        ("101", 200),
        ("102", 200),
    ]


async def test_a_vmid_held_for_another_object_is_skipped_past_a_foreign_vm(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    first = make_driver()
    await first.step()
    sim.add_vm(101, running=False, tags=["legacy"])  # made behind the operator's back
    other = second(make_driver, "web-2", "uid-2")
    await other.step()
    assert (first.status["vmid"], other.status["vmid"]) == (100, 102)


async def test_a_vmid_another_creator_wins_is_left_at_once_for_a_free_one(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    """Another operator (or anyone) created a VM at the id between the lookup and the create:
    qemu-server refuses the create, and the object moves on without waiting."""
    driver = make_driver()
    await driver.step()
    assert driver.status["vmid"] == 100
    sim.fail_next(
        r"^/nodes/pve1/qemu$",
        method="POST",
        message="unable to create VM 100 - VM 100 already exists on node 'pve2'",
    )
    record = await driver.step()
    assert driver.status["vmid"] == 101, driver.story(driver.passes)
    assert driver.reason == "Provisioning"
    assert record.result.retry_after == 1.0  # no backoff: nothing is wrong
    assert driver.event_reasons()[-1] == "VMIDReassigned"
    await driver.settle()
    assert driver.ready["reason"] == "Reconciled"


async def test_an_explicit_vmid_another_creator_wins_is_reported_not_moved(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver(vmid=150)
    await driver.step()
    sim.fail_next(
        r"^/nodes/pve1/qemu$",
        method="POST",
        message="unable to create VM 150 - VM 150 already exists on node 'pve2'",
    )
    await driver.step()
    assert driver.status["vmid"] == 150
    assert driver.reason == "ProxmoxError"


async def test_objects_of_two_operators_created_together_end_with_a_vm_each(
    sim: Simulator, make_driver: Callable[..., Driver], pool: Any
) -> None:
    """Two allocators (two operator processes, or one restarted) hand out the same id: the
    first create wins it, and the other object, seeing the VM carry another object's tag,
    takes the next free VMID."""
    first = make_driver()
    other = Driver(sim, Reconciler(pool), base_spec(), name="web-2", uid="uid-2")
    await first.step()
    await other.step()
    assert (first.status["vmid"], other.status["vmid"]) == (100, 100)
    await first.settle()
    await other.settle()
    assert other.status["vmid"] != 100
    assert "VMIDReassigned" in other.event_reasons()
    assert other.ready["reason"] == "Reconciled"
    # The winner's VM was never written to by the other.
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
