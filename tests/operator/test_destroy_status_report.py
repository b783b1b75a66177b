"""What a destroy pass writes to status (domain.destroy.destroy_report), as the merge patch
the delete handler sends."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from proxmox_vm_operator.domain.conditions import parse_conditions
from proxmox_vm_operator.domain.destroy import StallReason, destroy_progress, destroy_report
from proxmox_vm_operator.domain.model import DestroyMode, DestroyStatus, DestroyStep

NOW = datetime.datetime(2030, 1, 1, 12, 0, 5, tzinfo=datetime.UTC)


def _report(
    step: DestroyStep | None,
    *,
    stalled: StallReason | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, object], list[str]]:
    record = (
        None
        if step is None
        else DestroyStatus(startedAt="2030-01-01T12:00:01Z", mode=DestroyMode.STOP, step=step)
    )
    patch, events = destroy_report(
        parse_conditions(conditions or []),
        generation=3,
        record=record,
        stalled=stalled,
        message="why",
        now=NOW,
    )
    return patch.to_merge_patch(), [f"{e.type}/{e.reason}" for e in events]


def _condition(status: dict[str, object], type_: str) -> dict[str, Any]:
    conditions = status["conditions"]
    assert isinstance(conditions, list)
    [found] = [c for c in conditions if c["type"] == type_]
    return dict(found)


@pytest.mark.parametrize("step", [DestroyStep.DELETING_VM, DestroyStep.VERIFYING_ABSENCE])
def test_steps_after_the_power_off_report_the_vm_stopped(step: DestroyStep) -> None:
    status, _ = _report(step)
    assert status["powerState"] == "Stopped"
    assert status["phase"] == "Deleting"
    assert status["observedGeneration"] == 3


@pytest.mark.parametrize(
    "step", [DestroyStep.STARTING, DestroyStep.STOPPING, DestroyStep.WAITING_FOR_SHUTDOWN]
)
def test_steps_before_the_power_off_leave_the_power_state_alone(step: DestroyStep) -> None:
    assert "powerState" not in _report(step)[0]


def test_the_record_is_written_whole_with_explicit_nulls() -> None:
    status, _ = _report(DestroyStep.STOPPING)
    record = status["destroy"]
    assert isinstance(record, dict)
    assert record["taskUpid"] is None and "shutdownDeadline" in record
    assert record["step"] == "Stopping"


def test_the_deleting_condition_names_the_step_and_ready_speaks_for_the_deletion() -> None:
    status, events = _report(DestroyStep.WAITING_FOR_SHUTDOWN)
    assert (_condition(status, "Deleting")["status"], _condition(status, "Deleting")["reason"]) == (
        "True",
        "ShuttingDown",
    )
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Deleting")
    assert _condition(status, "DeletionStalled")["reason"] == "Progressing"
    assert events == []


def test_a_new_stall_posts_one_warning_and_a_lasting_one_none() -> None:
    status, events = _report(DestroyStep.STOPPING, stalled=StallReason.VM_LOCKED)
    assert events == ["Warning/VMLocked"]
    stalled = _condition(status, "DeletionStalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "VMLocked")
    assert _condition(status, "Stalled")["status"] == "True"

    conditions = status["conditions"]
    assert isinstance(conditions, list)
    _, again = _report(DestroyStep.STOPPING, stalled=StallReason.VM_LOCKED, conditions=conditions)
    assert again == []
    _, other = _report(DestroyStep.STOPPING, stalled=StallReason.PROTECTED, conditions=conditions)
    assert other == ["Warning/Protected"]


def test_without_a_record_the_phase_and_conditions_are_still_written() -> None:
    status, _ = _report(None)
    assert status["phase"] == "Deleting"
    assert "destroy" not in status
    assert _condition(status, "Ready")["reason"] == "Deleting"


def test_the_destroy_gauges_read_back_what_a_pass_wrote() -> None:
    """A restarted operator rebuilds its destroy gauges from the status alone."""
    status, _ = _report(DestroyStep.STOPPING, stalled=StallReason.PROTECTED)
    progress = destroy_progress(status)
    assert progress is not None
    assert progress.started == datetime.datetime(2030, 1, 1, 12, 0, 1, tzinfo=datetime.UTC)
    assert (progress.step, progress.stalled) == ("Stopping", "Protected")
    moving, _ = _report(DestroyStep.STOPPING)
    assert destroy_progress(moving) is not None
    assert destroy_progress(moving).stalled is None  # type: ignore[union-attr]
    assert destroy_progress(_report(None)[0]) is None
    assert destroy_progress({"destroy": {"step": "Stopping"}}) is None  # unreadable record
