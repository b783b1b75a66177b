"""The destroy state machine: what the finalizer does next, decided from what it observed.

``decide`` is pure. The finalizer handler observes Proxmox (the VM, and the task recorded in
``status.destroy``), calls ``decide``, carries out the one action it returns, persists the new
record, and re-runs later. Because the record holds the step, the task UPID and the shutdown
deadline, an operator restarted at any point resumes instead of repeating a destructive call.

Order of the checks is normative (docs/design.md, "The destroy algorithm"). Two rules shape it:
only a *positive* answer that the VM is absent lets the finalizer go, and every wait on the
guest has a deadline.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .conditions import (
    DELETING,
    DELETING_REASONS,
    DELETION_STALLED,
    Progress,
    is_true,
    parse_conditions,
    set_condition,
    set_readiness,
)
from .model import (
    DESTROY_MODE_ANNOTATION,
    FORCE_RELEASE_ANNOTATION,
    OWNERSHIP_TAG_PREFIX,
    Condition,
    ConditionStatus,
    DeletionPolicy,
    DestroyMode,
    DestroyStatus,
    DestroyStep,
    ObservedPower,
    Phase,
    ProxmoxVMSpec,
    format_precise_time,
    format_time,
    parse_time,
)
from .reasons import DELETION_PROGRESSING, ReadyReason
from .reasons import StallReason as StallReason  # re-exported: the destroy's stall reasons
from .status import Event as Event
from .status import StatusPatch
from .vmconfig import ownership_tag

# How long to wait before looking again, in seconds.
POLL_TASK = 2.0
POLL_TASK_MAX = 15.0
BACKOFF_BASE = 2.0
BACKOFF_CAP = 60.0
# A failing destroy is looked at again at least this often, so a cleared fault is noticed
# within seconds rather than a minute; a failed pass costs a few GETs.
DESTROY_RETRY_CAP = 15.0
# The shortest wait before a pass that is due to report a stall.
MIN_WAIT = 0.5
# The lock Proxmox writes while its own destroy task runs: not someone else's lock.
DESTROYING_LOCK = "destroyed"
# The locks a create or clone holds while its task runs; the VM gets its tags only at the end.
PROVISIONING_LOCKS = frozenset({"create", "clone"})


class Outcome(StrEnum):
    DELETED = "deleted"
    ALREADY_ABSENT = "already_absent"
    ORPHANED = "orphaned"
    NOT_OWNED = "not_owned"
    FORCE_RELEASED = "force_released"


# ------------------------------------------------------------------ observations


@dataclass(frozen=True)
class VMAbsent:
    """Proven absent: a per-VM lookup on the node where the VM was last known answered that
    its configuration does not exist, and no node lists it. A listing alone is never proof:
    Proxmox leaves out of it every VM the token may not audit."""


@dataclass(frozen=True)
class VMUnreachable:
    """No answer we can trust: connection, TLS, auth or server error, or a refusal."""

    error: str
    reason: StallReason = StallReason.PROXMOX_UNREACHABLE


@dataclass(frozen=True)
class VMPresent:
    node: str
    tags: frozenset[str]
    running: bool
    lock: str | None = None
    protected: bool = False
    ha_managed: bool = False


VMObservation = VMAbsent | VMUnreachable | VMPresent


class TaskState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the status could not be read


@dataclass(frozen=True)
class TaskObservation:
    state: TaskState
    exitstatus: str = ""
    failed_on_lock: bool = False  # the task failed on a config lock or the VM's lock file
    reason: StallReason = StallReason.PROXMOX_UNREACHABLE  # why the state is UNKNOWN


# ---------------------------------------------------------------------- actions


class PowerOffMethod(StrEnum):
    STOP = "stop"  # status/stop with overrule-shutdown=1
    SHUTDOWN = "shutdown"  # status/shutdown with a timeout
    HA_STOP = "ha_stop"  # status/stop through HA (overrule-shutdown is refused for HA VMs)


@dataclass(frozen=True)
class Release:
    """Remove the finalizer: the destroy is over."""

    outcome: Outcome


@dataclass(frozen=True)
class RemoveOwnershipTag:
    """Orphan: strip our tag from the VM on ``node``, then release as orphaned."""

    node: str


@dataclass(frozen=True)
class PowerOff:
    node: str
    method: PowerOffMethod
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class DeleteVM:
    node: str
    purge: bool
    destroy_unreferenced_disks: bool


@dataclass(frozen=True)
class Wait:
    """Nothing to call now; look again after ``seconds``."""

    seconds: float
    stalled: StallReason | None = None
    # This pass hit an error (a failed call or task, Proxmox unreachable); counted in
    # proxmoxvm_destroy_errors_total whether or not it has lasted long enough to be a stall.
    error: StallReason | None = None


Action = Release | RemoveOwnershipTag | PowerOff | DeleteVM | Wait


@dataclass(frozen=True)
class Decision:
    action: Action
    # The record to persist. For PowerOff/DeleteVM the handler adds the task UPID it got.
    record: DestroyStatus | None
    events: tuple[Event, ...] = ()
    message: str = ""
    fallback: bool = field(default=False)  # the graceful shutdown ran out: count it


@dataclass(frozen=True)
class DestroyContext:
    now: datetime.datetime
    uid: str
    spec: ProxmoxVMSpec
    annotations: Mapping[str, str]
    vmid: int | None  # the VM this object created or adopted; None if it never had one
    record: DestroyStatus | None
    stall_after: float = 600.0
    # The object's own create or clone task for this VMID was recorded: the VM is ours even
    # before it carries the tag (a clone gets it only after its task; a create is locked).
    provisioned_by_us: bool = False


def effective_mode(spec: ProxmoxVMSpec, annotations: Mapping[str, str]) -> DestroyMode:
    """The annotation overrides spec.destroy.mode; anything but Stop or Shutdown is ignored."""
    value = annotations.get(DESTROY_MODE_ANNOTATION, "")
    try:
        return DestroyMode(value)
    except ValueError:
        return spec.destroy.mode


def backoff(failures: int, cap: float = BACKOFF_CAP) -> float:
    """Capped exponential backoff after ``failures`` consecutive failures: 2, 4, 8... s."""
    return float(min(cap, BACKOFF_BASE * 2 ** max(0, failures - 1)))


def start_record(ctx: DestroyContext) -> DestroyStatus:
    return DestroyStatus(
        startedAt=format_time(ctx.now),
        mode=effective_mode(ctx.spec, ctx.annotations),
        step=DestroyStep.STARTING,
    )


def shutdown_accepted(
    record: DestroyStatus, at: datetime.datetime, timeout_seconds: int
) -> DestroyStatus:
    """Proxmox accepted the shutdown at ``at``: the guest has ``timeout_seconds`` from now.

    Counted from the acceptance (not from the pass that decided it) and kept to the
    microsecond, so the guest never gets less than it was promised. Set once: a shutdown sent
    again after a failure does not move the forced stop further away.
    """
    if record.shutdown_deadline is not None:
        return record
    deadline = at + datetime.timedelta(seconds=timeout_seconds)
    return record.model_copy(update={"shutdown_deadline": format_precise_time(deadline)})


def decide(ctx: DestroyContext, vm: VMObservation | None, task: TaskObservation | None) -> Decision:
    """The next action of the destroy. ``vm`` is None only when no lookup was needed."""
    # 1. Break-glass: release without touching Proxmox.
    if ctx.annotations.get(FORCE_RELEASE_ANNOTATION, "").lower() == "true":
        warning = Event(
            "Warning",
            "ForceReleased",
            f"finalizer released by the {FORCE_RELEASE_ANNOTATION} annotation without touching "
            f"Proxmox; VM {ctx.vmid} may still exist",
        )
        return Decision(Release(Outcome.FORCE_RELEASED), ctx.record, (warning,))

    # 3. No VM was ever created for this object.
    if ctx.vmid is None:
        return Decision(Release(Outcome.ALREADY_ABSENT), ctx.record)

    # 2. Orphan: keep the VM, but do not leave our claim on it.
    if ctx.spec.deletion_policy is DeletionPolicy.ORPHAN:
        return _orphan(ctx, vm)

    record = ctx.record or start_record(ctx)
    record = _apply_mode_override(ctx, record)

    # 4. Only a positive answer counts as gone.
    if vm is None or isinstance(vm, VMUnreachable):
        if vm is None:
            return _retry(ctx, record, StallReason.PROXMOX_UNREACHABLE, "not looked up")
        return _retry(ctx, record, vm.reason, vm.error)
    if isinstance(vm, VMAbsent):
        done = record.step in (DestroyStep.DELETING_VM, DestroyStep.VERIFYING_ABSENCE)
        return Decision(Release(Outcome.DELETED if done else Outcome.ALREADY_ABSENT), record)

    # Our own work first, ownership second. A task we recorded was started on a VM we had
    # judged ours: follow it up whatever the VM looks like meanwhile (a delete rewrites the
    # config to only "lock: destroyed", tags and all).
    if record.task_upid is not None:
        followed = _follow_task(ctx, record, vm, task)
        if followed is not None:
            return followed
        after = DestroyStep.VERIFYING_ABSENCE if record.step is DestroyStep.DELETING_VM else None
        record = record.model_copy(
            update={
                "task_upid": None,
                "step": after or record.step,
                "task_succeeded": True,
                "failures": 0,
                "last_error": "",
            }
        )
    # Proxmox is deleting the VM (ours, or a task whose record was lost in a restart): wait
    # for the config to go. Its tags are already gone, so it cannot be judged by them.
    if vm.lock == DESTROYING_LOCK:
        return _progress(ctx, record, DestroyStep.VERIFYING_ABSENCE, "Proxmox is deleting")
    # A create or clone still running: the VM gets its tags only when it ends, so whose it is
    # can be told only then (it may be ours, made just before the operator restarted).
    if vm.lock in PROVISIONING_LOCKS and ownership_tag(ctx.uid) not in vm.tags:
        return _progress(
            ctx,
            record,
            record.step,
            f"VM {ctx.vmid} is being provisioned (lock {vm.lock}); waiting before judging "
            "whose it is",
        )

    # 5. Not ours: never touch it.
    ours = ownership_tag(ctx.uid)
    claimed = any(t.startswith(OWNERSHIP_TAG_PREFIX) and t != ours for t in vm.tags)
    # adopt covers a VM whose adoption had not finished, never one another object owns.
    owned = ours in vm.tags or ctx.provisioned_by_us or (ctx.spec.adopt and not claimed)
    if not owned:
        warning = Event(
            "Warning",
            "NotOwned",
            f"VM {ctx.vmid} on {vm.node} lacks the ownership tag {ownership_tag(ctx.uid)}; "
            "it was left untouched",
        )
        return Decision(Release(Outcome.NOT_OWNED), record, (warning,))

    # 6. Protection and locks: wait and report; never skiplock.
    if vm.protected:
        return _stall(ctx, record, StallReason.PROTECTED, f"VM {ctx.vmid} has protection=1")
    if vm.lock is not None:
        return _stall(ctx, record, StallReason.VM_LOCKED, f"VM {ctx.vmid} is locked ({vm.lock})")

    # 7. Power off.
    if vm.running:
        return _power_off(ctx, record, vm)

    # 8. Delete, then 9. verify: only an absent VM releases the finalizer (step 4 above). A VM
    # still there, unlocked, after its delete (a lost reply, a status write lost in a
    # restart) was not deleted: send the DELETE again rather than wait for nothing.
    events: tuple[Event, ...] = (
        Event("Normal", "DeletingVM", f"deleting VM {ctx.vmid} on {vm.node}"),
    )
    if record.step is DestroyStep.VERIFYING_ABSENCE:
        events = (
            Event(
                "Normal",
                "DeletingVM",
                f"VM {ctx.vmid} is still there after its delete; deleting it again",
            ),
        )
    return Decision(
        DeleteVM(vm.node, ctx.spec.destroy.purge, ctx.spec.destroy.destroy_unreferenced_disks),
        _step(record, DestroyStep.DELETING_VM),
        events,
    )


@dataclass(frozen=True)
class TaggedVM:
    """A VM the cluster listing shows with this object's ownership tag."""

    vmid: int
    node: str


