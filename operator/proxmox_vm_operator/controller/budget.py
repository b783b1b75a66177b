"""The per-node limit on Proxmox tasks this operator has in flight (--max-tasks-per-node).

A node that is asked to stop fifty VMs at once queues them behind its file locks and starts
failing with lock timeouts; spreading the work keeps each task inside its deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# A task we never saw finish (its object was force-released) stops counting after this long.
FORGET_AFTER_SECONDS = 3600.0


@dataclass
class TaskBudget:
    per_node: int
    _tasks: dict[str, tuple[str, float]] = field(default_factory=dict)  # upid: (node key, since)

    def _expire(self) -> None:
        horizon = time.monotonic() - FORGET_AFTER_SECONDS
        for upid in [u for u, (_, since) in self._tasks.items() if since < horizon]:
            del self._tasks[upid]

    def in_flight(self, node_key: str) -> int:
        self._expire()
        return sum(1 for key, _ in self._tasks.values() if key == node_key)

    def has_room(self, node_key: str) -> bool:
        return self.in_flight(node_key) < self.per_node

    def started(self, node_key: str, upid: str) -> None:
        self._tasks[upid] = (node_key, time.monotonic())

    def finished(self, upid: str) -> None:
        self._tasks.pop(upid, None)
