"""The destroy state machine: what the finalizer does next, decided from what it observed.

``decide`` is pure. The finalizer handler observes Proxmox (the VM, and the task recorded in
``status.destroy``), calls ``decide``, carries out the one action it returns, persists the new
record, and re-runs later. Because the record holds the step, the task UPID and the shutdown
deadline, an operator restarted at any point resumes instead of repeating a destructive call.

Order of the checks is normative (design.md, "The destroy algorithm"). Two rules shape it:
only a *positive* answer that the VM is absent lets the finalizer go, and every wait on the
guest has a deadline.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .model import (
    DESTROY_MODE_ANNOTATION,
    FORCE_RELEASE_ANNOTATION,
    OWNERSHIP_TAG_PREFIX,
    DeletionPolicy,
    DestroyMode,
    DestroyStatus,
    DestroyStep,
    ProxmoxVMSpec,
    format_time,
    parse_time,
)
from .vmconfig import ownership_tag

# How long to wait before looking again, in seconds.
POLL_TASK = 2.0
POLL_TASK_MAX = 15.0
BACKOFF_BASE = 2.0
BACKOFF_CAP = 60.0
# The lock Proxmox writes while its own destroy task runs: not someone else's lock.
DESTROYING_LOCK = "destroyed"


class Outcome(StrEnum):
    DELETED = "deleted"
    ALREADY_ABSENT = "already_absent"
    ORPHANED = "orphaned"
    NOT_OWNED = "not_owned"
    FORCE_RELEASED = "force_released"


class StallReason(StrEnum):
    PROXMOX_UNREACHABLE = "ProxmoxUnreachable"
    VM_LOCKED = "VMLocked"
    PROTECTED = "Protected"
    TASK_FAILED = "TaskFailed"
    TAKING_TOO_LONG = "TakingTooLong"


# ------------------------------------------------------------------ observations


@dataclass(frozen=True)
class VMAbsent:
    """Proxmox answered, and no VM has this VMID anywhere in the cluster."""


@dataclass(frozen=True)
class VMUnreachable:
    """No answer we can trust: connection, TLS, auth or server error."""

    error: str


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


# ---------------------------------------------------------------------- actions


class PowerOffMethod(StrEnum):
    STOP = "stop"  # status/stop with overrule-shutdown=1
    SHUTDOWN = "shutdown"  # status/shutdown with a timeout
    HA_STOP = "ha_stop"  # status/stop through HA (overrule-shutdown is refused for HA VMs)


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


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


def backoff(attempts: int) -> float:
    """Capped exponential backoff after ``attempts`` consecutive failures."""
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)))


def start_record(ctx: DestroyContext) -> DestroyStatus:
    mode = effective_mode(ctx.spec, ctx.annotations)
    deadline = None
    if mode is DestroyMode.SHUTDOWN:
        seconds = ctx.spec.destroy.shutdown_timeout_seconds
        deadline = format_time(ctx.now + datetime.timedelta(seconds=seconds))
    return DestroyStatus(
        startedAt=format_time(ctx.now),
        mode=mode,
        step=DestroyStep.STARTING,
        shutdownDeadline=deadline,
    )


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
        error = vm.error if vm is not None else "the VM was not looked up"
        return _retry(ctx, record, StallReason.PROXMOX_UNREACHABLE, error)
    if isinstance(vm, VMAbsent):
        done = record.step in (DestroyStep.DELETING_VM, DestroyStep.VERIFYING_ABSENCE)
        return Decision(Release(Outcome.DELETED if done else Outcome.ALREADY_ABSENT), record)

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

    # A task of ours is in flight or just ended: follow it up before anything else.
    if record.task_upid is not None:
        followed = _follow_task(ctx, record, vm, task)
        if followed is not None:
            return followed
        after = DestroyStep.VERIFYING_ABSENCE if record.step is DestroyStep.DELETING_VM else None
        record = record.model_copy(
            update={"task_upid": None, "step": after or record.step, "task_succeeded": True}
        )

    # 6. Protection and locks: wait and report; never skiplock.
    if vm.protected:
        return _stall(ctx, record, StallReason.PROTECTED, f"VM {ctx.vmid} has protection=1")
    if vm.lock is not None:
        if vm.lock == DESTROYING_LOCK:
            return _progress(ctx, record, DestroyStep.VERIFYING_ABSENCE, "Proxmox is deleting")
        return _stall(ctx, record, StallReason.VM_LOCKED, f"VM {ctx.vmid} is locked ({vm.lock})")

    # 7. Power off.
    if vm.running:
        return _power_off(ctx, record, vm)

    # 8. Delete, then 9. verify: only an absent VM releases the finalizer (step 4 above).
    if record.step is DestroyStep.VERIFYING_ABSENCE:
        return _progress(ctx, record, record.step, f"VM {ctx.vmid} is still listed")
    return Decision(
        DeleteVM(vm.node, ctx.spec.destroy.purge, ctx.spec.destroy.destroy_unreferenced_disks),
        _step(record, DestroyStep.DELETING_VM),
        (Event("Normal", "DeletingVM", f"deleting VM {ctx.vmid} on {vm.node}"),),
    )


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
    update: dict[str, object] = {"mode": mode}
    if mode is DestroyMode.SHUTDOWN and record.shutdown_deadline is None:
        seconds = ctx.spec.destroy.shutdown_timeout_seconds
        update["shutdown_deadline"] = format_time(parse_time(record.started_at) + _seconds(seconds))
    return record.model_copy(update=update)


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


def _elapsed(ctx: DestroyContext, record: DestroyStatus) -> float:
    return (ctx.now - parse_time(record.started_at)).total_seconds()


def _step(record: DestroyStatus, step: DestroyStep) -> DestroyStatus:
    """Move to ``step``; a new step starts its attempt count afresh."""
    attempts = record.attempts + 1 if step is record.step else 1
    return record.model_copy(
        update={
            "step": step,
            "attempts": attempts,
            "last_error": "",
            "task_upid": None,
            "task_succeeded": False,
        }
    )


def _retry(ctx: DestroyContext, record: DestroyStatus, reason: StallReason, error: str) -> Decision:
    """An error that a later attempt may clear: back off, and report a stall once it lasts."""
    failures = record.attempts + 1
    record = record.model_copy(update={"attempts": failures, "last_error": error[:4096]})
    stalled = reason if _elapsed(ctx, record) >= ctx.stall_after else None
    return Decision(Wait(backoff(failures), stalled, error=reason), record, message=error)


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
    record = record.model_copy(update={"last_error": message})
    wait = Wait(backoff(3), reason, error=reason if failed else None)
    return Decision(wait, record, message=message)


def _progress(
    ctx: DestroyContext, record: DestroyStatus, step: DestroyStep, message: str
) -> Decision:
    if step is not record.step:
        record = record.model_copy(update={"step": step})
    elapsed = _elapsed(ctx, record)
    # A graceful wait the user configured is not a stall: count from its deadline.
    expected = 0.0
    if record.shutdown_deadline is not None:
        expected = (
            parse_time(record.shutdown_deadline) - parse_time(record.started_at)
        ).total_seconds()
    stalled = StallReason.TAKING_TOO_LONG if elapsed - expected >= ctx.stall_after else None
    seconds = POLL_TASK
    if record.shutdown_deadline is not None and step is DestroyStep.WAITING_FOR_SHUTDOWN:
        # A graceful wait may be long: look less often as it goes on, but never sleep past
        # the deadline, where the forced stop is due.
        left = (parse_time(record.shutdown_deadline) - ctx.now).total_seconds()
        seconds = min(POLL_TASK_MAX, max(POLL_TASK, elapsed / 10), max(POLL_TASK / 4, left))
    return Decision(Wait(seconds, stalled), record, message=message)


def _deadline_passed(ctx: DestroyContext, record: DestroyStatus) -> bool:
    return record.shutdown_deadline is not None and ctx.now >= parse_time(record.shutdown_deadline)


def _follow_task(
    ctx: DestroyContext, record: DestroyStatus, vm: VMPresent, task: TaskObservation | None
) -> Decision | None:
    """Handle the recorded task; None means it succeeded and the machine moves on."""
    if task is None or task.state is TaskState.UNKNOWN:
        error = task.exitstatus if task is not None else "task status unavailable"
        return _retry(ctx, record, StallReason.PROXMOX_UNREACHABLE, error)
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
        # A lock is never forced through: wait for it, then retry this step.
        reason = StallReason.VM_LOCKED if task.failed_on_lock else StallReason.TASK_FAILED
        failed = record.model_copy(
            update={
                "task_upid": None,
                "task_succeeded": False,
                "attempts": record.attempts + 1,
                "last_error": f"task failed: {task.exitstatus}"[:4096],
            }
        )
        return Decision(
            Wait(backoff(failed.attempts), reason, error=reason), failed, message=failed.last_error
        )
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
    assert record.shutdown_deadline is not None
    remaining = (parse_time(record.shutdown_deadline) - ctx.now).total_seconds()
    event = Event(
        "Normal",
        "ShuttingDown",
        f"shutting down VM {ctx.vmid}; forced stop at {record.shutdown_deadline}",
    )
    return Decision(
        PowerOff(vm.node, PowerOffMethod.SHUTDOWN, max(1, math.ceil(remaining))),
        _step(record, DestroyStep.WAITING_FOR_SHUTDOWN),
        (event,),
    )
