"""Status conditions in the shape of metav1.Condition, and the phase they sum up to."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from .model import DestroyStep, format_time

READY = "Ready"
DELETING = "Deleting"
DELETION_STALLED = "DeletionStalled"
# Flux's kstatus reads these two "abnormal-true" conditions: Reconciling=True means work is
# under way (InProgress), Stalled=True means nothing moves without a human (Failed).
RECONCILING = "Reconciling"
STALLED = "Stalled"


class Progress(enum.StrEnum):
    """Where a reconcile pass left the object; also the reconcile counter's ``result`` label."""

    READY = "ready"
    PROGRESSING = "progressing"  # working towards the spec
    RETRYING = "retrying"  # a transient error, retried without help
    STALLED = "stalled"  # needs a change to the object, the Secret or Proxmox


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


def set_readiness(
    conditions: Iterable[Mapping[str, Any]],
    progress: Progress,
    ready: str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Ready, and Reconciling and Stalled agreeing with it, all with the same reason."""
    reconciling = progress in (Progress.PROGRESSING, Progress.RETRYING)
    stalled = progress is Progress.STALLED
    result = set_condition(
        conditions, READY, ready, reason, message, now=now, generation=generation
    )
    for type_, active in ((RECONCILING, reconciling), (STALLED, stalled)):
        result = set_condition(
            result,
            type_,
            "True" if active else "False",
            reason,
            message if active else "",
            now=now,
            generation=generation,
        )
    return result


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
