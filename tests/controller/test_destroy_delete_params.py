"""Step 8: DELETE carries purge and destroy-unreferenced-disks as spec.destroy sets them."""

from __future__ import annotations

from typing import Any

import pytest

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator

from .driver import Driver, calls, ownership_tag, proxmox_vm

VMID = 110


@pytest.mark.parametrize(
    ("policy", "purge", "disks"),
    [
        pytest.param(None, "1", "1", id="defaults"),
        pytest.param({"purge": False}, "0", "1", id="no-purge"),
        pytest.param({"destroyUnreferencedDisks": False}, "1", "0", id="keep-disks"),
        pytest.param({"purge": False, "destroyUnreferencedDisks": False}, "0", "0", id="neither"),
        pytest.param({"purge": True, "destroyUnreferencedDisks": True}, "1", "1", id="both"),
    ],
)
async def test_delete_params_follow_the_destroy_policy_as_1_or_0(
    sim: Simulator, driver: Driver, policy: dict[str, Any] | None, purge: str, disks: str
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=False)

    destroy = await driver.destroy(proxmox_vm(VMID, destroy=policy))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    (delete,) = calls(sim.requests, "delete", VMID)
    assert delete.params == {"purge": purge, "destroy-unreferenced-disks": disks}
    log = "\n".join(sim.task_log(next(t["upid"] for t in sim.tasks() if t["type"] == "qmdestroy")))
    assert ("purging VM" in log) is (purge == "1")
    assert ("destroying unreferenced disks" in log) is (disks == "1")


async def test_every_boolean_on_the_wire_is_1_or_0(sim: Simulator, driver: Driver) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)

    await driver.destroy(proxmox_vm(VMID, destroy={"purge": False}))

    sent = [value for r in sim.requests for value in r.params.values()]
    assert sent, "no parameters were sent at all"
    words = {"true", "false", "True", "False", "on", "off", "yes", "no"}
    assert not [value for value in sent if value in words]
    flags = {
        key: value
        for r in sim.requests
        for key, value in r.params.items()
        if key in ("purge", "destroy-unreferenced-disks", "overrule-shutdown")
    }
    assert flags == {"purge": "0", "destroy-unreferenced-disks": "1", "overrule-shutdown": "1"}


async def test_a_stopped_vm_is_deleted_without_a_stop(sim: Simulator, driver: Driver) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=False)

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED
    assert calls(sim.requests, "stop") == calls(sim.requests, "shutdown") == []
    assert destroy.actions()[0] == "delete"
