"""A spec the operator cannot parse at all is still destroyable, with the safe defaults."""

from __future__ import annotations

from typing import Any

import pytest

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator

from .driver import Driver, calls, ownership_tag, proxmox_vm

VMID = 161


@pytest.mark.parametrize(
    "broken",
    [
        {"connectionRef": {"name": "pve"}, "node": "n" * 64, "memoryMiB": -1},
        {"connectionRef": {"name": "pve"}, "destroy": "not an object", "cores": "many"},
    ],
)
async def test_a_spec_that_does_not_validate_is_destroyed_with_a_hard_stop_and_says_so(
    sim: Simulator, driver: Driver, broken: dict[str, Any]
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    obj = proxmox_vm(VMID)
    obj["spec"] = broken
    obj["status"]["node"] = "pve1"  # where the operator last saw it

    destroy = await driver.destroy(obj, max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert [e.reason for e in destroy.events if e.type == "Warning"] == ["InvalidSpec"]
    stop = calls(sim.requests, "stop", VMID)
    assert len(stop) == 1 and stop[0].params.get("overrule-shutdown") == "1"
    assert not calls(sim.requests, "shutdown", VMID)
    assert not sim.vm_exists(VMID)
