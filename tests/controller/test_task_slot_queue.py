"""A pass that finds its node's task slots full waits in the node's queue, first come first
served, and gets the slot the moment a task of ours is seen to end (controller/budget.py)."""

from __future__ import annotations

import asyncio

from proxmox_vm_operator.controller.budget import TaskBudget

NODE = "https://pve:8006/pve1"
OTHER_NODE = "https://pve:8006/pve2"


def upid(n: int) -> str:
    return f"UPID:pve1:0000000{n}:00000001:6B000000:qmstop:{100 + n}:root@pam!op:"


async def test_a_waiter_gets_the_slot_as_soon_as_a_task_ends() -> None:
    budget = TaskBudget(per_node=1)
    first = await budget.acquire(NODE, within=0)
    assert first is not None
    budget.started(first, upid(1))

    waiting = asyncio.create_task(budget.acquire(NODE, within=30))
    await asyncio.sleep(0)
    assert not waiting.done() and budget.waiting(NODE) == 1

    budget.finished(upid(1))
    second = await asyncio.wait_for(waiting, timeout=1)
    assert second is not None
    assert budget.in_flight(NODE) == 1 and budget.waiting(NODE) == 0


async def test_waiters_are_served_in_the_order_they_came() -> None:
    budget = TaskBudget(per_node=1)
    held = await budget.acquire(NODE, within=0)
    assert held is not None
    order: list[str] = []

    async def wait(name: str) -> None:
        slot = await budget.acquire(NODE, within=30)
        assert slot is not None
        order.append(name)
        budget.finished(slot)

    waiters = [asyncio.create_task(wait(name)) for name in ("a", "b", "c")]
    await asyncio.sleep(0)
    budget.finished(held)
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=1)
    assert order == ["a", "b", "c"]


async def test_a_newcomer_does_not_jump_the_queue() -> None:
    budget = TaskBudget(per_node=1)
    held = await budget.acquire(NODE, within=0)
    assert held is not None
    queued = asyncio.create_task(budget.acquire(NODE, within=30))
    await asyncio.sleep(0)
    # Not waiting at all: refused, even at the moment the slot frees, while one waits.
    assert await budget.acquire(NODE, within=0) is None
    budget.finished(held)
    assert await asyncio.wait_for(queued, timeout=1) is not None


async def test_a_waiter_gives_up_after_its_bound_and_leaves_the_queue() -> None:
    budget = TaskBudget(per_node=1)
    held = await budget.acquire(NODE, within=0)
    assert held is not None

    assert await budget.acquire(NODE, within=0.05) is None
    assert budget.waiting(NODE) == 0
    budget.finished(held)
    assert await budget.acquire(NODE, within=0) is not None


async def test_nodes_have_queues_of_their_own() -> None:
    budget = TaskBudget(per_node=1)
    assert await budget.acquire(NODE, within=0) is not None
    queued = asyncio.create_task(budget.acquire(NODE, within=30))
    await asyncio.sleep(0)
    assert await budget.acquire(OTHER_NODE, within=0) is not None
    queued.cancel()


async def test_a_cancelled_waiter_lets_the_next_one_have_the_slot() -> None:
    budget = TaskBudget(per_node=1)
    held = await budget.acquire(NODE, within=0)
    assert held is not None
    cancelled = asyncio.create_task(budget.acquire(NODE, within=30))
    patient = asyncio.create_task(budget.acquire(NODE, within=30))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    budget.finished(held)
    assert await asyncio.wait_for(patient, timeout=1) is not None
