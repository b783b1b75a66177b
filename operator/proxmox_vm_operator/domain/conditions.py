"""Status conditions in the shape of metav1.Condition, as typed models.

Conditions are read once from the stored status (``parse_conditions``) and written back
whole: a merge patch replaces a list, so each pass writes every condition it keeps.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Sequence

from pydantic import ValidationError

from .model import Condition, ConditionStatus, DestroyStep, format_time
from .reasons import DeletingReason

READY = "Ready"
DELETING = "Deleting"
DELETION_STALLED = "DeletionStalled"
# Flux's kstatus reads these two "abnormal-true" conditions: Reconciling=True means work is
# under way (InProgress), Stalled=True means nothing moves without a human (Failed).
RECONCILING = "Reconciling"
STALLED = "Stalled"
CONDITION_TYPES = (READY, RECONCILING, STALLED, DELETING, DELETION_STALLED)
MESSAGE_LIMIT = 32768


class Progress(enum.StrEnum):
    """Where a reconcile pass left the object; also the reconcile counter's ``result`` label."""

    READY = "ready"
    PROGRESSING = "progressing"  # working towards the spec
    RETRYING = "retrying"  # a transient error, retried without help
    STALLED = "stalled"  # needs a change to the object, the Secret or Proxmox


# The Deleting condition's reason names the current step.
DELETING_REASONS = {
    DestroyStep.STARTING: DeletingReason.STOPPING,
    DestroyStep.STOPPING: DeletingReason.STOPPING,
    DestroyStep.WAITING_FOR_SHUTDOWN: DeletingReason.SHUTTING_DOWN,
    DestroyStep.FORCING_STOP: DeletingReason.FORCING_STOP,
    DestroyStep.DELETING_VM: DeletingReason.DELETING_VM,
    DestroyStep.VERIFYING_ABSENCE: DeletingReason.VERIFYING_ABSENCE,
}


def parse_conditions(raw: object) -> list[Condition]:
    """The stored conditions; an entry that is not a valid condition is dropped (the next
    write replaces the list, so a mangled entry heals instead of blocking every pass)."""
    found: list[Condition] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            found.append(Condition.model_validate(item))
        except ValidationError:
            continue
    return found


def set_condition(
    conditions: Iterable[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    generation: int | None,
) -> list[Condition]:
    """The list with one condition set; lastTransitionTime moves only on a new status."""
    others = [c for c in conditions if c.type != type_]
    previous = find(conditions, type_)
    moved = previous is None or previous.status is not status
    entry = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:MESSAGE_LIMIT],
        lastTransitionTime=format_time(now)
        if moved or previous is None
        else previous.last_transition_time,
        observedGeneration=generation,
    )
    return sorted([*others, entry], key=lambda c: c.type)


def set_readiness(
    conditions: Iterable[Condition],
    progress: Progress,
    ready: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    generation: int | None,
) -> list[Condition]:
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
            ConditionStatus.TRUE if active else ConditionStatus.FALSE,
            reason,
            message if active else "",
            now=now,
            generation=generation,
        )
    return result


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str, reason: str | None = None) -> bool:
    """Whether the condition is True (with ``reason``, if given)."""
    found = find(conditions, type_)
    return (
        found is not None
        and found.status is ConditionStatus.TRUE
        and (reason is None or found.reason == reason)
    )
