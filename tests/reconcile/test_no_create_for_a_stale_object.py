"""No create starts for an object that is being deleted, whatever copy the pass acts on.

A slow API server hands kopf an old copy of the object: a pass acting on it saw no VM and
created one while the object was already being deleted, and the destroy, trusting the VMID
the status named, released the object with that second VM running under our tag."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from .driver import NAME, NAMESPACE, UID, Driver


def creates(driver: Driver) -> list[Any]:
    return [r for r in driver.sim.requests if (r.method, r.path) == ("POST", "/nodes/pve1/qemu")]


def live_copy(driver: Driver, **changes: Any) -> Callable[[], Any]:
    async def read() -> Mapping[str, Any] | None:
        status = {**copy.deepcopy(driver.status), **changes.pop("status", {})}
        metadata = {"namespace": NAMESPACE, "name": NAME, "uid": UID, **changes}
        return {"metadata": metadata, "status": status}

    return read


async def test_an_object_being_deleted_gets_no_vm_from_a_stale_pass(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.step()  # the VMID is recorded; the create comes next
    vmid = driver.status["vmid"]
    driver.live = live_copy(driver, deletionTimestamp="2026-03-01T12:00:05Z")

    for _ in range(3):
        record = await driver.step()
        assert record.result.retry_after is None  # the destroy handler takes over

    assert creates(driver) == []
    assert driver.sim.vm(vmid) is None


async def test_a_stale_copy_with_an_older_vmid_creates_nothing(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.step()
    driver.live = live_copy(driver, status={"vmid": 103})

    await driver.step()

    assert creates(driver) == []


async def test_a_gone_object_gets_no_vm_and_a_live_one_does(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.step()

    async def gone() -> None:
        return None

    driver.live = gone
    await driver.step()
    assert creates(driver) == []

    driver.live = live_copy(driver)  # the API server agrees with the copy: create
    await driver.step()
    assert len(creates(driver)) == 1
