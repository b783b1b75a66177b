"""Test-only fault injection: the ways a real Proxmox VE cluster lets an operator down."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum


class Unreachable(Enum):
    """How the API is unreachable: the port refuses, connections reset, or replies never come."""

    REFUSE = "refuse"
    RESET = "reset"
    HANG = "hang"


@dataclass
class InjectedFailure:
    path: re.Pattern[str]
    method: str | None
    remaining: int
    status: int
    message: str
    errors: dict[str, str] | None


@dataclass
class InjectedTaskFailure:
    task_type: str
    task_id: str | None
    remaining: int
    message: str


@dataclass
class Latency:
    seconds: float
    path: re.Pattern[str] | None


@dataclass
class Faults:
    unreachable: Unreachable | None = None
    failures: list[InjectedFailure] = field(default_factory=list)
    task_failures: list[InjectedTaskFailure] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)

    def take_failure(self, method: str, path: str) -> InjectedFailure | None:
        for failure in self.failures:
            if failure.method not in (None, method) or not failure.path.search(path):
                continue
            failure.remaining -= 1
            if failure.remaining <= 0:
                self.failures.remove(failure)
            return failure
        return None

    def take_task_failure(self, task_type: str, task_id: str) -> str | None:
        for failure in self.task_failures:
            if failure.task_type != task_type or failure.task_id not in (None, task_id):
                continue
            failure.remaining -= 1
            if failure.remaining <= 0:
                self.task_failures.remove(failure)
            return failure.message
        return None

    def latency_for(self, path: str) -> float:
        return sum(
            latency.seconds
            for latency in self.latencies
            if latency.path is None or latency.path.search(path)
        )