def destroy_strays(ctx: DestroyContext, done: Decision, tagged: Sequence[TaggedVM]) -> Decision:
    """The VM is gone; before the finalizer goes, so is every other VM with this object's tag.

    A pass acting on a stale copy of the object can create a second VM (the status then
    names only one of them): releasing the object would leave the other running with our
    tag and no owner. ``done`` is the Release decision for ``ctx.vmid``.
    """
    strays = sorted((vm for vm in tagged if vm.vmid != ctx.vmid), key=lambda vm: vm.vmid)
    if not strays or not isinstance(done.action, Release):
        return done
    stray = strays[0]
    started = done.record.started_at if done.record is not None else format_time(ctx.now)
    record = start_record(ctx).model_copy(update={"vmid": stray.vmid, "started_at": started})
    message = (
        f"VM {stray.vmid} on {stray.node} also carries this object's ownership tag "
        f"{ownership_tag(ctx.uid)}; destroying it too"
    )
    return Decision(Wait(MIN_WAIT), record, (Event("Warning", "StrayVM", message),), message)


def call_failed(
    ctx: DestroyContext, decision: Decision, reason: StallReason, error: str
) -> Decision:
    """The call a decision asked for failed before a task started: retry the same step later.

    The step is kept, so a call that did reach Proxmox (a lost reply) is recognised by what
    the next lookup finds.
    """
    record = decision.record or ctx.record or start_record(ctx)
    if reason in (StallReason.PROTECTED, StallReason.VM_LOCKED):
        return _stall(
            ctx, record.model_copy(update={"task_upid": None}), reason, error, failed=True
        )
    return _retry(ctx, record.model_copy(update={"task_upid": None}), reason, error)


