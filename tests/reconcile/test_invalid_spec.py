"""A spec the models refuse: InvalidSpec naming the field, Failed, and no Proxmox call at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .driver import Driver, FakeSecrets, vm_state


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"memoryMiB": 1}, "spec.memoryMiB"),
        ({"tags": ["web", "Bad Tag!"]}, "spec.tags.1"),
        ({"connectionRef": None}, "spec.connectionRef"),
        ({"node": None}, "spec.node"),
        ({"powerState": "Hibernating"}, "spec.powerState"),
    ],
    ids=["memory-too-small", "bad-tag", "no-connection-ref", "no-node", "bad-power-state"],
)
async def test_an_invalid_spec_is_refused_without_calling_proxmox(
    make_driver: Callable[..., Driver],
    secrets: FakeSecrets,
    spec: dict[str, Any],
    field: str,
) -> None:
    driver = make_driver(**spec)
    first = await driver.step()

    assert first.result.retry_after is None  # nothing to retry until the object changes
    assert first.requests == []
    assert secrets.reads == 0
    ready = driver.ready
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert field in ready["message"]
    assert driver.status["phase"] == "Failed"
    assert "vmid" not in driver.status
    assert [(e.type, e.reason) for e in driver.events] == [("Warning", "InvalidSpec")]

    await driver.step()  # kopf runs it again on some other change: no second event
    assert len(driver.events) == 1
    assert driver.sim.requests == []


async def test_changing_spec_vmid_after_it_is_set_is_refused(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(vmid=4242)
    await driver.settle()

    driver.update_spec(vmid=4343)
    refused = await driver.step()

    assert refused.requests == []
    assert refused.result.retry_after is None
    ready = driver.ready
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.vmid" in ready["message"] and "immutable" in ready["message"]
    assert "4242" in ready["message"]
    assert driver.status["vmid"] == 4242
    assert driver.status["phase"] == "Failed"
    assert driver.events[-1].type == "Warning"
    assert driver.sim.vm(4343) is None
    assert vm_state(driver.sim, 4242)["running"] is True

    driver.update_spec(vmid=4242)  # put back: reconciled again, nothing re-created
    await driver.settle()
    assert (driver.ready["status"], driver.status["phase"]) == ("True", "Running")
    assert len([r for r in driver.writes() if r.path == "/nodes/pve1/qemu"]) == 1
