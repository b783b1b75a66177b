"""The per-node limit on Proxmox tasks this operator has in flight (--max-tasks-per-node).

A node that is asked to stop fifty VMs at once queues them behind its file locks and starts
failing with lock timeouts; spreading the work keeps each task inside its deadline.

A slot is reserved *before* the call that starts a task, with no await in between, so passes
running concurrently on one node cannot all see room while the first call is in flight.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

# A task we never saw finish (its object was force-released) stops counting after this long.
FORGET_AFTER_SECONDS = 3600.0


@dataclass
class TaskBudget:
    per_node: int
    _tasks: dict[str, tuple[str, float]] = field(default_factory=dict)  # id: (node key, since)
    _reservations: itertools.count[int] = field(default_factory=itertools.count)

    def _expire(self) -> None:
        horizon = time.monotonic() - FORGET_AFTER_SECONDS
        for task_id in [t for t, (_, since) in self._tasks.items() if since < horizon]:
            del self._tasks[task_id]

    def in_flight(self, node_key: str) -> int:
        self._expire()
        return sum(1 for key, _ in self._tasks.values() if key == node_key)

    def reserve(self, node_key: str) -> str | None:
        """Take a slot on the node, or None when it is full. Pass the id to started/finished."""
        if self.in_flight(node_key) >= self.per_node:
            return None
        reservation = f"reservation-{next(self._reservations)}"
        self._tasks[reservation] = (node_key, time.monotonic())
        return reservation

    def started(self, reservation: str, upid: str) -> None:
        """The call started task ``upid``: the slot now follows the task."""
        node_key, since = self._tasks.pop(reservation)
        self._tasks[upid] = (node_key, since)

    def finished(self, task_id: str) -> None:
        """A task ended, or a reserved call failed: free the slot."""
        self._tasks.pop(task_id, None)