def _orphan(ctx: DestroyContext, vm: VMObservation | None) -> Decision:
    if isinstance(vm, VMPresent) and ownership_tag(ctx.uid) in vm.tags:
        return Decision(RemoveOwnershipTag(vm.node), ctx.record)
    events: tuple[Event, ...] = ()
    if vm is None or isinstance(vm, VMUnreachable):
        events = (
            Event(
                "Warning",
                "OrphanedWithTag",
                f"Proxmox was unreachable, so VM {ctx.vmid} keeps the ownership tag "
                f"{ownership_tag(ctx.uid)}",
            ),
        )
    return Decision(Release(Outcome.ORPHANED), ctx.record, events)


def _apply_mode_override(ctx: DestroyContext, record: DestroyStatus) -> DestroyStatus:
    """The destroy-mode annotation also applies to a destroy already under way."""
    mode = effective_mode(ctx.spec, ctx.annotations)
    if mode is record.mode:
        return record
    return record.model_copy(update={"mode": mode})


def _elapsed(ctx: DestroyContext, record: DestroyStatus) -> float:
    return (ctx.now - parse_time(record.started_at)).total_seconds()


def _step(record: DestroyStatus, step: DestroyStep) -> DestroyStatus:
    """Make a call for ``step``. A new step starts its counts afresh; the same step again (a
    retry) keeps its failures, so the wait after another failure keeps growing."""
    same = step is record.step
    return record.model_copy(
        update={
            "step": step,
            "attempts": record.attempts + 1 if same else 1,
            "failures": record.failures if same else 0,
            "last_error": record.last_error if same else "",
            "task_upid": None,
            "task_succeeded": False,
        }
    )


