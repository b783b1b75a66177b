"""Step 4 on a two-node cluster: the VM is looked up cluster-wide, never just on spec.node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator

from .conftest import MakeDriver
from .driver import Driver, calls, new_simulator, ownership_tag, proxmox_vm, writes

VMID = 111


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = new_simulator(nodes=("pve1", "pve2"))
    try:
        yield simulator
    finally:
        simulator.stop()


async def test_a_vm_that_moved_to_another_node_is_destroyed_where_it_is(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, "pve2", tags=[ownership_tag()], running=True)

    destroy = await driver.destroy(proxmox_vm(VMID))  # spec.node is pve1

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
    changes = writes(sim.requests)
    assert changes
    assert all(r.path.startswith("/nodes/pve2/") for r in changes)


async def test_a_vm_on_an_offline_node_is_never_taken_for_absent(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(stall_after=30)
    sim.add_vm(VMID, "pve2", tags=[ownership_tag()], running=True)
    sim.set_node_online("pve2", False)
    destroy = driver.add(proxmox_vm(VMID))

    await driver.run(max_passes=8, until=lambda d: d.elapsed >= 120)

    assert destroy.outcome is None, destroy.describe()
    assert writes(sim.requests) == []
    assert destroy.passes[-1].stalled is StallReason.PROXMOX_UNREACHABLE

    sim.set_node_online("pve2", True)
    await driver.run(max_passes=10)
    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "stop", VMID)) == 1


async def test_a_container_holding_the_vmid_means_our_vm_is_gone(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_container(VMID, "pve1")

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.ALREADY_ABSENT
    assert writes(sim.requests) == []
