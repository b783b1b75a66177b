"""A pass writes to the status only what changed: an idle object costs the API server no
write per drift check, while every change still lands."""

from __future__ import annotations

import copy
from collections.abc import Callable

from proxmox_vm_operator.simulator import Simulator

from .driver import Driver


async def test_a_drift_check_of_an_unchanged_ready_vm_writes_nothing(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.settle()
    assert driver.ready["status"] == "True"

    for _ in range(3):
        before = copy.deepcopy(driver.status)
        record = await driver.step()
        assert record.result.status.conditions  # the pass did judge the VM afresh
        assert record.result.status.to_merge_patch(before) == {}
        assert driver.status == before


async def test_a_change_behind_the_operators_back_is_written(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver(powerState="Stopped")
    await driver.settle()
    before = copy.deepcopy(driver.status)
    sim.add_vm(driver.vmid + 1, running=False)  # unrelated: changes nothing of ours
    quiet = await driver.step()
    assert quiet.result.status.to_merge_patch(before) == {}

    sim.set_lock(driver.vmid, "backup")
    record = await driver.step()
    written = record.result.status.to_merge_patch(before)
    assert set(written) == {"conditions"}  # Ready went Unknown/VMLocked; nothing else moved
    assert driver.ready["reason"] == "VMLocked"
