"""A VM at our VMID that lacks our ownership tag is never touched without spec.adopt."""

from __future__ import annotations

from collections.abc import Callable

from proxmox_vm_operator.simulator import Simulator

from .driver import Driver, vm_state


async def test_a_vm_without_our_tag_is_reported_and_left_untouched(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=True, name="legacy-db", tags=["legacy"], config={"cores": 8})
    before = vm_state(sim, 150)
    driver = make_driver(vmid=150, cores=2, tags=["web"])
    records = await driver.run_passes(5)

    ready = driver.ready
    assert (ready["status"], ready["reason"]) == ("False", "NotOwned")
    assert "spec.adopt" in ready["message"] and "150" in ready["message"]
    assert [(e.type, e.reason) for e in driver.events] == [("Warning", "NotOwned")]
    assert driver.writes() == []  # zero write calls, to that VM or any other
    # Done for now: a spec change (adopt) acts at once, and the drift timer looks again.
    assert records[-1].result.retry_after is None
    assert vm_state(sim, 150) == before
    assert driver.status.get("phase") != "Running"


async def test_a_vm_held_by_another_object_is_never_touched(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=False, tags=["vmop-other"])
    before = vm_state(sim, 150)
    driver = make_driver(vmid=150)
    await driver.run_passes(4)

    assert driver.ready["reason"] == "NotOwned"
    assert driver.writes() == []
    assert vm_state(sim, 150) == before


async def test_adopt_never_takes_a_vm_owned_by_another_object(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=False, tags=["vmop-other"])
    before = vm_state(sim, 150)
    driver = make_driver(vmid=150, adopt=True)
    await driver.run_passes(4)

    assert driver.writes() == []
    assert vm_state(sim, 150) == before
    assert driver.ready["status"] == "False"
