"""spec.adopt: true takes over an existing VM: our tag is added, then the VM is reconciled."""

from __future__ import annotations

from collections.abc import Callable

from proxmox_vm_operator.simulator import Simulator

from .driver import OWNER_TAG, Driver, tag_set, vm_state


async def test_setting_adopt_takes_over_a_vm_that_was_refused(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=True, name="legacy-db", tags=["legacy", "prod"])
    driver = make_driver(vmid=150, tags=["web"])
    await driver.run_passes(2)
    assert driver.ready["reason"] == "NotOwned"
    assert driver.writes() == []

    driver.update_spec(adopt=True)
    adopting = await driver.step()

    [write] = adopting.writes
    assert (write.method, write.path) == ("PUT", "/nodes/pve1/qemu/150/config")
    assert set(write.params) == {"tags", "digest"}  # nothing but the tag, digest-guarded
    assert tag_set(write.params["tags"]) == {"legacy", "prod", OWNER_TAG}  # others kept
    assert driver.events[-1].reason == "Adopted"
    assert driver.events[-1].type == "Normal"
    assert OWNER_TAG in tag_set(vm_state(sim, 150)["config"]["tags"])

    await driver.settle()
    assert (driver.ready["status"], driver.ready["reason"]) == ("True", "Reconciled")
    assert driver.status["phase"] == "Running"
    config = vm_state(sim, 150)["config"]
    assert config["name"] == "web-1"
    assert {"web", OWNER_TAG} <= tag_set(config["tags"])
    # Adopted, not re-created: no create, no clone, no power cycle.
    assert not [r for r in driver.writes() if r.path == "/nodes/pve1/qemu"]
    assert not [r for r in driver.writes() if "/status/" in r.path]


async def test_adopt_from_the_start_adopts_before_any_other_write(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=False, tags=["legacy"], config={"cores": 8})
    driver = make_driver(vmid=150, adopt=True, cores=2, powerState="Stopped")
    await driver.settle()

    writes = driver.writes()
    assert set(writes[0].params) == {"tags", "digest"}
    assert driver.events[0].reason == "Adopted"
    assert vm_state(sim, 150)["config"]["cores"] == 2
    assert driver.status["phase"] == "Stopped"
    assert driver.ready["status"] == "True"
