"""Step 5: a VM without our ownership tag is never touched (unless the object adopted it)."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator

from .driver import OTHER_UID, Driver, ownership_tag, proxmox_vm, writes

VMID = 105


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param([], id="no-tags"),
        pytest.param(["web"], id="foreign-tags"),
        pytest.param([ownership_tag(OTHER_UID)], id="another-objects-tag"),
    ],
)
async def test_a_vm_without_our_tag_is_not_owned_and_never_written_to(
    sim: Simulator, driver: Driver, tags: list[str]
) -> None:
    sim.add_vm(VMID, tags=tags, running=True)

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.NOT_OWNED
    assert writes(sim.requests) == []
    vm = sim.vm(VMID)
    assert vm is not None
    assert vm["running"] is True
    assert destroy.warnings() == ["NotOwned"]
    assert ownership_tag() in destroy.events[0].message


async def test_a_vm_whose_vmid_was_reused_by_someone_else_is_left_alone(
    sim: Simulator, driver: Driver
) -> None:
    """Our VM is gone; a stranger's VM now has its VMID, stopped: still not ours to delete."""
    sim.add_vm(VMID, tags=["db"], running=False)

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.NOT_OWNED
    assert writes(sim.requests) == []
    assert sim.vm_exists(VMID)


async def test_an_adopted_vm_without_our_tag_is_destroyed(sim: Simulator, driver: Driver) -> None:
    sim.add_vm(VMID, tags=["legacy"], running=True)

    destroy = await driver.destroy(proxmox_vm(VMID, adopt=True))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
