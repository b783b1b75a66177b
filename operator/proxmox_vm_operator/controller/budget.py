"""The per-node limit on Proxmox tasks this operator has in flight (--max-tasks-per-node).

A node that is asked to stop fifty VMs at once queues them behind its file locks and starts
failing with lock timeouts; spreading the work keeps each task inside its deadline.

What counts is what Proxmox says runs on the node, not which object remembers a task: an
object deleted while its create task ran never looks at that task again, and a slot that
waited for it would stay taken. So before a call the node's active tasks are listed
(``look``), and the tasks of ours Proxmox lists replace what this process remembered of
that node. Between listings, tasks this process started still count.

A slot is reserved *before* the call that starts a task, with no await between the check
and the reservation, so passes running concurrently on one node cannot all see room while
the first call is in flight.

A pass that finds the node full waits for a slot in the node's queue (``acquire``), first
come first served, and is woken the moment a task of ours is seen to end: it neither
retries through kopf nor writes anything while it waits.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from ..proxmox import ActiveTask, ProxmoxClient

# A task this process started and no listing has confirmed (the node was never listed again,
# or it is unreachable) stops counting after this long.
FORGET_AFTER_SECONDS = 3600.0


@dataclass
class _Started:
    node_key: str
    # time.monotonic() when the slot was reserved, and then when the call that started the
    # task returned: a listing asked after that moment shows the task while it runs.
    since: float


@dataclass
class TaskBudget:
    per_node: int
    # Calls in flight and tasks started by this process since the node was last listed.
    _tasks: dict[str, _Started] = field(default_factory=dict)
    # Per node: the UPIDs of ours Proxmox listed as running, and when that listing was asked.
    _listed: dict[str, tuple[frozenset[str], float]] = field(default_factory=dict)
    _reservations: itertools.count[int] = field(default_factory=itertools.count)
    # Per node: the node's last listing (what ``look`` answered), kept for ``max_age``.
    _listings: dict[str, list[ActiveTask]] = field(default_factory=dict)
    # Per node: the passes waiting for a slot, in the order they came.
    _queues: dict[str, deque[asyncio.Future[None]]] = field(default_factory=dict)

    @staticmethod
    def node_key(client: ProxmoxClient, node: str) -> str:
        return f"{client.settings.endpoint}/{node}"

    async def look(
        self, client: ProxmoxClient, node: str, *, max_age: float = 0.0
    ) -> list[ActiveTask]:
        """List the node's running tasks; ours then replace what was remembered of the node.
        A listing asked less than ``max_age`` seconds ago is answered again without a request:
        between listings, the tasks this process starts and sees end keep the count.

        Raises ProxmoxError when the listing fails: the caller treats it like a failed call.
        """
        key = self.node_key(client, node)
        kept = self._listings.get(key)
        if kept is not None and time.monotonic() - self._listed[key][1] < max_age:
            return list(kept)
        asked = time.monotonic()
        running = await client.active_tasks(node)
        mine = client.settings.token_id
        self._listings[key] = list(running)
        self.observe(key, [task.upid.raw for task in running if task.user == mine], asked_at=asked)
        return running

    def observe(self, node_key: str, running: list[str], *, asked_at: float) -> None:
        """Proxmox listed ``running`` as our tasks on the node, as of ``asked_at``. A task we
        started before that moment and it no longer lists has ended."""
        self._listed[node_key] = (frozenset(running), asked_at)
        for task_id in [
            t
            for t, s in self._tasks.items()
            if s.node_key == node_key and s.since < asked_at and t.startswith("UPID:")
        ]:
            del self._tasks[task_id]
        self._wake(node_key)

    def _expire(self) -> None:
        horizon = time.monotonic() - FORGET_AFTER_SECONDS
        for task_id in [t for t, s in self._tasks.items() if s.since < horizon]:
            del self._tasks[task_id]

    def in_flight(self, node_key: str) -> int:
        self._expire()
        listed, _ = self._listed.get(node_key, (frozenset(), 0.0))
        remembered = {t for t, s in self._tasks.items() if s.node_key == node_key}
        return len(listed | remembered)

    def reserve(self, node_key: str) -> str | None:
        """Take a slot on the node, or None when it is full. Pass the id to started/finished.
        Passes use ``acquire``, which keeps the queue's order."""
        if self.in_flight(node_key) >= self.per_node:
            return None
        reservation = f"reservation-{next(self._reservations)}"
        self._tasks[reservation] = _Started(node_key, time.monotonic())
        return reservation

    async def acquire(self, node_key: str, *, within: float) -> str | None:
        """A slot on the node, waiting up to ``within`` seconds behind the passes that came
        first; None when none freed in time (the caller looks again later)."""
        queue = self._queues.setdefault(node_key, deque())
        if not queue:
            reservation = self.reserve(node_key)
            if reservation is not None or within <= 0:
                return reservation
        elif within <= 0:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        ticket: asyncio.Future[None] = loop.create_future()
        queue.append(ticket)
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(asyncio.shield(ticket), timeout=left)
                except TimeoutError:
                    return None
                reservation = self.reserve(node_key) if queue[0] is ticket else None
                if reservation is not None:
                    return reservation
                # Woken, but the slot went to a listing's count: wait again in place.
                renewed: asyncio.Future[None] = loop.create_future()
                queue[queue.index(ticket)] = renewed
                ticket = renewed
        finally:
            if ticket in queue:
                queue.remove(ticket)
            self._wake(node_key)

    def waiting(self, node_key: str) -> int:
        """How many passes wait for a slot on the node."""
        return len(self._queues.get(node_key, ()))

    def _wake(self, node_key: str) -> None:
        """Let the first waiter of the node try for a slot, if there is room."""
        queue = self._queues.get(node_key)
        if not queue or self.in_flight(node_key) >= self.per_node:
            return
        if not queue[0].done():
            queue[0].set_result(None)

    def started(self, reservation: str, upid: str) -> None:
        """The call started task ``upid``: the slot now follows the task.

        Counted from now, not from the reservation: a listing asked while the call was in
        flight may not show the task yet, and must not be taken to say it ended."""
        slot = self._tasks.pop(reservation)
        self._tasks[upid] = _Started(slot.node_key, time.monotonic())

    def finished(self, task_id: str) -> None:
        """A task ended, or a reserved call failed: free the slot."""
        slot = self._tasks.pop(task_id, None)
        for node_key, (listed, asked) in list(self._listed.items()):
            if task_id in listed:
                self._listed[node_key] = (listed - {task_id}, asked)
                self._listings[node_key] = [
                    task for task in self._listings.get(node_key, []) if task.upid.raw != task_id
                ]
                self._wake(node_key)
        if slot is not None:
            self._wake(slot.node_key)
