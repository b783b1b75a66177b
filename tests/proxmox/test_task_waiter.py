"""Waiting for a task: the first look at a kind's typical end, not on a timer
(proxmox/tasks.py), on a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from proxmox_vm_operator.proxmox import TaskStatus
from proxmox_vm_operator.proxmox.tasks import FIRST_LOOK, LONGEST_GAP, TaskWaiter

UPID = "UPID:pve1:00000001:00000001:6B000000:qmstop:101:root@pam!op:"
OTHER_KIND = "UPID:pve1:00000002:00000001:6B000000:qmdestroy:101:root@pam!op:"


@dataclass
class Settings:
    endpoint: str = "https://pve:8006"


@dataclass
class FakeClient:
    """Tasks end ``length`` seconds after the test's clock started them."""

    clock: list[float]
    length: float
    started: float = 0.0
    looks: list[float] = field(default_factory=list)
    settings: Any = field(default_factory=Settings)

    async def task_status(self, upid: str) -> TaskStatus:
        now = self.clock[0]
        self.looks.append(now - self.started)
        if now - self.started >= self.length:
            return TaskStatus("stopped", "OK")
        return TaskStatus("running", None)


def waiter_on(clock: list[float]) -> TaskWaiter:
    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    return TaskWaiter(monotonic=lambda: clock[0], sleep=sleep)


async def run(waiter: TaskWaiter, client: FakeClient, upid: str = UPID) -> TaskStatus:
    client.started = client.clock[0]
    client.looks.clear()
    return await waiter.wait(client, upid, started=client.started, within=60)  # type: ignore[arg-type]


async def test_a_task_of_an_unknown_kind_is_looked_at_soon_then_less_often() -> None:
    clock = [0.0]
    client = FakeClient(clock, length=10.0)
    status = await run(waiter_on(clock), client)

    assert not status.running
    assert client.looks[0] == pytest.approx(FIRST_LOOK)
    gaps = [round(b - a, 9) for a, b in zip(client.looks, client.looks[1:], strict=False)]
    assert gaps == sorted(gaps) and max(gaps) <= LONGEST_GAP
    assert client.looks[-1] - 10.0 <= LONGEST_GAP


async def test_once_learned_a_task_of_steady_length_needs_one_or_two_looks() -> None:
    clock = [0.0]
    waiter = waiter_on(clock)
    client = FakeClient(clock, length=2.3)
    await run(waiter, client)
    first_looks = len(client.looks)

    looks, late = [], []
    for _ in range(10):
        await run(waiter, client)
        looks.append(len(client.looks))
        late.append(client.looks[-1] - 2.3)
    assert first_looks > 5
    assert max(looks) <= 5 and sum(looks) / len(looks) <= 3, looks
    assert max(late[5:]) <= 0.1, late  # once settled, noticed within tens of milliseconds


async def test_the_typical_end_also_moves_down_when_tasks_get_shorter() -> None:
    clock = [0.0]
    waiter = waiter_on(clock)
    long = FakeClient(clock, length=3.0)
    for _ in range(3):
        await run(waiter, long)
    short = FakeClient(clock, length=0.3)
    late = []
    for _ in range(10):
        await run(waiter, short)
        late.append(short.looks[-1] - 0.3)
    assert late[0] > 2.5  # the first looked where the long ones ended
    assert max(late[-3:]) <= 0.1, late  # a few tasks later, it looks where the short ones end


async def test_kinds_are_learned_apart() -> None:
    clock = [0.0]
    waiter = waiter_on(clock)
    await run(waiter, FakeClient(clock, length=5.0))
    other = FakeClient(clock, length=5.0)
    await run(waiter, other, OTHER_KIND)
    assert other.looks[0] == pytest.approx(FIRST_LOOK)  # nothing known of qmdestroy yet


async def test_a_wait_ends_at_its_bound_with_the_task_still_running() -> None:
    clock = [0.0]
    client = FakeClient(clock, length=100.0)
    status = await waiter_on(clock).wait(client, UPID, started=0.0, within=3.0)  # type: ignore[arg-type]
    assert status.running
    assert clock[0] == 3.0
