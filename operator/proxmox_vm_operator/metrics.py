"""Every Prometheus metric of the operator, in one place.

The names and labels are public: alerts, dashboards and runbooks query them, so they change
only on purpose (docs/design.md, "Public names").
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from .domain.conditions import Progress
from .domain.destroy import Outcome, StallReason
from .domain.model import DestroyMode, DestroyStep, Phase
from .proxmox import ApiCall

# The bounded label values of the gauges that count objects: each is exported from the start.
PHASES = tuple(p.value for p in Phase)
STEPS = tuple(s.value for s in DestroyStep)
STALL_REASONS = tuple(r.value for r in StallReason)

DESTROY_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600)
TASK_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 600, 1800, 3600)

destroy_duration = Histogram(
    "proxmoxvm_destroy_duration_seconds",
    "Time from deletionTimestamp to the finalizer's release.",
    ["mode", "outcome"],
    buckets=DESTROY_BUCKETS,
)
destroy_started = Gauge(
    "proxmoxvm_destroy_started_timestamp_seconds",
    "Unix time a destroy started; present only while it is in flight.",
    ["namespace", "name"],
)
destroys_in_progress = Gauge(
    "proxmoxvm_destroys_in_progress", "Destroys in flight, by current step.", ["step"]
)
destroys_stalled = Gauge(
    "proxmoxvm_destroys_stalled", "Destroys with DeletionStalled=True, by reason.", ["reason"]
)
destroy_fallbacks = Counter(
    "proxmoxvm_destroy_fallback",
    "Graceful shutdowns that ran out of time and were followed by a forced stop.",
)
destroy_errors = Counter(
    "proxmoxvm_destroy_errors",
    "Destroy passes that hit an error (a failed call or task, Proxmox unreachable), by reason; "
    "counted from the first error, before any stall is declared.",
    ["reason"],
)
api_request_duration = Histogram(
    "proxmox_api_request_duration_seconds",
    "Proxmox VE API calls, by method, templated endpoint and HTTP status code.",
    ["method", "endpoint", "code"],
)
reconciles = Counter(
    "proxmoxvm_reconcile",
    "Reconcile passes, by where they left the object: ready, progressing, retrying (a "
    "transient error) or stalled (needs a human).",
    ["result"],
)
objects = Gauge("proxmoxvm_objects", "ProxmoxVM objects the operator watches, by phase.", ["phase"])
task_duration = Histogram(
    "proxmox_task_duration_seconds",
    "Proxmox tasks started by the operator, by type and final status (until the operator saw "
    "the end: its polls add up to a few seconds).",
    ["type", "status"],
    buckets=TASK_BUCKETS,
)


def _export_known_label_sets() -> None:
    """A labelled counter or histogram has no series before its first event, so Prometheus's
    first sample already holds that event and rate()/increase() never count it. Export every
    bounded label set at zero from the start."""
    for mode in DestroyMode:
        for outcome in Outcome:
            destroy_duration.labels(mode.value, outcome.value)
    for reason in StallReason:
        destroy_errors.labels(reason.value)
    for progress in Progress:
        reconciles.labels(progress.value)


_export_known_label_sets()


def observe_task(task_type: str, ok: bool, seconds: float) -> None:
    task_duration.labels(task_type, "ok" if ok else "failed").observe(max(0.0, seconds))


def observe_api_call(call: ApiCall) -> None:
    code = str(call.status_code) if call.status_code is not None else "error"
    api_request_duration.labels(call.method, call.endpoint, code).observe(call.duration_seconds)


class ObjectTracker:
    """Keeps ``proxmoxvm_objects`` equal to the watched objects' phases."""

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._publish()

    def seen(self, uid: str, phase: str) -> None:
        self._phases[uid] = phase
        self._publish()

    def gone(self, uid: str) -> None:
        self._phases.pop(uid, None)
        self._publish()

    def _publish(self) -> None:
        _publish_counts(objects, self._phases.values(), PHASES)


_labels_seen: dict[Gauge, set[str]] = {}


def _publish_counts(gauge: Gauge, values: Iterable[str], known: Iterable[str]) -> None:
    """One sample per label value, its count. Known values, and any value counted before,
    read 0 when there is nothing to count, so queries see a zero, not a missing series."""
    counts = Tally(values)
    seen = _labels_seen.setdefault(gauge, set())
    seen.update(known, counts)
    for label in seen:
        gauge.labels(label).set(counts.get(label, 0))


class DestroyTracker:
    """Keeps the per-step and per-reason gauges equal to the destroys in flight."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], str] = {}
        self._stalls: dict[tuple[str, str], str] = {}
        self._publish()

    def update(
        self, namespace: str, name: str, started_at: float, step: str, stalled: str | None
    ) -> None:
        key = (namespace, name)
        destroy_started.labels(namespace, name).set(started_at)
        self._steps[key] = step
        if stalled is None:
            self._stalls.pop(key, None)
        else:
            self._stalls[key] = stalled
        self._publish()

    def finish(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._steps.pop(key, None)
        self._stalls.pop(key, None)
        with contextlib.suppress(KeyError):
            destroy_started.remove(namespace, name)
        self._publish()

    def _publish(self) -> None:
        _publish_counts(destroys_in_progress, self._steps.values(), STEPS)
        _publish_counts(destroys_stalled, self._stalls.values(), STALL_REASONS)