def _retry_wait(ctx: DestroyContext, record: DestroyStatus) -> tuple[float, bool]:
    """The wait after ``record.failures`` failures, and whether it is now a stall. The wait
    never runs past the moment the stall is due, so it is reported on time."""
    left = ctx.stall_after - _elapsed(ctx, record)
    seconds = backoff(record.failures, DESTROY_RETRY_CAP)
    if left > 0:
        return max(MIN_WAIT, min(seconds, left)), False
    return seconds, True


def _retry(ctx: DestroyContext, record: DestroyStatus, reason: StallReason, error: str) -> Decision:
    """An error that a later attempt may clear: back off, and report a stall once it lasts."""
    record = record.model_copy(update={"failures": record.failures + 1, "last_error": error[:4096]})
    seconds, stalled = _retry_wait(ctx, record)
    # A missing privilege does not heal by itself: a human must grant it, so say so at once
    # (and keep looking, so the grant is noticed).
    stalled = stalled or reason is StallReason.PERMISSION_DENIED
    return Decision(Wait(seconds, reason if stalled else None, error=reason), record, message=error)


def _stall(
    ctx: DestroyContext,
    record: DestroyStatus,
    reason: StallReason,
    message: str,
    *,
    failed: bool = False,
) -> Decision:
    """A condition only a human or time can clear: report it now and keep looking.
    ``failed``: a call failed on it (an error), rather than the lookup seeing it first."""
    record = record.model_copy(update={"last_error": message[:4096]})
    wait = Wait(backoff(3, DESTROY_RETRY_CAP), reason, error=reason if failed else None)
    return Decision(wait, record, message=message)


