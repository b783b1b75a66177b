"""The benchmark's arithmetic, as pure functions: floors, ratios, spreads, task-slot figures and
the sorting of recorded requests. Everything timed is measured elsewhere (scenarios.py); this
module only turns numbers into figures, so tests can hold it to canned numbers.
"""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The task times the benchmark fixes (simulated seconds, at time scale 1: real seconds).
TASK_TIMES: dict[str, float] = {"create": 1.0, "start": 0.5, "stop": 0.5, "destroy": 1.0}
# Proxmox task types (the UPID's) by what they do.
TASK_TYPES = {
    "qmcreate": "create",
    "qmstart": "start",
    "qmstop": "stop",
    "qmshutdown": "shutdown",
    "qmdestroy": "destroy",
}


# ------------------------------------------------------------------------------ spreads


@dataclasses.dataclass(frozen=True)
class Summary:
    """A median with its spread over repeats."""

    n: int
    median: float
    low: float
    high: float
    mean: float

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            int(data["n"]),
            float(data["median"]),
            float(data["low"]),
            float(data["high"]),
            float(data["mean"]),
        )


def summarise(values: Iterable[float]) -> Summary | None:
    """Median, min, max and mean; None for no values."""
    data = [float(v) for v in values]
    if not data:
        return None
    return Summary(len(data), statistics.median(data), min(data), max(data), statistics.fmean(data))


def ratio(measured: float | None, floor: float | None) -> float | None:
    """measured / floor; None when either is unknown or the floor is not positive."""
    if measured is None or floor is None or floor <= 0:
        return None
    return measured / floor


# ------------------------------------------------------------------------------- floors


def rounds(objects: int, nodes: int, per_node: int) -> int:
    """How many waves of tasks ``objects`` need with ``per_node`` slots on each node."""
    if objects <= 0:
        return 0
    if nodes <= 0 or per_node <= 0:
        raise ValueError("nodes and slots per node must be positive")
    return math.ceil(objects / (nodes * per_node))


def ideal_makespan(objects: int, nodes: int, per_node: int, per_object: float) -> float:
    """The floor of a bulk phase: waves x the task time one object needs (create + start,
    or stop + destroy), with the objects spread evenly over the nodes."""
    return rounds(objects, nodes, per_node) * per_object


def overhead(total: float, task_seconds: float) -> float:
    """What is ours: the time the user waited minus the time Proxmox tasks ran."""
    return total - task_seconds


# ---------------------------------------------------------------------------- task slots


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """A Proxmox task as the simulator ran it (monotonic seconds)."""

    node: str
    type: str
    id: str
    start: float
    end: float
    exitstatus: str | None = None

    @property
    def ok(self) -> bool:
        return self.exitstatus == "OK" or (self.exitstatus or "").startswith("WARNINGS")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskRecord:
        return cls(
            str(data["node"]),
            str(data["type"]),
            str(data["id"]),
            float(data["start"]),
            float(data["end"]),
            data.get("exitstatus"),
        )


def within(tasks: Iterable[TaskRecord], start: float, end: float) -> list[TaskRecord]:
    """Tasks that ran at some moment of [start, end]."""
    return [t for t in tasks if t.end >= start and t.start <= end]


def peak_per_node(tasks: Iterable[TaskRecord]) -> dict[str, int]:
    """The most tasks in flight at once on each node (a task ending at the moment another
    starts does not overlap it)."""
    events: dict[str, list[tuple[float, int]]] = {}
    for task in tasks:
        events.setdefault(task.node, []).extend(((task.start, 1), (task.end, -1)))
    peaks: dict[str, int] = {}
    for node, moments in events.items():
        running = peak = 0
        for _, change in sorted(moments):  # at a tie, -1 sorts before +1
            running += change
            peak = max(peak, running)
        peaks[node] = peak
    return peaks


def busy_seconds(tasks: Iterable[TaskRecord], start: float, end: float) -> float:
    """Task time that fell inside [start, end], summed over all tasks."""
    return sum(max(0.0, min(t.end, end) - max(t.start, start)) for t in tasks)


def slot_utilisation(
    tasks: Iterable[TaskRecord], nodes: int, per_node: int, start: float, end: float
) -> float | None:
    """Share of the nodes x k task slots that held a task during [start, end]."""
    if end <= start or nodes <= 0 or per_node <= 0:
        return None
    return busy_seconds(tasks, start, end) / (nodes * per_node * (end - start))


def task_seconds(tasks: Iterable[TaskRecord], kinds: Iterable[str]) -> float:
    """Total run time of the tasks of these kinds (``stop``, ``destroy``: see TASK_TYPES)."""
    wanted = set(kinds)
    return sum(t.end - t.start for t in tasks if TASK_TYPES.get(t.type, t.type) in wanted)


