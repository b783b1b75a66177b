"""Waiting for a Proxmox task to end: looking when it is likely to have ended, not on a timer.

Proxmox has no way to wait on a task (no long poll, no event stream), so its end is noticed by
asking ``GET /nodes/{node}/tasks/{upid}/status``. Asking on a fixed timer is either slow (a 50
ms stop noticed a second later) or wasteful (a 30 s delete asked about 300 times). Tasks of one
type on one node take much the same time again and again, so the waiter keeps, per (cluster,
node, task type), what recent tasks showed of their length, counted from the moment the call
that started them returned: the last look that saw each running and the first that saw it
ended. Their length lies between the longest of the first and the shortest of the second. While
that bracket is wide, the first look goes to its middle (halving it for the next task), the
second to its top; once narrow, one look at its top sees the task ended, tens of milliseconds
after it did. A task that outlasts the bracket is looked at after growing gaps (``GROWTH``, at
most ``LONGEST_GAP`` apart), and a kind whose tasks changed length starts its bracket afresh. A
look at the top cannot tell that tasks got shorter, so every ``PROBE_EVERY``-th task of a kind
is also looked at once at half the bracket's bottom. With nothing learned yet, the looks start
``FIRST_LOOK`` after the call and the gaps grow from there.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .client import ProxmoxClient
from .models import TaskStatus, parse_upid

# The first look at a task whose kind has no history, and the growth of the gaps after it.
FIRST_LOOK = 0.05
GROWTH = 1.5
LONGEST_GAP = 1.0
# How many recent tasks of a kind are remembered.
REMEMBERED = 5
# A bracket narrower than this is not halved any more: one look at its top.
NARROW = 0.04
# Every this many tasks of a kind, one look early, in case its tasks got shorter.
PROBE_EVERY = 4

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Bracket:
    """A task's length as the looks showed it: above ``running``, at most ``ended``."""

    running: float  # the last look that saw it running (0: none did)
    ended: float  # the first look that saw it ended


@dataclass
class TaskDurations:
    """What recent tasks of each kind showed of their length."""

    _seen: dict[tuple[str, str, str], deque[Bracket]] = field(default_factory=dict)
    _counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def probe_due(self, kind: tuple[str, str, str]) -> bool:
        """Counts the kind's tasks; true for every ``PROBE_EVERY``-th."""
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        return count % PROBE_EVERY == 0

    def bracket(self, kind: tuple[str, str, str]) -> Bracket | None:
        """Where the length of the kind's tasks lies, by every recent one; None: unknown."""
        seen = self._seen.get(kind)
        if not seen:
            return None
        low = max(b.running for b in seen)
        high = min(b.ended for b in seen)
        if low >= high:  # they changed length (or vary more than they used to)
            latest = seen[-1]
            seen.clear()
            seen.append(latest)
            return latest
        return Bracket(low, high)

    def record(self, kind: tuple[str, str, str], seen: Bracket) -> None:
        self._seen.setdefault(kind, deque(maxlen=REMEMBERED)).append(seen)


def _kind(client: ProxmoxClient, upid: str) -> tuple[str, str, str]:
    parsed = parse_upid(upid)
    return (client.settings.endpoint, parsed.node, parsed.type)


class TaskWaiter:
    """Waits for tasks, learning per kind when to look. One per operator process."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.durations = TaskDurations()
        self._monotonic = monotonic
        self._sleep = sleep

    def now(self) -> float:
        return self._monotonic()

    async def wait(
        self, client: ProxmoxClient, upid: str, *, started: float, within: float
    ) -> TaskStatus:
        """The task's status once it ended, or its last (running) status after ``within``
        seconds. ``started``: this waiter's ``now()`` when the call that started it returned.

        Raises ProxmoxError when a look fails (the caller decides what that means), and
        RejectedError for a UPID that does not parse, without a request.
        """
        kind = _kind(client, upid)
        deadline = self.now() + within
        known = self.durations.bracket(kind)
        if known is None:
            looks = [started + FIRST_LOOK]
            gap = FIRST_LOOK
        elif known.ended - known.running > NARROW:
            looks = [started + (known.running + known.ended) / 2, started + known.ended]
            gap = NARROW
        else:
            looks = [started + known.ended]
            gap = NARROW
        if known is not None and self.durations.probe_due(kind) and known.running > 2 * NARROW:
            looks.insert(0, started + known.running / 2)
        last_running = 0.0
        while True:
            look_at = looks.pop(0) if looks else self.now()
            pause = min(look_at, deadline) - self.now()
            if pause > 0:
                await self._sleep(pause)
            status = await client.task_status(upid)
            seen = self.now()
            if not status.running:
                self.durations.record(kind, Bracket(last_running, seen - started))
                return status
            last_running = seen - started
            if seen >= deadline:
                return status
            if looks:
                continue
            looks.append(seen + gap)
            gap = min(LONGEST_GAP, gap * GROWTH)