def _progress(
    ctx: DestroyContext, record: DestroyStatus, step: DestroyStep, message: str
) -> Decision:
    if step is not record.step:
        record = record.model_copy(update={"step": step})
    elapsed = _elapsed(ctx, record)
    # A graceful wait the user configured is not a stall: count from its deadline.
    graceful = record.mode is DestroyMode.SHUTDOWN or record.shutdown_deadline is not None
    expected = 0.0
    if graceful:
        expected = (_deadline(ctx, record) - parse_time(record.started_at)).total_seconds()
    stalled = StallReason.TAKING_TOO_LONG if elapsed - expected >= ctx.stall_after else None
    seconds = POLL_TASK
    if graceful and step is DestroyStep.WAITING_FOR_SHUTDOWN:
        # A graceful wait may be long: look less often as it goes on, but never sleep past
        # the deadline, where the forced stop is due.
        left = (_deadline(ctx, record) - ctx.now).total_seconds()
        seconds = min(POLL_TASK_MAX, max(POLL_TASK, elapsed / 10), max(POLL_TASK / 4, left))
    return Decision(Wait(seconds, stalled), record, message=message)


def _deadline(ctx: DestroyContext, record: DestroyStatus) -> datetime.datetime:
    """When the forced stop is due: the persisted deadline, set when Proxmox accepted the
    shutdown; until then, shutdownTimeoutSeconds after the start, so that a shutdown Proxmox
    keeps refusing is bounded too."""
    if record.shutdown_deadline is not None:
        return parse_time(record.shutdown_deadline)
    timeout = ctx.spec.destroy.shutdown_timeout_seconds
    return parse_time(record.started_at) + datetime.timedelta(seconds=timeout)


def _deadline_passed(ctx: DestroyContext, record: DestroyStatus) -> bool:
    return ctx.now >= _deadline(ctx, record)


