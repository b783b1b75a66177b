"""Each branch of the destroy algorithm (docs/design.md), decided by the pure state machine."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from proxmox_vm_operator.domain.destroy import (
    DESTROY_RETRY_CAP,
    DeleteVM,
    DestroyContext,
    Outcome,
    PowerOff,
    PowerOffMethod,
    Release,
    RemoveOwnershipTag,
    StallReason,
    TaggedVM,
    TaskObservation,
    TaskState,
    VMAbsent,
    VMPresent,
    VMUnreachable,
    Wait,
    call_failed,
    decide,
    destroy_strays,
    ownership_tag,
    shutdown_accepted,
)
from proxmox_vm_operator.domain.model import DestroyStatus, DestroyStep, ProxmoxVMSpec

T0 = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.UTC)
UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
OURS = frozenset({ownership_tag(UID), "web"})
UPID = "UPID:pve1:00001234:00000100:6B000000:qmstop:120:root@pam!op:"


def spec(**destroy: Any) -> ProxmoxVMSpec:
    body: dict[str, Any] = {"connectionRef": {"name": "pve"}, "node": "pve1", "vmid": 120}
    extra = destroy.pop("spec", {})
    if destroy:
        body["destroy"] = destroy
    return ProxmoxVMSpec.model_validate({**body, **extra})


def ctx(
    the_spec: ProxmoxVMSpec | None = None,
    *,
    record: DestroyStatus | None = None,
    annotations: dict[str, str] | None = None,
    vmid: int | None = 120,
    seconds: float = 0,
) -> DestroyContext:
    return DestroyContext(
        now=T0 + datetime.timedelta(seconds=seconds),
        uid=UID,
        spec=the_spec or spec(),
        annotations=annotations or {},
        vmid=vmid,
        record=record,
        stall_after=600,
    )


def running(**kwargs: Any) -> VMPresent:
    return VMPresent(node="pve1", tags=kwargs.pop("tags", OURS), running=True, **kwargs)


def stopped(**kwargs: Any) -> VMPresent:
    return VMPresent(node="pve1", tags=kwargs.pop("tags", OURS), running=False, **kwargs)


def with_task(decision_record: DestroyStatus | None, upid: str = UPID) -> DestroyStatus:
    assert decision_record is not None
    return decision_record.model_copy(update={"task_upid": upid})


OK = TaskObservation(TaskState.SUCCEEDED, "OK")
RUNNING = TaskObservation(TaskState.RUNNING)


# --- 1-3: releases that need no Proxmox -------------------------------------------------


def test_force_release_annotation_releases_at_once_with_a_warning() -> None:
    decision = decide(ctx(annotations={"proxmox.vmop.dev/force-release": "true"}), None, None)
    assert decision.action == Release(Outcome.FORCE_RELEASED)
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "ForceReleased")]


def test_orphan_policy_removes_our_tag_when_the_vm_is_reachable() -> None:
    orphan = spec(spec={"deletionPolicy": "Orphan"})
    decision = decide(ctx(orphan), running(), None)
    assert decision.action == RemoveOwnershipTag("pve1")


def test_orphan_policy_releases_with_a_warning_when_proxmox_is_unreachable() -> None:
    orphan = spec(spec={"deletionPolicy": "Orphan"})
    decision = decide(ctx(orphan), VMUnreachable("connection refused"), None)
    assert decision.action == Release(Outcome.ORPHANED)
    assert decision.events[0].reason == "OrphanedWithTag"


def test_object_that_never_had_a_vm_is_released_as_already_absent() -> None:
    decision = decide(ctx(vmid=None), None, None)
    assert decision.action == Release(Outcome.ALREADY_ABSENT)


# --- 4: only a positive answer counts as gone ------------------------------------------


def test_absent_vm_is_released_as_already_absent() -> None:
    assert decide(ctx(), VMAbsent(), None).action == Release(Outcome.ALREADY_ABSENT)


@pytest.mark.parametrize(
    "error", ["connection refused", "401 Authentication failed!", "595 No route to host"]
)
def test_unreachable_proxmox_is_never_taken_for_gone(error: str) -> None:
    decision = decide(ctx(), VMUnreachable(error), None)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is None
    assert decision.record is not None and decision.record.last_error == error


def test_unreachable_proxmox_backs_off_with_a_cap_and_reports_a_stall_after_stall_after() -> None:
    record = None
    waits = []
    for attempt in range(10):
        decision = decide(ctx(record=record, seconds=attempt * 70), VMUnreachable("reset"), None)
        assert isinstance(decision.action, Wait)
        waits.append(decision.action)
        record = decision.record
    assert [w.seconds for w in waits][:4] == [2.0, 4.0, 8.0, 15.0]
    # Capped low, so a cleared fault is noticed within seconds.
    assert max(w.seconds for w in waits) == DESTROY_RETRY_CAP == 15.0
    assert waits[0].stalled is None
    assert waits[-1].stalled is StallReason.PROXMOX_UNREACHABLE
    # Every one of them is an error for the errors counter, stalled yet or not.
    assert {w.error for w in waits} == {StallReason.PROXMOX_UNREACHABLE}


def test_unknown_task_status_is_retried_not_taken_for_success() -> None:
    record = with_task(decide(ctx(), running(), None).record)
    decision = decide(ctx(record=record), running(), TaskObservation(TaskState.UNKNOWN, "timeout"))
    assert isinstance(decision.action, Wait)
    assert decision.record is not None and decision.record.task_upid == UPID


# --- 5: not ours ------------------------------------------------------------------------


def test_vm_without_our_tag_is_left_untouched_and_released_with_a_warning() -> None:
    decision = decide(ctx(), running(tags=frozenset({"vmop-someone-else"})), None)
    assert decision.action == Release(Outcome.NOT_OWNED)
    assert decision.events[0].type == "Warning"


def test_adopted_vm_without_our_tag_is_destroyed() -> None:
    adopted = spec(spec={"adopt": True})
    decision = decide(ctx(adopted), running(tags=frozenset()), None)
    assert isinstance(decision.action, PowerOff)


# --- 6: protection and locks -----------------------------------------------------------


def test_protected_vm_waits_and_reports_protected() -> None:
    decision = decide(ctx(), stopped(protected=True), None)
    assert decision.action == Wait(8.0, StallReason.PROTECTED)


def test_backup_locked_vm_waits_and_reports_locked() -> None:
    decision = decide(ctx(), running(lock="backup"), None)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is StallReason.VM_LOCKED
    assert decision.record is not None and "backup" in decision.record.last_error


# --- 7: power off ------------------------------------------------------------------------


def test_default_policy_is_a_hard_stop_and_never_a_shutdown() -> None:
    decision = decide(ctx(), running(), None)
    assert decision.action == PowerOff("pve1", PowerOffMethod.STOP)
    assert decision.record is not None
    assert decision.record.mode == "Stop"
    assert decision.record.step is DestroyStep.STOPPING
    assert decision.record.shutdown_deadline is None


def test_shutdown_policy_asks_for_a_shutdown_bounded_by_the_timeout() -> None:
    decision = decide(ctx(spec(mode="Shutdown", shutdownTimeoutSeconds=90)), running(), None)
    assert decision.action == PowerOff("pve1", PowerOffMethod.SHUTDOWN, 90)
    assert decision.record is not None
    assert decision.record.step is DestroyStep.WAITING_FOR_SHUTDOWN
    # The deadline is set when Proxmox accepts the shutdown, not when it is decided.
    assert decision.record.shutdown_deadline is None


def test_the_guest_gets_the_whole_timeout_from_the_moment_proxmox_accepts_the_shutdown() -> None:
    """Counted from the acceptance, to the microsecond: a deadline counted from the pass and
    cut to whole seconds gave the guest 2.3 s of 3."""
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=3)
    decision = decide(ctx(the_spec, seconds=0.7), running(), None)
    assert decision.action == PowerOff("pve1", PowerOffMethod.SHUTDOWN, 3)
    assert decision.record is not None
    accepted_at = T0 + datetime.timedelta(seconds=1.2)  # the call took half a second
    record = with_task(shutdown_accepted(decision.record, accepted_at, 3))
    assert record.shutdown_deadline == "2026-11-26T12:00:04.200000Z"
    # Still waiting a moment before the promised time...
    early = decide(ctx(the_spec, record=record, seconds=4.19), running(), RUNNING)
    assert isinstance(early.action, Wait)
    assert early.action.seconds <= 0.5 + 1e-9  # ...and looks again right at the deadline
    # ...and forcing the stop once it is over.
    late = decide(ctx(the_spec, record=record, seconds=4.2), running(), RUNNING)
    assert late.action == PowerOff("pve1", PowerOffMethod.STOP)
    # A shutdown sent again later does not move the deadline.
    assert shutdown_accepted(record, accepted_at + datetime.timedelta(seconds=9), 3) == record


def test_shutdown_waits_for_its_task_until_the_deadline() -> None:
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=90)
    record = with_task(decide(ctx(the_spec), running(), None).record)
    decision = decide(ctx(the_spec, record=record, seconds=60), running(), RUNNING)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is None


def test_shutdown_past_its_deadline_falls_back_to_a_forced_stop() -> None:
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=90)
    record = with_task(decide(ctx(the_spec), running(), None).record)
    decision = decide(ctx(the_spec, record=record, seconds=91), running(), RUNNING)
    assert decision.action == PowerOff("pve1", PowerOffMethod.STOP)
    assert decision.fallback
    assert decision.record is not None and decision.record.fallback_used
    assert decision.record.step is DestroyStep.FORCING_STOP
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "ShutdownTimedOut")]


def test_failed_shutdown_task_falls_back_to_a_forced_stop() -> None:
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=30)
    record = with_task(decide(ctx(the_spec), running(), None).record)
    failed = TaskObservation(TaskState.FAILED, "VM quit/powerdown failed - got timeout")
    decision = decide(ctx(the_spec, record=record, seconds=30), running(), failed)
    assert decision.action == PowerOff("pve1", PowerOffMethod.STOP)
    assert decision.fallback


def test_deadline_is_persisted_so_a_restart_late_in_the_wait_forces_the_stop() -> None:
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=90)
    record = decide(ctx(the_spec), running(), None).record
    # The operator died before it could record the UPID; it comes back after the deadline.
    decision = decide(ctx(the_spec, record=record, seconds=500), running(), None)
    assert decision.action == PowerOff("pve1", PowerOffMethod.STOP)
    assert decision.fallback


def test_destroy_mode_annotation_cuts_a_graceful_wait_short() -> None:
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=3600)
    record = with_task(decide(ctx(the_spec), running(), None).record)
    annotations = {"proxmox.vmop.dev/destroy-mode": "Stop"}
    decision = decide(
        ctx(the_spec, record=record, annotations=annotations, seconds=5), running(), RUNNING
    )
    assert decision.action == PowerOff("pve1", PowerOffMethod.STOP)
    assert not decision.fallback


def test_destroy_mode_annotation_can_ask_for_shutdown_on_a_default_spec() -> None:
    annotations = {"proxmox.vmop.dev/destroy-mode": "Shutdown"}
    decision = decide(ctx(annotations=annotations), running(), None)
    assert decision.action == PowerOff("pve1", PowerOffMethod.SHUTDOWN, 120)


def test_invalid_destroy_mode_annotation_is_ignored() -> None:
    annotations = {"proxmox.vmop.dev/destroy-mode": "shutdown-please"}
    assert decide(ctx(annotations=annotations), running(), None).action == PowerOff(
        "pve1", PowerOffMethod.STOP
    )


def test_ha_managed_vm_is_stopped_through_ha_and_polled_without_a_second_call() -> None:
    first = decide(ctx(), running(ha_managed=True), None)
    assert first.action == PowerOff("pve1", PowerOffMethod.HA_STOP)
    record = with_task(first.record)
    polled = decide(ctx(record=record, seconds=2), running(ha_managed=True), OK)
    assert isinstance(polled.action, Wait)
    again = decide(ctx(record=polled.record, seconds=4), running(ha_managed=True), None)
    assert isinstance(again.action, Wait)


def test_running_stop_task_is_awaited_not_repeated_after_a_restart() -> None:
    record = with_task(decide(ctx(), running(), None).record)
    decision = decide(ctx(record=record, seconds=1), running(), RUNNING)
    assert isinstance(decision.action, Wait)
    assert decision.record is not None and decision.record.task_upid == UPID


def test_failed_stop_task_is_retried_and_reported() -> None:
    record = with_task(decide(ctx(), running(), None).record)
    failed = TaskObservation(TaskState.FAILED, "VM is locked (backup)", failed_on_lock=True)
    decision = decide(ctx(record=record, seconds=1), running(), failed)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is StallReason.VM_LOCKED
    retry = decide(ctx(record=decision.record, seconds=5), running(), None)
    assert retry.action == PowerOff("pve1", PowerOffMethod.STOP)


# --- 8-9: delete and verify --------------------------------------------------------------


def test_stopped_vm_is_deleted_with_the_configured_purge_flags() -> None:
    the_spec = spec(purge=False, destroyUnreferencedDisks=False)
    decision = decide(ctx(the_spec), stopped(), None)
    assert decision.action == DeleteVM("pve1", purge=False, destroy_unreferenced_disks=False)


def test_successful_delete_then_absence_releases_as_deleted() -> None:
    record = with_task(decide(ctx(), stopped(), None).record)
    decision = decide(ctx(record=record, seconds=3), VMAbsent(), None)
    assert decision.action == Release(Outcome.DELETED)


def test_vm_still_there_unlocked_after_its_delete_task_is_deleted_again() -> None:
    """A VM seen after its delete ended OK, with no destroy lock, was not deleted (the task
    was another one, or the record was lost): waiting would wait for nothing."""
    record = with_task(decide(ctx(), stopped(), None).record)
    decision = decide(ctx(record=record, seconds=3), stopped(), OK)
    assert isinstance(decision.action, DeleteVM)
    assert decision.record is not None
    assert decision.record.step is DestroyStep.DELETING_VM


def test_vm_whose_delete_task_still_runs_is_followed_even_with_its_tags_gone() -> None:
    """Proxmox's destroy rewrites the config to only "lock: destroyed" before removing it:
    no tags, yet it is ours, being deleted; never NotOwned."""
    record = with_task(decide(ctx(), stopped(), None).record)
    mid_delete = stopped(tags=frozenset(), lock="destroyed")
    for observed in (RUNNING, OK):
        decision = decide(ctx(record=record, seconds=3), mid_delete, observed)
        assert isinstance(decision.action, Wait), decision
        assert decision.action.stalled is None
        assert not any(e.reason == "NotOwned" for e in decision.events)
    # Its config still intact in the first phase (volumes being freed): followed as well.
    decision = decide(ctx(record=record, seconds=3), stopped(tags=frozenset()), RUNNING)
    assert isinstance(decision.action, Wait)


def test_vm_being_deleted_by_proxmox_is_waited_for() -> None:
    record = decide(ctx(), stopped(), None).record
    decision = decide(ctx(record=record, seconds=3), stopped(lock="destroyed"), None)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is None


def test_failed_call_keeps_the_step_and_retries_later() -> None:
    first = decide(ctx(), stopped(), None)
    failed = call_failed(ctx(), first, StallReason.PROXMOX_UNREACHABLE, "connection reset")
    assert isinstance(failed.action, Wait)
    assert failed.record is not None and failed.record.step is DestroyStep.DELETING_VM
    # The lost reply had in fact deleted the VM: the next lookup says absent.
    assert decide(ctx(record=failed.record, seconds=5), VMAbsent(), None).action == Release(
        Outcome.DELETED
    )


def test_shutdown_failing_on_a_lock_waits_for_the_lock_instead_of_forcing_a_stop() -> None:
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=300)
    record = with_task(decide(ctx(the_spec), running(), None).record)
    failed = TaskObservation(TaskState.FAILED, "VM is locked (backup)", failed_on_lock=True)
    decision = decide(ctx(the_spec, record=record, seconds=5), running(), failed)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is StallReason.VM_LOCKED
    assert not decision.fallback


def test_a_configured_graceful_wait_is_not_reported_as_taking_too_long() -> None:
    the_spec = spec(mode="Shutdown", shutdownTimeoutSeconds=3600)
    record = with_task(decide(ctx(the_spec), running(), None).record)
    decision = decide(ctx(the_spec, record=record, seconds=1800), running(), RUNNING)
    assert decision.action == Wait(15.0, None)


def test_vm_still_being_created_by_this_object_is_waited_for_not_released() -> None:
    being_created = stopped(tags=frozenset(), lock="create")
    provisioning = DestroyContext(
        now=T0,
        uid=UID,
        spec=spec(),
        annotations={},
        vmid=120,
        record=None,
        stall_after=600,
        provisioned_by_us=True,
    )
    decision = decide(provisioning, being_created, None)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is None
    assert "being provisioned" in decision.message
    finished_clone = stopped(tags=frozenset({"template-tag"}))
    later = DestroyContext(
        now=T0,
        uid=UID,
        spec=spec(),
        annotations={},
        vmid=120,
        record=decision.record,
        stall_after=600,
        provisioned_by_us=True,
    )
    assert isinstance(decide(later, finished_clone, None).action, DeleteVM)


def test_vm_under_a_create_lock_is_waited_for_even_without_our_record_of_the_create() -> None:
    """The operator died between the create call and the status write: the VM at our VMID
    has no tags until its create ends. It is waited for, never judged NotOwned."""
    being_created = stopped(tags=frozenset(), lock="create")
    decision = decide(ctx(), being_created, None)
    assert isinstance(decision.action, Wait)
    assert not decision.events
    finished = stopped()  # the create ended and tagged it as ours
    assert isinstance(decide(ctx(record=decision.record), finished, None).action, DeleteVM)
    # A create that never ends is reported once it lasts, not waited for in silence.
    late = decide(ctx(record=decision.record, seconds=601), being_created, None)
    assert isinstance(late.action, Wait)
    assert late.action.stalled is StallReason.TAKING_TOO_LONG


def test_a_failed_call_counts_one_failure_so_retries_come_2_4_8_seconds_apart() -> None:
    record = None
    waits = []
    for second in (0, 2, 6):
        first = decide(ctx(record=record, seconds=second), running(), None)
        failed = call_failed(ctx(seconds=second), first, StallReason.TASK_FAILED, "500")
        assert isinstance(failed.action, Wait)
        waits.append(failed.action.seconds)
        record = failed.record
    assert waits == [2.0, 4.0, 8.0]
    assert record is not None and record.failures == 3 and record.attempts == 3


def test_a_stall_is_reported_on_time_even_while_backing_off() -> None:
    """With --stall-after 5 a retry is never scheduled past the fifth second."""
    record = None
    reported_at = None
    second = 0.0
    for _ in range(10):
        context = DestroyContext(
            T0 + datetime.timedelta(seconds=second), UID, spec(), {}, 120, record, stall_after=5
        )
        decision = decide(context, VMUnreachable("refused"), None)
        assert isinstance(decision.action, Wait)
        if decision.action.stalled is not None:
            reported_at = second
            break
        record = decision.record
        second += decision.action.seconds
    assert reported_at == 5.0


def test_a_403_on_the_lookup_is_a_permission_denied_stall_never_an_absence() -> None:
    denied = VMUnreachable(
        "403 Permission check failed (/vms/120, VM.Audit)", StallReason.PERMISSION_DENIED
    )
    decision = decide(ctx(), denied, None)
    assert isinstance(decision.action, Wait)
    assert decision.action.stalled is StallReason.PERMISSION_DENIED
    assert decision.action.error is StallReason.PERMISSION_DENIED


def test_adopt_never_lets_a_destroy_take_a_vm_another_object_owns() -> None:
    adopter = spec(spec={"adopt": True})
    owned_elsewhere = running(tags=frozenset({"vmop-another-object"}))
    decision = decide(ctx(adopter), owned_elsewhere, None)
    assert decision.action == Release(Outcome.NOT_OWNED)


def test_a_gone_vm_releases_only_once_no_other_vm_carries_the_objects_tag() -> None:
    done = decide(ctx(seconds=5), VMAbsent(), None)
    assert done.action == Release(Outcome.ALREADY_ABSENT)
    assert destroy_strays(ctx(), done, [TaggedVM(120, "pve1")]) == done  # itself
    switched = destroy_strays(ctx(), done, [TaggedVM(120, "pve1"), TaggedVM(131, "pve2")])
    assert isinstance(switched.action, Wait)
    assert switched.record is not None and switched.record.vmid == 131
    assert switched.record.step is DestroyStep.STARTING
    assert [(e.type, e.reason) for e in switched.events] == [("Warning", "StrayVM")]
