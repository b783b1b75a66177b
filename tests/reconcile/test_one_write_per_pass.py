"""The reconciler's contract: each pass makes at most one state-changing Proxmox call."""

from __future__ import annotations

from collections.abc import Callable

from proxmox_vm_operator.simulator import Simulator

from .driver import Driver


def passes_with_several_writes(driver: Driver) -> list[str]:
    return [
        f"#{p.number}: " + ", ".join(f"{r.method} {r.path}" for r in p.writes)
        for p in driver.passes
        if len(p.writes) > 1
    ]


async def test_a_blank_create_and_power_changes_make_one_write_per_pass(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(cores=2, disks=[{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 8}])
    await driver.settle()
    driver.update_spec(cores=3, powerState="Stopped")
    await driver.settle()
    driver.update_spec(powerState="Running")
    await driver.settle()

    assert len(driver.writes()) == 5  # create, start, config, shutdown, start
    assert passes_with_several_writes(driver) == []


async def test_adoption_makes_one_write_per_pass(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=True, tags=["legacy"])
    driver = make_driver(vmid=150, adopt=True)
    await driver.settle()

    assert driver.ready["status"] == "True"
    assert passes_with_several_writes(driver) == []


async def test_a_clone_makes_one_write_per_pass(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(9000, template=True, config={"scsi0": "local-lvm:base-9000-disk-0,size=4G"})
    driver = make_driver(source={"cloneFrom": {"vmid": 9000, "node": "pve1"}})
    await driver.settle()

    assert driver.ready["status"] == "True"
    assert passes_with_several_writes(driver) == []