def _follow_task(
    ctx: DestroyContext, record: DestroyStatus, vm: VMPresent, task: TaskObservation | None
) -> Decision | None:
    """Handle the recorded task; None means it succeeded and the machine moves on."""
    if task is None or task.state is TaskState.UNKNOWN:
        error = task.exitstatus if task is not None else "task status unavailable"
        reason = task.reason if task is not None else StallReason.PROXMOX_UNREACHABLE
        return _retry(ctx, record, reason, error)
    shutting_down = record.step is DestroyStep.WAITING_FOR_SHUTDOWN and not vm.ha_managed
    if task.state is TaskState.RUNNING:
        if shutting_down and _deadline_passed(ctx, record):
            return _forced_stop(ctx, record, vm)
        if shutting_down and record.mode is DestroyMode.STOP:
            return _forced_stop(ctx, record, vm, requested=True)
        return _progress(ctx, record, record.step, f"waiting for task {record.task_upid}")
    if task.state is TaskState.FAILED:
        if shutting_down and not task.failed_on_lock:
            # The graceful attempt is over (timed out or failed): force the stop now.
            return _forced_stop(ctx, record, vm)
        # A lock is never forced through: wait for it, then retry this step (the stop or the
        # DELETE is sent again) once its cause may have cleared.
        reason = StallReason.VM_LOCKED if task.failed_on_lock else StallReason.TASK_FAILED
        failed = record.model_copy(
            update={
                "task_upid": None,
                "task_succeeded": False,
                "failures": record.failures + 1,
                "last_error": f"task failed: {task.exitstatus}"[:4096],
            }
        )
        # Reported at once: a failed task is news now, even before it counts as a stall.
        seconds, _ = _retry_wait(ctx, failed)
        return Decision(Wait(seconds, reason, error=reason), failed, message=failed.last_error)
    return None


def _forced_stop(
    ctx: DestroyContext, record: DestroyStatus, vm: VMPresent, *, requested: bool = False
) -> Decision:
    """Stop now with overrule-shutdown=1, which also kills our pending shutdown task."""
    forced = _step(record, DestroyStep.FORCING_STOP)
    if requested:
        event = Event(
            "Normal", "ForcingStop", f"destroy mode changed to Stop: stopping VM {ctx.vmid} now"
        )
        return Decision(PowerOff(vm.node, PowerOffMethod.STOP), forced, (event,))
    event = Event(
        "Warning",
        "ShutdownTimedOut",
        f"VM {ctx.vmid} did not shut down within {ctx.spec.destroy.shutdown_timeout_seconds}s; "
        "forcing a stop",
    )
    forced = forced.model_copy(update={"fallback_used": True})
    return Decision(PowerOff(vm.node, PowerOffMethod.STOP), forced, (event,), fallback=True)


POWER_STEPS = (DestroyStep.STOPPING, DestroyStep.FORCING_STOP, DestroyStep.WAITING_FOR_SHUTDOWN)


def _power_off(ctx: DestroyContext, record: DestroyStatus, vm: VMPresent) -> Decision:
    # A power-off task of this step already ended OK: the VM is on its way down.
    requested = record.step in POWER_STEPS and record.task_succeeded
    graceful = record.mode is DestroyMode.SHUTDOWN and record.step is not DestroyStep.FORCING_STOP
    if vm.ha_managed:
        # HA acts on its own schedule and its LRM always ends with the VM off: poll.
        if requested:
            return _progress(ctx, record, record.step, f"waiting for HA to stop VM {ctx.vmid}")
        if graceful:
            return _shutdown(ctx, record, vm)
        event = Event("Normal", "Stopping", f"stopping HA-managed VM {ctx.vmid} through HA")
        return Decision(
            PowerOff(vm.node, PowerOffMethod.HA_STOP),
            _step(record, DestroyStep.STOPPING),
            (event,),
        )
    if graceful:
        if _deadline_passed(ctx, record):
            return _forced_stop(ctx, record, vm)
        if requested and record.step is DestroyStep.WAITING_FOR_SHUTDOWN:
            # The shutdown task ended OK yet the guest runs (restarted?): wait out the deadline
            # rather than sending shutdown after shutdown.
            return _progress(ctx, record, record.step, "waiting for the guest to power off")
        return _shutdown(ctx, record, vm)
    forcing = record.step is DestroyStep.FORCING_STOP
    step = DestroyStep.FORCING_STOP if forcing else DestroyStep.STOPPING
    event = Event("Normal", "Stopping", f"stopping VM {ctx.vmid} (hard stop)")
    return Decision(PowerOff(vm.node, PowerOffMethod.STOP), _step(record, step), (event,))