def count_kinds(tasks: Iterable[TaskRecord]) -> dict[str, int]:
    return dict(Counter(TASK_TYPES.get(t.type, t.type) for t in tasks))


# ---------------------------------------------------------------------- Proxmox requests

_PROXMOX_KINDS: Sequence[tuple[str, str, str]] = (
    # (method or *, path pattern, kind)
    ("GET", r"^/cluster/resources$", "list /cluster/resources"),
    ("GET", r"^/cluster/nextid$", "GET /cluster/nextid"),
    ("GET", r"^/nodes/[^/]+/tasks/[^/]+/status$", "task status"),
    ("GET", r"^/nodes/[^/]+/tasks/[^/]+/log$", "task log"),
    ("GET", r"^/nodes/[^/]+/tasks$", "task list"),
    ("POST", r"^/nodes/[^/]+/qemu$", "create"),
    ("POST", r"^/nodes/[^/]+/qemu/\d+/clone$", "clone"),
    ("POST", r"^/nodes/[^/]+/qemu/\d+/status/start$", "start"),
    ("POST", r"^/nodes/[^/]+/qemu/\d+/status/stop$", "stop"),
    ("POST", r"^/nodes/[^/]+/qemu/\d+/status/shutdown$", "shutdown"),
    ("DELETE", r"^/nodes/[^/]+/qemu/\d+$", "delete"),
    ("GET", r"^/nodes/[^/]+/qemu/\d+/status/current$", "VM status"),
    ("GET", r"^/nodes/[^/]+/qemu/\d+/pending$", "VM pending"),
    ("GET", r"^/nodes/[^/]+/qemu/\d+/config$", "VM config read"),
    ("*", r"^/nodes/[^/]+/qemu/\d+/config$", "VM config write"),
    ("GET", r"^/version$", "version"),
    ("GET", r"^/nodes$", "list nodes"),
)
_COMPILED = [(m, re.compile(p), k) for m, p, k in _PROXMOX_KINDS]


def proxmox_kind(method: str, path: str) -> str:
    """What a Proxmox API request was for, in a few words (``other`` if not known)."""
    for wanted, pattern, kind in _COMPILED:
        if (wanted in ("*", method)) and pattern.search(path):
            return kind
    return f"other {method}"


def proxmox_breakdown(requests: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return dict(Counter(proxmox_kind(r["method"], r["path"]) for r in requests))


def create_conflicts(requests: Iterable[Mapping[str, Any]]) -> int:
    """Create POSTs refused because the VMID was taken (a lost race for /cluster/nextid)."""
    return sum(
        1
        for r in requests
        if proxmox_kind(r["method"], r["path"]) == "create"
        and r["status"] != 200
        and "already exists" in str(r.get("reason", ""))
    )


# ------------------------------------------------------------------- Kubernetes requests

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def kube_actor(agent: str) -> str:
    """Who sent a Kubernetes request, by User-Agent: the operator is kopf plus the official
    client (its Secret reads)."""
    if agent.startswith("kopf/") or agent.startswith("OpenAPI-Generator/"):
        return "operator"
    if agent.startswith("kubectl"):
        return "kubectl"
    if agent.startswith("bench"):
        return "bench"
    return "other"


def kube_kind(method: str, path: str, watch: bool) -> str:
    if watch:
        return "watch"
    if "/secrets/" in path or path.endswith("/secrets"):
        return "Secret read" if method == "GET" else "Secret write"
    if method not in WRITE_METHODS:
        return "read"
    if "/events" in path:
        return "event write"
    if re.search(r"/proxmoxvms/[^/]+/status$", path):
        return "status write"
    if "/proxmoxvms/" in path:
        return "object write"
    return f"other write ({method})"


def is_write(kind: str) -> bool:
    return kind.endswith("write") or kind.startswith("other write")


def operator_kube_requests(requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The operator's requests, each with its ``kind``."""
    return [
        {**r, "kind": kube_kind(r["method"], r["path"], bool(r.get("watch")))}
        for r in requests
        if kube_actor(str(r.get("agent", ""))) == "operator"
    ]


def kube_breakdown(requests: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["kind"] for r in operator_kube_requests(requests)))


def kube_writes(requests: Iterable[Mapping[str, Any]]) -> int:
    return sum(1 for r in operator_kube_requests(requests) if is_write(r["kind"]))


def in_window(rows: Iterable[Mapping[str, Any]], start: float, end: float) -> list[Any]:
    return [r for r in rows if start <= float(r["t"]) <= end]


# ----------------------------------------------------------------------------------- goals


@dataclasses.dataclass(frozen=True)
class Goal:
    """One performance goal, held against this run."""

    goal: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def all_of(results: Iterable[bool | None]) -> bool | None:
    """True if every result is True, False if any is False, None if nothing was measured."""
    seen = list(results)
    if any(r is False for r in seen):
        return False
    if not seen or any(r is None for r in seen):
        return None
    return True
