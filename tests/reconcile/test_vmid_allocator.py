"""The operator's own VMID allocation (controller/vmids.py), against the simulator."""

from __future__ import annotations

import asyncio

from proxmox_vm_operator.controller.vmids import VmidAllocator
from proxmox_vm_operator.proxmox import ProxmoxClient
from proxmox_vm_operator.simulator import Simulator


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_allocations_made_at_once_are_distinct_and_free(
    sim: Simulator, admin: ProxmoxClient
) -> None:
    sim.add_vm(102, running=False)
    allocator = VmidAllocator()
    vmids = await asyncio.gather(*(allocator.allocate(admin) for _ in range(5)))
    assert sorted(vmids) == [100, 101, 103, 104, 105]  # 102 is taken in Proxmox
    nextid_calls = [r for r in sim.requests if r.path == "/cluster/nextid"]
    # One nextid each, and a check per id tried above it that is not held (102, then one).
    assert len(nextid_calls) == 12


async def test_a_held_vmid_is_handed_out_again_only_after_its_hold(
    sim: Simulator, admin: ProxmoxClient
) -> None:
    clock = Clock()
    allocator = VmidAllocator(hold_seconds=60, clock=clock)
    assert await allocator.allocate(admin) == 100
    assert await allocator.allocate(admin) == 101
    assert allocator.held(admin) == {100, 101}
    clock.now = 61  # never created (its object went away): the memory empties
    assert allocator.held(admin) == set()
    assert await allocator.allocate(admin) == 100


async def test_an_id_created_meanwhile_is_skipped_by_nextid_itself(
    sim: Simulator, admin: ProxmoxClient
) -> None:
    allocator = VmidAllocator()
    assert await allocator.allocate(admin) == 100
    sim.add_vm(100, running=False)  # its create landed
    sim.add_vm(101, running=False)  # and someone else made 101
    assert await allocator.allocate(admin) == 102