def _shutdown(ctx: DestroyContext, record: DestroyStatus, vm: VMPresent) -> Decision:
    timeout = ctx.spec.destroy.shutdown_timeout_seconds
    if record.shutdown_deadline is not None:  # sent again: only what is left of the wait
        timeout = max(1, math.ceil((_deadline(ctx, record) - ctx.now).total_seconds()))
    event = Event(
        "Normal",
        "ShuttingDown",
        f"shutting down VM {ctx.vmid}; forced stop {timeout}s after Proxmox accepts it",
    )
    return Decision(
        PowerOff(vm.node, PowerOffMethod.SHUTDOWN, timeout),
        _step(record, DestroyStep.WAITING_FOR_SHUTDOWN),
        (event,),
    )


# ---------------------------------------------------------------------- reporting


def destroy_report(
    conditions: Sequence[Condition],
    *,
    generation: int | None,
    record: DestroyStatus | None,
    stalled: StallReason | None,
    message: str,
    now: datetime.datetime,
) -> tuple[StatusPatch, tuple[Event, ...]]:
    """What a destroy pass writes to the status, and the Warning a new stall posts.

    Ready and the kstatus pair speak for the deletion, instead of the last reconcile; a
    stall shows in DeletionStalled, and as a Warning event when it is new (or its reason is).
    """
    # Marking an object for deletion bumps its generation; tools comparing it with
    # observedGeneration would otherwise read the status as stale.
    patch = StatusPatch(phase=Phase.DELETING, observed_generation=generation)
    updated = list(conditions)
    if record is not None:
        patch = patch.then(StatusPatch(destroy=record))
        if record.step in (DestroyStep.DELETING_VM, DestroyStep.VERIFYING_ABSENCE):
            # Those steps come only after the VM was seen stopped: say so in the POWER column.
            patch = patch.then(StatusPatch(power_state=ObservedPower.STOPPED))
        updated = set_condition(
            updated,
            DELETING,
            ConditionStatus.TRUE,
            DELETING_REASONS[record.step],
            message or f"destroy step {record.step.value}",
            now=now,
            generation=generation,
        )
    updated = set_readiness(
        updated,
        Progress.STALLED if stalled else Progress.PROGRESSING,
        ConditionStatus.FALSE,
        stalled.value if stalled else ReadyReason.DELETING.value,
        message or "the VM is being destroyed",
        now=now,
        generation=generation,
    )
    updated = set_condition(
        updated,
        DELETION_STALLED,
        ConditionStatus.TRUE if stalled else ConditionStatus.FALSE,
        stalled.value if stalled else DELETION_PROGRESSING,
        message if stalled else "",
        now=now,
        generation=generation,
    )
    events: tuple[Event, ...] = ()
    if stalled is not None and not is_true(conditions, DELETION_STALLED, stalled.value):
        # The condition says it; the event shows it in `kubectl get events` and to whatever
        # watches Warnings.
        events = (Event("Warning", stalled.value, f"the destroy is stalled: {message or stalled}"),)
    return patch.then(StatusPatch(conditions=updated)), events


@dataclass(frozen=True)
class DestroyProgress:
    """A destroy as its persisted status shows it (what the destroy gauges follow)."""

    started: datetime.datetime
    step: str
    stalled: str | None  # the DeletionStalled reason while it is True


def destroy_progress(status: Mapping[str, object]) -> DestroyProgress | None:
    """The persisted destroy, or None when none has started (or its record is unreadable)."""
    record = status.get("destroy")
    if not isinstance(record, Mapping) or not record:
        return None
    try:
        started = parse_time(str(record["startedAt"]))
        step = str(record["step"])
    except (KeyError, ValueError):
        return None
    stalled = next(
        (
            c.reason
            for c in parse_conditions(status.get("conditions"))
            if c.type == DELETION_STALLED and c.status is ConditionStatus.TRUE
        ),
        None,
    )
    return DestroyProgress(started, step, stalled)
