"""Status conditions in the shape of metav1.Condition, and the phase they sum up to."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from .model import DestroyStep, format_time

READY = "Ready"
DELETING = "Deleting"
DELETION_STALLED = "DeletionStalled"

# The Deleting condition's reason names the current step (design.md).
DELETING_REASONS = {
    DestroyStep.STARTING: "Stopping",
    DestroyStep.STOPPING: "Stopping",
    DestroyStep.WAITING_FOR_SHUTDOWN: "ShuttingDown",
    DestroyStep.FORCING_STOP: "ForcingStop",
    DestroyStep.DELETING_VM: "DeletingVM",
    DestroyStep.VERIFYING_ABSENCE: "VerifyingAbsence",
}


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Return the list with one condition set; lastTransitionTime moves only on a new status."""
    result: list[dict[str, Any]] = []
    previous: Mapping[str, Any] | None = None
    for condition in conditions:
        if condition.get("type") == type_:
            previous = condition
        else:
            result.append(dict(condition))
    changed = previous is None or previous.get("status") != status
    entry: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": format_time(now)
        if changed or previous is None
        else previous.get("lastTransitionTime", format_time(now)),
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    result.append(entry)
    return sorted(result, key=lambda c: str(c.get("type")))


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
