"""Each branch of reconcile, decided by the pure ``domain.reconcile.decide`` on a frozen clock.

``play`` answers the decision's ``Look``s from a table of what the world holds, as the
controller would from Proxmox and the API server, and records which things were looked at:
a branch must look at what it needs and at nothing more.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from proxmox_vm_operator.domain.conditions import READY, Progress, parse_conditions
from proxmox_vm_operator.domain.destroy import TaskObservation, TaskState
from proxmox_vm_operator.domain.model import TaskRef
from proxmox_vm_operator.domain.reconcile import (
    AFTER_CALL,
    CloneVM,
    Connection,
    CreateVM,
    Decision,
    Failure,
    FailureKind,
    InvalidSpec,
    ListedVM,
    LiveCheck,
    Look,
    Need,
    NotListed,
    Observation,
    ReconcileContext,
    StartVM,
    StopVM,
    UpdateConfig,
    VMConfig,
    VMPower,
    context_from_status,
    decide,
    failed,
    judge_live_object,
    node_busy,
    parse_spec,
    task_outcome,
    task_started,
)
from proxmox_vm_operator.domain.status import KEEP
from proxmox_vm_operator.domain.vmconfig import ownership_tag

T0 = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)
UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
OURS = frozenset({ownership_tag(UID)})
OTHER = "vmop-8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
UPID = "UPID:pve1:00001234:00000100:6B000000:qmcreate:120:root@pam!op:"
CONNECTED = Connection("lab/pve")
MATCHING_CONFIG = VMConfig(
    {
        "name": "web-1",
        "cores": "1",
        "sockets": "1",
        "cpu": "x86-64-v2-AES",
        "memory": "2048",
        "onboot": "0",
        "agent": "0",
        "tags": ownership_tag(UID),
    },
    digest="d1",
    tags=(ownership_tag(UID),),
)


def context(status: dict[str, Any] | None = None, retry: int = 0, **spec: Any) -> ReconcileContext:
    body: dict[str, Any] = {"connectionRef": {"name": "pve"}, "node": "pve1", **spec}
    return context_from_status(
        status or {},
        now=T0,
        namespace="lab",
        name="web-1",
        uid=UID,
        generation=2,
        spec=parse_spec(body),
        retry=retry,
    )


def owned(status: dict[str, Any] | None = None, **spec: Any) -> ReconcileContext:
    return context({"vmid": 120, **(status or {})}, **spec)


def play(ctx: ReconcileContext, **world: Any) -> tuple[Decision, list[Need]]:
    """Decide, answering each Look from ``world`` (keyed by Need value); fail on a Look the
    world has no answer for, so every test states what its branch may look at."""
    seen = Observation(connection=world.pop("connection", CONNECTED))
    asked: list[Need] = []
    decision = decide(ctx, seen)
    while isinstance(decision.action, Look):
        need = decision.action.need
        assert need.value in world, f"looked at {need.value}, which this branch must not need"
        assert need not in asked, f"looked at {need.value} twice"
        asked.append(need)
        seen = dataclasses.replace(seen, **{need.value: world[need.value]})
        decision = decide(ctx, seen)
    return decision, asked


def ready_of(decision: Decision) -> tuple[str, str, str]:
    conditions = decision.status.conditions
    assert conditions is not KEEP
    [ready] = [c for c in conditions if c.type == READY]
    return ready.status.value, ready.reason, ready.message


def patch_of(decision: Decision) -> dict[str, object]:
    return decision.status.to_merge_patch()


# -- bad input -------------------------------------------------------------------------------


def test_an_invalid_spec_is_refused_without_looking_at_anything() -> None:
    ctx = context(memoryMiB=1)
    assert isinstance(ctx.spec, InvalidSpec)
    decision, asked = play(ctx, connection=None)
    assert asked == [] and decision.action is None
    assert ready_of(decision)[:2] == ("False", "InvalidSpec")
    assert "spec.memoryMiB" in ready_of(decision)[2]
    assert (decision.progress, decision.retry_after) == (Progress.STALLED, None)
    assert [e.reason for e in decision.events] == ["InvalidSpec"]
    assert patch_of(decision)["phase"] == "Failed"


def test_a_changed_vmid_is_refused() -> None:
    decision, asked = play(owned(vmid=121), connection=None)
    assert asked == []
    assert ready_of(decision)[:2] == ("False", "InvalidSpec")
    assert "immutable" in ready_of(decision)[2]


def test_a_refusal_already_reported_posts_no_second_warning() -> None:
    first, _ = play(context(memoryMiB=1), connection=None)
    stored = {"conditions": patch_of(first)["conditions"]}
    again, _ = play(context(stored, memoryMiB=1), connection=None)
    assert again.events == ()


# -- the VMID first ----------------------------------------------------------------------------


def test_a_new_object_records_a_vmid_from_nextid_before_anything_exists() -> None:
    decision, asked = play(context(), next_vmid=105, live=LiveCheck())
    assert asked == [Need.LIVE, Need.NEXT_VMID]
    assert decision.action is None  # no Proxmox write: the VMID is persisted first
    assert patch_of(decision)["vmid"] == 105
    assert patch_of(decision)["phase"] == "Provisioning"
    assert decision.retry_after == AFTER_CALL


def test_a_copy_behind_a_recorded_vmid_records_none_of_its_own() -> None:
    """A pass that recorded a VMID and went on to create the VM, then a pass on a copy that
    does not show the write yet: choosing another id would leave the first VM unnamed."""
    stale = LiveCheck("the object now records VM 105, not None")
    decision, asked = play(context(), live=stale)
    assert asked == [Need.LIVE]
    assert decision.action is None and patch_of(decision) == {}
    assert decision.retry_after is not None and decision.retry_after > AFTER_CALL


def test_an_explicit_vmid_needs_no_nextid() -> None:
    decision, asked = play(context(vmid=4242))
    assert asked == []
    assert patch_of(decision)["vmid"] == 4242


# -- creating ---------------------------------------------------------------------------------


def test_a_missing_vm_is_created_once_the_live_object_allows_it() -> None:
    decision, asked = play(owned(), vm=NotListed(), live=LiveCheck())
    assert asked == [Need.VM, Need.LIVE]
    assert isinstance(decision.action, CreateVM)
    assert (decision.action.node, decision.action.vmid) == ("pve1", 120)
    assert decision.action.config["tags"] == ownership_tag(UID)
    assert [e.reason for e in decision.events] == ["Creating"]
    assert ready_of(decision)[1] == "Provisioning"


@pytest.mark.parametrize(
    ("live", "retry"),
    [
        (LiveCheck("the object is being deleted"), None),
        (LiveCheck("could not read", unreadable=True), 5.0),
    ],
)
def test_a_stale_copy_creates_nothing(live: LiveCheck, retry: float | None) -> None:
    decision, _ = play(owned(), vm=NotListed(), live=live)
    assert decision.action is None
    assert decision.retry_after == retry
    assert decision.events == ()


@pytest.mark.parametrize(
    ("live", "stale"),
    [
        (None, "the object is gone"),
        ({"metadata": {"uid": "another"}}, "the object was replaced"),
        (
            {"metadata": {"uid": UID, "deletionTimestamp": "2026-12-03T12:00:00Z"}},
            "the object is being deleted",
        ),
        ({"metadata": {"uid": UID}, "status": {"vmid": 121}}, "now records VM 121"),
        ({"metadata": {"uid": UID}, "status": {"vmid": 120}}, None),
    ],
)
def test_the_live_object_allows_a_create_only_of_its_own_vmid(
    live: dict[str, Any] | None, stale: str | None
) -> None:
    judged = judge_live_object(live, UID, 120)
    if stale is None:
        assert judged.stale is None
    else:
        assert judged.stale is not None and stale in judged.stale


def test_a_clone_without_a_source_node_looks_the_source_up() -> None:
    clone = {"source": {"cloneFrom": {"vmid": 9000}}}
    decision, asked = play(
        owned(**clone), vm=NotListed(), live=LiveCheck(), clone_source=ListedVM(9000, "pve2")
    )
    assert asked == [Need.VM, Need.LIVE, Need.CLONE_SOURCE]
    assert isinstance(decision.action, CloneVM)
    assert (decision.action.source_node, decision.action.target) == ("pve2", "pve1")


def test_a_missing_clone_source_stalls() -> None:
    clone = {"source": {"cloneFrom": {"vmid": 9000}}}
    decision, _ = play(owned(**clone), vm=NotListed(), live=LiveCheck(), clone_source=NotListed())
    assert decision.action is None
    assert ready_of(decision)[1] == "SourceNotFound"
    assert decision.progress is Progress.STALLED


# -- the recorded task -------------------------------------------------------------------------


def task_status(action: str) -> dict[str, Any]:
    return {"vmid": 120, "task": {"upid": UPID, "action": action}}


def test_a_running_task_is_waited_for_without_looking_at_the_vm() -> None:
    decision, asked = play(context(task_status("start")), task=TaskObservation(TaskState.RUNNING))
    assert asked == [Need.TASK]
    assert ready_of(decision)[1] == "Starting"
    assert patch_of(decision).get("task", "kept") == "kept"


def test_an_unreadable_task_is_unknown_and_kept() -> None:
    decision, _ = play(
        context(task_status("create")), task=TaskObservation(TaskState.UNKNOWN, "timeout")
    )
    assert ready_of(decision)[:2] == ("Unknown", "ProxmoxUnreachable")
    assert "task" not in patch_of(decision)


def test_a_failed_task_is_forgotten_and_reported_by_its_kind() -> None:
    decision, _ = play(
        context(task_status("create")), task=TaskObservation(TaskState.FAILED, "disk full")
    )
    assert patch_of(decision)["task"] is None  # an explicit null clears it
    assert ready_of(decision)[1] == "CreateFailed"
    assert "disk full" in ready_of(decision)[2]
    assert decision.progress is Progress.STALLED


def test_a_finished_create_is_cleared_and_the_pass_goes_on() -> None:
    vm = ListedVM(120, "pve1", OURS)
    decision, asked = play(
        context(task_status("create")),
        task=TaskObservation(TaskState.SUCCEEDED),
        vm=vm,
        config=MATCHING_CONFIG,
        power=VMPower(running=False),
    )
    assert asked == [Need.TASK, Need.VM, Need.CONFIG, Need.POWER]
    assert isinstance(decision.action, StartVM)
    assert patch_of(decision)["task"] is None


def test_a_finished_clone_is_made_ours_before_anything_else() -> None:
    decision, _ = play(
        context(task_status("clone"), source={"cloneFrom": {"vmid": 9000}}),
        task=TaskObservation(TaskState.SUCCEEDED),
        vm=ListedVM(120, "pve1", frozenset({"template"})),
    )
    assert isinstance(decision.action, UpdateConfig)
    assert decision.action.changes["tags"] == ownership_tag(UID)
    assert not any(key.startswith("scsi") for key in decision.action.changes)
    assert patch_of(decision)["task"] is None


def test_a_task_seen_to_end_is_forgotten_even_when_a_later_call_fails() -> None:
    ctx = context(task_status("start"))
    seen = Observation(connection=CONNECTED, task=TaskObservation(TaskState.SUCCEEDED))
    assert task_outcome(ctx, seen).task is None
    decision = failed(ctx, Failure(FailureKind.UNREACHABLE, "refused"), task_outcome(ctx, seen))
    assert patch_of(decision)["task"] is None
    clone = context(task_status("clone"))
    assert task_outcome(clone, seen).task is KEEP  # kept until the clone is ours


# -- whose VM ---------------------------------------------------------------------------------


def test_a_vm_being_made_is_waited_for_before_judging_whose_it_is() -> None:
    decision, asked = play(owned(), vm=ListedVM(120, "pve1", frozenset(), lock="create"))
    assert asked == [Need.VM]
    assert ready_of(decision)[1] == "Waiting"
    assert decision.progress is Progress.PROGRESSING


def test_an_untagged_vm_is_never_touched_without_adopt() -> None:
    decision, asked = play(owned(), vm=ListedVM(120, "pve1", frozenset({"web"})))
    assert asked == [Need.VM]  # not even its config is read
    assert decision.action is None
    assert ready_of(decision)[1] == "NotOwned"
    assert "spec.adopt" in ready_of(decision)[2]
    assert (decision.progress, decision.retry_after) == (Progress.STALLED, None)


def test_adopt_adds_our_tag_and_keeps_the_others() -> None:
    config = VMConfig({"tags": "web"}, digest="abc", tags=("web",))
    decision, asked = play(
        owned(adopt=True), vm=ListedVM(120, "pve1", frozenset({"web"})), config=config
    )
    assert asked == [Need.VM, Need.CONFIG]
    assert decision.action == UpdateConfig(
        "pve1", 120, {"tags": f"{ownership_tag(UID)};web"}, "abc"
    )
    assert [e.reason for e in decision.events] == ["Adopted"]


def test_adopt_never_takes_a_vm_another_object_owns() -> None:
    decision, asked = play(
        owned(adopt=True, vmid=120), vm=ListedVM(120, "pve1", frozenset({OTHER}))
    )
    assert asked == [Need.VM]
    assert decision.action is None
    assert ready_of(decision)[1] == "NotOwned"
    assert OTHER in ready_of(decision)[2]


def test_a_vmid_lost_to_another_object_is_replaced_by_the_next_free_one() -> None:
    decision, asked = play(owned(), vm=ListedVM(120, "pve1", frozenset({OTHER})), next_vmid=121)
    assert asked == [Need.VM, Need.NEXT_VMID]
    assert patch_of(decision)["vmid"] == 121
    assert [e.reason for e in decision.events] == ["VMIDReassigned"]


def test_a_locked_vm_of_ours_is_unknown_and_looked_at_again_soon() -> None:
    decision, _ = play(owned(), vm=ListedVM(120, "pve1", OURS, lock="backup"))
    assert ready_of(decision)[:2] == ("Unknown", "VMLocked")
    assert decision.retry_after == 5.0


# -- converging -------------------------------------------------------------------------------


def test_a_config_difference_is_written_with_the_digest_before_the_power_is_read() -> None:
    decision, asked = play(owned(cores=4), vm=ListedVM(120, "pve1", OURS), config=MATCHING_CONFIG)
    assert asked == [Need.VM, Need.CONFIG]
    assert decision.action == UpdateConfig("pve1", 120, {"cores": 4}, "d1")
    assert ready_of(decision)[1] == "Updating"


@pytest.mark.parametrize(
    ("power_state", "running", "action", "reason"),
    [("Running", False, StartVM, "Starting"), ("Stopped", True, StopVM, "Stopping")],
)
def test_the_power_state_follows_the_spec(
    power_state: str, running: bool, action: type, reason: str
) -> None:
    decision, _ = play(
        owned(powerState=power_state),
        vm=ListedVM(120, "pve1", OURS),
        config=MATCHING_CONFIG,
        power=VMPower(running=running),
    )
    assert isinstance(decision.action, action)
    assert ready_of(decision)[1] == reason
    assert [e.reason for e in decision.events] == [reason]


def test_a_paused_vm_is_left_to_a_human_but_keeps_its_phase() -> None:
    decision, _ = play(
        owned(),
        vm=ListedVM(120, "pve1", OURS),
        config=MATCHING_CONFIG,
        power=VMPower(running=True, paused=True),
    )
    assert decision.action is None
    assert ready_of(decision)[1] == "VMPaused"
    assert patch_of(decision)["powerState"] == "Paused"
    assert "phase" not in patch_of(decision)


def test_a_matching_running_vm_is_ready_and_says_what_waits_for_a_reboot() -> None:
    decision, asked = play(
        owned(),
        vm=ListedVM(120, "pve1", OURS),
        config=MATCHING_CONFIG,
        power=VMPower(running=True),
        pending=("cores",),
    )
    assert asked == [Need.VM, Need.CONFIG, Need.POWER, Need.PENDING]
    assert decision.action is None and decision.retry_after is None
    assert ready_of(decision)[:2] == ("True", "Reconciled")
    assert "waiting for a reboot to apply: cores" in ready_of(decision)[2]
    assert [e.reason for e in decision.events] == ["RebootRequired"]
    assert patch_of(decision) | {"conditions": None} == {
        "observedGeneration": 2,
        "node": "pve1",
        "powerState": "Running",
        "phase": "Running",
        "conditions": None,
    }


def test_a_stopped_vm_has_no_pending_changes_to_read() -> None:
    decision, asked = play(
        owned(powerState="Stopped"),
        vm=ListedVM(120, "pve1", OURS),
        config=MATCHING_CONFIG,
        power=VMPower(running=False),
    )
    assert Need.PENDING not in asked
    assert patch_of(decision)["phase"] == "Stopped"


def test_insecure_tls_is_in_the_message_and_warned_once() -> None:
    world: dict[str, Any] = {
        "connection": Connection("lab/pve", insecure_tls=True),
        "vm": ListedVM(120, "pve1", OURS),
        "config": MATCHING_CONFIG,
        "power": VMPower(running=False),
    }
    first, _ = play(owned(powerState="Stopped"), **dict(world))
    assert "TLS is not verified" in ready_of(first)[2]
    assert [e.reason for e in first.events] == ["InsecureTLS"]
    stored = {"conditions": patch_of(first)["conditions"]}
    again, _ = play(owned(stored, powerState="Stopped"), **dict(world))
    assert again.events == ()


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "reason", "progress"),
    [
        (FailureKind.UNREACHABLE, "Unknown", "ProxmoxUnreachable", Progress.RETRYING),
        (FailureKind.UNAUTHORIZED, "False", "ProxmoxUnauthorized", Progress.STALLED),
        (FailureKind.REJECTED, "False", "ProxmoxError", Progress.STALLED),
        (FailureKind.ERROR, "False", "ProxmoxError", Progress.RETRYING),
    ],
)
def test_a_failed_observation_is_reported_by_its_kind_and_never_acted_on(
    kind: FailureKind, status: str, reason: str, progress: Progress
) -> None:
    decision = decide(owned(), Observation(connection=CONNECTED, failure=Failure(kind, "boom")))
    assert decision.action is None
    assert ready_of(decision)[:2] == (status, reason)
    assert decision.progress is progress
    assert decision.retry_after is not None  # retried, even when only a human can fix it


def waits_of(kind: FailureKind, first_retry: int, passes: int) -> list[float | None]:
    """The waits of ``passes`` failed passes in a row, the first at kopf retry ``first_retry``,
    each pass seeing the conditions the last one wrote."""
    status: dict[str, Any] = {"vmid": 120}
    waits = []
    for retry in range(first_retry, first_retry + passes):
        decision = failed(context(status, retry=retry), Failure(kind, "x"))
        status["conditions"] = patch_of(decision)["conditions"]
        waits.append(decision.retry_after)
    return waits


def test_failures_back_off_with_kopfs_retry_count() -> None:
    waits = waits_of(FailureKind.UNREACHABLE, 0, 8)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_failure_after_progress_is_retried_after_the_base_wait() -> None:
    """kopf's retry also counts the progress passes of a create: a blip after them is still
    the first failure."""
    assert waits_of(FailureKind.ERROR, 6, 3) == [2.0, 60.0, 60.0]


def test_a_missing_secret_is_looked_for_soon_then_every_30_seconds() -> None:
    waits = waits_of(FailureKind.CONNECTION_UNAVAILABLE, 0, 6)
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    decision = failed(context(), Failure(FailureKind.CONNECTION_UNAVAILABLE, "no Secret"))
    assert decision.progress is Progress.RETRYING  # GitOps may apply the Secret next


# -- the task budget and the start of a task ---------------------------------------------------


def test_a_full_node_waits_and_claims_nothing_the_task_would_have_done() -> None:
    decision, _ = play(owned(), vm=NotListed(), live=LiveCheck())
    busy = node_busy(owned(), decision, per_node=4)
    assert busy.action is None
    assert ready_of(busy)[1] == "Waiting"
    assert "phase" not in patch_of(busy) and busy.events == ()
    assert busy.retry_after == AFTER_CALL


def test_a_started_task_is_recorded_with_its_kind() -> None:
    decision, _ = play(owned(), vm=NotListed(), live=LiveCheck())
    started = task_started(decision, UPID)
    assert started.status.task == TaskRef(upid=UPID, action="create")


def test_conditions_keep_their_transition_time_while_the_status_holds() -> None:
    first, _ = play(context(), next_vmid=105, live=LiveCheck())
    stored = {"vmid": 105, "conditions": patch_of(first)["conditions"]}
    later = dataclasses.replace(context(stored), now=T0 + datetime.timedelta(minutes=5))
    second, _ = play(later, vm=NotListed(), live=LiveCheck())
    before = {c.type: c.last_transition_time for c in parse_conditions(stored["conditions"])}
    conditions = second.status.conditions
    assert conditions is not KEEP
    after = {c.type: c.last_transition_time for c in conditions}
    assert after == before  # Ready stayed False, Reconciling True: no transition


def test_a_vmid_another_creator_won_is_left_at_once_for_a_new_one() -> None:
    seen = Observation(connection=CONNECTED, failure=Failure(FailureKind.VMID_TAKEN, "exists"))
    decision = decide(owned(), seen)
    assert decision.action == Look(Need.NEXT_VMID)
    decision = decide(owned(), dataclasses.replace(seen, next_vmid=121))
    assert patch_of(decision)["vmid"] == 121
    assert decision.retry_after == AFTER_CALL and decision.progress is Progress.PROGRESSING
    assert [e.reason for e in decision.events] == ["VMIDReassigned"]


def test_an_explicit_vmid_another_creator_won_is_an_error_not_a_move() -> None:
    seen = Observation(connection=CONNECTED, failure=Failure(FailureKind.VMID_TAKEN, "exists"))
    decision = decide(owned(vmid=120), seen)
    assert decision.action is None
    assert ready_of(decision)[1] == "ProxmoxError"
    assert "vmid" not in patch_of(decision)
