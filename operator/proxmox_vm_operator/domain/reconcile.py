"""Reconcile decisions: the next step towards the spec, decided from what was observed.

``decide`` is pure, like the destroy's. The controller starts with an empty observation and
asks; the answer is either ``Look`` (observe one more thing, then ask again) or the one
action of this pass with the status patch, events and re-run delay it implies. Observing on
demand keeps a pass to the calls its branch needs (a VM that is not ours has no config read),
and keeps every branch testable without Proxmox.

Safety rules (docs/design.md, "Reconcile"): the VMID is persisted in status *before*
anything is created, so a crash between the create call and the status write cannot leak a
VM; nothing is created from a stale copy of the object; a VM without our ownership tag is
never touched unless ``spec.adopt`` says so, and never when another object's tag is on it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import ValidationError

from .conditions import READY, Progress, find, is_true, parse_conditions, set_readiness
from .destroy import TaskObservation, TaskState, backoff
from .model import (
    OWNERSHIP_TAG_PREFIX,
    Condition,
    ConditionStatus,
    ObservedPower,
    Phase,
    PowerState,
    ProxmoxVMSpec,
    TaskRef,
)
from .reasons import ReadyReason
from .status import Event, StatusPatch
from .vmconfig import (
    ConfigValue,
    config_changes,
    desired_config,
    is_disk_key,
    ownership_tag,
    with_ownership_tag,
)

# After a call started a task or changed something, look again this soon.
AFTER_CALL = 1.0
# A lock or an unreadable task heals by itself: look again this soon.
RECHECK = 5.0
# A copy of the object older than what the API server holds: look again with a newer one.
STALE_COPY_RECHECK = 2.0
SECRET_RECHECK_CAP = 30.0
RECONCILE_RETRY_CAP = 60.0
# How long a guest may take to shut down for spec.powerState: Stopped before it is stopped.
POWER_OFF_TIMEOUT = 60
# The locks a create or clone holds while its task runs; the VM gets its tags only at the end.
PROVISIONING_LOCKS = frozenset({"create", "clone"})

# The reason a running task of each kind reports, and the one its failure reports.
_TASK_RUNNING = {
    "create": ReadyReason.PROVISIONING,
    "clone": ReadyReason.PROVISIONING,
    "start": ReadyReason.STARTING,
    "stop": ReadyReason.STOPPING,
}
# The Ready reasons of a failed pass (``failed``): their waits grow while they last.
FAILURE_REASONS = frozenset(
    {
        ReadyReason.CONNECTION_UNAVAILABLE,
        ReadyReason.PROXMOX_UNREACHABLE,
        ReadyReason.PROXMOX_UNAUTHORIZED,
        ReadyReason.PROXMOX_ERROR,
    }
)
_TASK_FAILED = {
    "create": ReadyReason.CREATE_FAILED,
    "clone": ReadyReason.CLONE_FAILED,
    "start": ReadyReason.START_FAILED,
    "stop": ReadyReason.STOP_FAILED,
}


# ------------------------------------------------------------------ the object


@dataclass(frozen=True)
class InvalidSpec:
    """The spec did not validate; ``problem`` names the fields."""

    problem: str


@dataclass(frozen=True)
class ReconcileContext:
    """The object as the pass's event carried it."""

    now: datetime.datetime
    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: ProxmoxVMSpec | InvalidSpec
    vmid: int | None  # status.vmid: the VM this object created, is creating or adopted
    task: TaskRef | None  # status.task: a task started and not yet seen to end
    conditions: Sequence[Condition] = ()
    # kopf's retry: how many passes in a row of this handling asked to be run again.
    retry: int = 0


def parse_spec(raw: object) -> ProxmoxVMSpec | InvalidSpec:
    """The spec, or what is wrong with it, naming each field."""
    try:
        return ProxmoxVMSpec.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item["loc"]) or "spec"
            parts.append(f"spec.{where}: {item['msg']}")
        return InvalidSpec("; ".join(parts))


def recorded_vmid(status: Mapping[str, object]) -> int | None:
    value = status.get("vmid")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def recorded_task(status: Mapping[str, object]) -> TaskRef | None:
    raw = status.get("task")
    if not isinstance(raw, Mapping):
        return None
    try:
        return TaskRef.model_validate(raw)
    except ValidationError:
        return None  # a mangled record: the VM's own state is looked at instead


def context_from_status(
    status: Mapping[str, object],
    *,
    now: datetime.datetime,
    namespace: str,
    name: str,
    uid: str,
    generation: int | None,
    spec: ProxmoxVMSpec | InvalidSpec,
    retry: int = 0,
) -> ReconcileContext:
    return ReconcileContext(
        now=now,
        namespace=namespace,
        name=name,
        uid=uid,
        generation=generation,
        spec=spec,
        vmid=recorded_vmid(status),
        task=recorded_task(status),
        conditions=parse_conditions(status.get("conditions")),
        retry=retry,
    )


# ------------------------------------------------------------------ observations


class Need(StrEnum):
    """What ``Look`` asks the controller to observe."""

    CONNECTION = "connection"  # the credentials Secret, and a client for it
    NEXT_VMID = "next_vmid"  # a free VMID from /cluster/nextid
    TASK = "task"  # the status of the recorded task
    VM = "vm"  # the VM at ctx.vmid, from the cluster listing
    CLONE_SOURCE = "clone_source"  # the clone source, from the cluster listing
    LIVE = "live"  # the object as the API server has it now
    CONFIG = "config"  # the VM's configuration
    POWER = "power"  # the VM's current status
    PENDING = "pending"  # config changes waiting for a reboot


@dataclass(frozen=True)
class Connection:
    secret: str  # namespace/name of the credentials Secret
    insecure_tls: bool = False  # the Secret turns TLS verification off


class FailureKind(StrEnum):
    """Why an observation or a call failed."""

    CONNECTION_UNAVAILABLE = "connection_unavailable"  # the Secret is missing or invalid
    UNREACHABLE = "unreachable"  # no usable answer from Proxmox
    UNAUTHORIZED = "unauthorized"  # a refused token or a missing privilege
    REJECTED = "rejected"  # Proxmox refused the call as invalid: it will not heal alone
    VMID_TAKEN = "vmid_taken"  # a create or clone found its VMID in use by another creator
    ERROR = "error"  # any other error answer


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str


@dataclass(frozen=True)
class ListedVM:
    """A VM as the cluster listing shows it."""

    vmid: int
    node: str
    tags: frozenset[str] = frozenset()
    lock: str | None = None
    power: str | None = None  # running | stopped | unknown, up to ~10 s old


def steady_by_listing(
    ctx: ReconcileContext, status: Mapping[str, object], listed: ListedVM | NotListed
) -> bool:
    """Whether a periodic pass may stop at the shared cluster listing, with no call of its
    own: the object is Ready at its generation with no task under way, and the listing shows
    its VM where the status says, with the ownership tag, unlocked, in the power state the
    status reports. What the listing does not show (disks, networks, memory, pending
    changes) is compared by a full pass, which the controller runs every so often anyway."""
    spec = ctx.spec
    if isinstance(spec, InvalidSpec) or ctx.task is not None or ctx.vmid is None:
        return False
    if not isinstance(listed, ListedVM) or listed.vmid != ctx.vmid:
        return False
    if status.get("observedGeneration") != ctx.generation:
        return False
    if not is_true(ctx.conditions, READY):
        return False
    expected = {"Running": "running", "Stopped": "stopped"}.get(str(status.get("powerState")))
    return (
        listed.node == status.get("node")
        and ownership_tag(ctx.uid) in listed.tags
        and listed.lock is None
        and expected is not None
        and listed.power == expected
    )


@dataclass(frozen=True)
class NotListed:
    """The listing has no VM with that VMID (a create finds out for sure)."""


@dataclass(frozen=True)
class VMConfig:
    values: Mapping[str, str]
    digest: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class VMPower:
    running: bool
    paused: bool = False


@dataclass(frozen=True)
class LiveCheck:
    """Why the live object forbids a create (``stale`` None: it allows it)."""

    stale: str | None = None
    unreadable: bool = False  # the API server could not answer: look again soon


def judge_live_object(live: Mapping[str, object] | None, uid: str, vmid: int | None) -> LiveCheck:
    """Whether the object as the API server has it now still allows a create of ``vmid``:
    not gone, not replaced, not being deleted, and recording the same VMID."""
    if live is None:
        return LiveCheck("the object is gone")
    metadata = live.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    if metadata.get("uid") != uid:
        return LiveCheck("the object was replaced")
    if metadata.get("deletionTimestamp"):
        return LiveCheck("the object is being deleted")
    status = live.get("status")
    recorded = status.get("vmid") if isinstance(status, Mapping) else None
    if recorded != vmid:
        return LiveCheck(f"the object now records VM {recorded}, not {vmid}")
    return LiveCheck()


@dataclass(frozen=True)
class Observation:
    """What the pass has observed so far; None: not looked at."""

    connection: Connection | None = None
    failure: Failure | None = None
    next_vmid: int | None = None
    task: TaskObservation | None = None
    vm: ListedVM | NotListed | None = None
    clone_source: ListedVM | NotListed | None = None
    live: LiveCheck | None = None
    config: VMConfig | None = None
    power: VMPower | None = None
    pending: tuple[str, ...] | None = None


# ------------------------------------------------------------------ actions


@dataclass(frozen=True)
class Look:
    need: Need


@dataclass(frozen=True)
class CreateVM:
    node: str
    vmid: int
    config: Mapping[str, ConfigValue]


@dataclass(frozen=True)
class CloneVM:
    source_node: str
    source_vmid: int
    vmid: int
    name: str
    full: bool
    storage: str | None
    target: str | None


@dataclass(frozen=True)
class UpdateConfig:
    node: str
    vmid: int
    changes: Mapping[str, ConfigValue]
    digest: str | None = None


@dataclass(frozen=True)
class StartVM:
    node: str
    vmid: int


@dataclass(frozen=True)
class StopVM:
    """A shutdown that becomes a stop after ``timeout`` seconds (spec.powerState: Stopped)."""

    node: str
    vmid: int
    timeout: int = POWER_OFF_TIMEOUT


TaskAction = CreateVM | CloneVM | StartVM | StopVM
Action = Look | TaskAction | UpdateConfig | None


def task_node(action: TaskAction) -> str:
    """The node whose task slots the action's task takes."""
    return action.source_node if isinstance(action, CloneVM) else action.node


def task_kind(action: TaskAction) -> str:
    return {CreateVM: "create", CloneVM: "clone", StartVM: "start", StopVM: "stop"}[type(action)]


@dataclass(frozen=True)
class Decision:
    """The pass's one action (None: no call), and what to write and post once it is done.

    For a task action the controller adds the task's UPID to the status once it started.
    ``retry_after`` None: nothing to do until the object changes or the drift timer fires.
    """

    action: Action
    status: StatusPatch = field(default_factory=StatusPatch)
    events: tuple[Event, ...] = ()
    retry_after: float | None = None
    progress: Progress = Progress.PROGRESSING


# ------------------------------------------------------------------ reporting


def _ready(
    ctx: ReconcileContext,
    progress: Progress,
    status: ConditionStatus,
    reason: ReadyReason,
    message: str,
    *,
    base: StatusPatch,
    retry: float | None,
    action: Action = None,
    events: tuple[Event, ...] = (),
) -> Decision:
    """Ready (and the kstatus pair) set to ``reason``; a new failure also posts a Warning."""
    previous = find(ctx.conditions, READY)
    conditions = set_readiness(
        ctx.conditions,
        progress,
        status,
        reason,
        message,
        now=ctx.now,
        generation=ctx.generation,
    )
    patch = base.then(StatusPatch(conditions=conditions, observed_generation=ctx.generation))
    if progress is Progress.STALLED and reason is not ReadyReason.VM_PAUSED:
        # A paused VM is still there and Running as a phase; the rest cannot go on.
        patch = patch.then(StatusPatch(phase=Phase.FAILED))
    failing = status is ConditionStatus.FALSE and progress is not Progress.PROGRESSING
    if failing and (previous is None or previous.reason != reason):
        events = (*events, Event("Warning", reason.value, message))
    return Decision(action, patch, events, retry, progress)


def _progress(
    ctx: ReconcileContext,
    reason: ReadyReason,
    message: str,
    *,
    base: StatusPatch,
    action: Action = None,
    event: Event | None = None,
) -> Decision:
    """Working towards the spec: look again soon."""
    return _ready(
        ctx,
        Progress.PROGRESSING,
        ConditionStatus.FALSE,
        reason,
        message,
        base=base,
        retry=AFTER_CALL,
        action=action,
        events=(event,) if event is not None else (),
    )


def _not_ready(
    ctx: ReconcileContext,
    reason: ReadyReason,
    message: str,
    *,
    base: StatusPatch,
    retry: float | None,
    status: ConditionStatus = ConditionStatus.FALSE,
    stalled: bool = False,
) -> Decision:
    """Not ready. ``retry=None`` finishes the handler: a spec change or the drift timer looks
    again (a kopf retry delay would also hold back the user's fix). ``stalled``: only a human
    can unblock it (kstatus Failed), though it is still retried."""
    progress = Progress.STALLED if stalled else Progress.RETRYING
    return _ready(ctx, progress, status, reason, message, base=base, retry=retry)


def _failures_in_a_row(ctx: ReconcileContext) -> int:
    """How many passes in a row have failed, this one included, by kopf's retry count.

    kopf counts every re-run of the handling, progress passes too; so a failure that follows
    progress (the last pass did not fail) is the first one, and is retried after the base
    wait: a blip during a long create must not wait as long as an outage does.
    """
    previous = find(ctx.conditions, READY)
    if previous is None or previous.reason not in FAILURE_REASONS:
        return 1
    return ctx.retry + 1


def failed(ctx: ReconcileContext, failure: Failure, base: StatusPatch | None = None) -> Decision:
    """An observation or a call failed: say why, and look again after a backoff."""
    base = base or StatusPatch()
    failures = _failures_in_a_row(ctx)
    if failure.kind is FailureKind.CONNECTION_UNAVAILABLE:
        # Not stalled: GitOps often applies the Secret (or an external-secrets object that
        # makes it) alongside the VM, and Flux would fail fast on Stalled. Nothing watches
        # Secrets, so look again soon first (2, 4, 8 s...), then every 30 s.
        retry = min(SECRET_RECHECK_CAP, backoff(failures))
        return _not_ready(
            ctx, ReadyReason.CONNECTION_UNAVAILABLE, failure.message, base=base, retry=retry
        )
    reason = {
        FailureKind.UNREACHABLE: ReadyReason.PROXMOX_UNREACHABLE,
        FailureKind.UNAUTHORIZED: ReadyReason.PROXMOX_UNAUTHORIZED,
    }.get(failure.kind, ReadyReason.PROXMOX_ERROR)
    unknown = failure.kind is FailureKind.UNREACHABLE
    return _not_ready(
        ctx,
        reason,
        failure.message,
        base=base,
        retry=backoff(failures, RECONCILE_RETRY_CAP),
        status=ConditionStatus.UNKNOWN if unknown else ConditionStatus.FALSE,
        # A wrong token, missing privileges or a call Proxmox refuses will not heal alone.
        stalled=failure.kind in (FailureKind.UNAUTHORIZED, FailureKind.REJECTED),
    )


def node_busy(ctx: ReconcileContext, decision: Decision, per_node: int) -> Decision:
    """The task ``decision`` wants to start found its node's slots full: wait for one."""
    assert isinstance(decision.action, (CreateVM, CloneVM, StartVM, StopVM))
    node = task_node(decision.action)
    base = _without_task_writes(decision.status)
    return _progress(
        ctx,
        ReadyReason.WAITING,
        f"{per_node} Proxmox tasks already in flight on {node}",
        base=base,
    )


def task_started(decision: Decision, upid: str) -> Decision:
    """The task ``decision`` asked for started as ``upid``: record it."""
    assert isinstance(decision.action, (CreateVM, CloneVM, StartVM, StopVM))
    task = TaskRef(upid=upid, action=task_kind(decision.action))
    return dataclasses.replace(decision, status=decision.status.then(StatusPatch(task=task)))


def _without_task_writes(patch: StatusPatch) -> StatusPatch:
    """What of a task decision's patch holds even when the task did not start."""
    return StatusPatch(task=patch.task)


# ------------------------------------------------------------------ the decision


def decide(ctx: ReconcileContext, seen: Observation) -> Decision:
    """The next step: ``Look`` for what is missing, or this pass's action and report."""
    spec = ctx.spec
    if isinstance(spec, InvalidSpec):
        return _refuse(ctx, spec.problem)
    if ctx.vmid is not None and spec.vmid is not None and spec.vmid != ctx.vmid:
        return _refuse(ctx, f"spec.vmid is immutable: this object owns VM {ctx.vmid}")
    if seen.failure is not None:
        if seen.failure.kind is FailureKind.VMID_TAKEN and spec.vmid is None:
            return _vmid_taken(ctx, spec, seen)
        return failed(ctx, seen.failure, task_outcome(ctx, seen))
    if seen.connection is None:
        return Decision(Look(Need.CONNECTION))

    if ctx.vmid is None:
        # Persist the VMID before anything exists under it. A VMID of the operator's choice
        # is chosen on the live object: this copy may lag behind a pass that recorded one
        # (and may have made its VM), and recording another would leave that VM unnamed.
        if spec.vmid is None and seen.live is None:
            return Decision(Look(Need.LIVE))
        if spec.vmid is None and seen.live is not None and seen.live.stale is not None:
            # The next pass gets a newer copy; a longer wait than a step's ends this pass.
            return Decision(None, StatusPatch(), retry_after=STALE_COPY_RECHECK)
        if spec.vmid is None and seen.next_vmid is None:
            return Decision(Look(Need.NEXT_VMID))
        vmid = spec.vmid if spec.vmid is not None else seen.next_vmid
        assert vmid is not None
        return _progress(
            ctx,
            ReadyReason.PROVISIONING,
            f"VM {vmid} will be created on {spec.node}",
            base=StatusPatch(vmid=vmid, phase=Phase.PROVISIONING),
        )

    base = StatusPatch()
    if ctx.task is not None:
        if seen.task is None:
            return Decision(Look(Need.TASK))
        followed = _follow_task(ctx, spec, seen, ctx.task)
        if followed is not None:
            return followed
        base = StatusPatch(task=None)

    if seen.vm is None:
        return Decision(Look(Need.VM))
    if isinstance(seen.vm, NotListed):
        return _create(ctx, spec, seen, ctx.vmid, base)
    found = seen.vm
    if ownership_tag(ctx.uid) not in found.tags:
        return _not_ours(ctx, spec, seen, found, base)
    if found.lock:
        return _not_ready(
            ctx,
            ReadyReason.VM_LOCKED,
            f"VM {ctx.vmid} is locked ({found.lock})",
            base=base,
            retry=RECHECK,
            status=ConditionStatus.UNKNOWN,
        )
    return _converge(ctx, spec, seen, found, base)


def _vmid_taken(ctx: ReconcileContext, spec: ProxmoxVMSpec, seen: Observation) -> Decision:
    """Another creator won the VMID this object chose: move on to a free one at once (the
    VMID was the operator's choice, not the user's, and nothing was made under it)."""
    if seen.next_vmid is None:
        return Decision(Look(Need.NEXT_VMID))
    message = (
        f"VM {ctx.vmid} was taken by another creator first; "
        f"VM {seen.next_vmid} will be created on {spec.node}"
    )
    return _progress(
        ctx,
        ReadyReason.PROVISIONING,
        message,
        base=task_outcome(ctx, seen).then(
            StatusPatch(vmid=seen.next_vmid, phase=Phase.PROVISIONING)
        ),
        event=Event("Normal", "VMIDReassigned", message),
    )


def _refuse(ctx: ReconcileContext, message: str) -> Decision:
    """Bad input: say so, call nothing, and wait for the user to change the object."""
    return _ready(
        ctx,
        Progress.STALLED,
        ConditionStatus.FALSE,
        ReadyReason.INVALID_SPEC,
        message,
        base=StatusPatch(),
        retry=None,
    )


def task_outcome(ctx: ReconcileContext, seen: Observation) -> StatusPatch:
    """A recorded task seen to end is forgotten even when a later observation fails."""
    if ctx.task is None or seen.task is None:
        return StatusPatch()
    if seen.task.state is TaskState.FAILED:
        return StatusPatch(task=None)
    # A clone stays recorded until it is made ours (see _follow_task).
    ended = seen.task.state is TaskState.SUCCEEDED and ctx.task.action != "clone"
    return StatusPatch(task=None) if ended else StatusPatch()


def _follow_task(
    ctx: ReconcileContext, spec: ProxmoxVMSpec, seen: Observation, task: TaskRef
) -> Decision | None:
    """The recorded task's outcome; None once it succeeded and the pass goes on."""
    assert seen.task is not None and ctx.vmid is not None
    observed = seen.task
    if observed.state is TaskState.RUNNING:
        reason = _TASK_RUNNING.get(task.action, ReadyReason.PROVISIONING)
        return _progress(ctx, reason, f"{task.action} running", base=StatusPatch())
    if observed.state is TaskState.UNKNOWN:
        return _not_ready(
            ctx,
            ReadyReason.PROXMOX_UNREACHABLE,
            observed.exitstatus,
            base=StatusPatch(),
            retry=RECHECK,
            status=ConditionStatus.UNKNOWN,
        )
    if observed.state is TaskState.FAILED:
        return _not_ready(
            ctx,
            _TASK_FAILED.get(task.action, ReadyReason.PROXMOX_ERROR),
            f"{task.action} of VM {ctx.vmid} failed: {observed.exitstatus}",
            base=StatusPatch(task=None),
            retry=backoff(3),
            stalled=True,
        )
    if task.action != "clone":
        return None
    # A clone carries the source's name and tags: make it ours before anything else. The
    # task stays recorded until this write succeeds, so a failed write is retried instead of
    # leaving our own clone looking foreign; it is this pass's one write.
    if seen.vm is None:
        return Decision(Look(Need.VM))
    if isinstance(seen.vm, NotListed):
        return None
    desired = _desired(ctx, spec)
    settable = {k: v for k, v in desired.items() if not is_disk_key(k)}
    return _progress(
        ctx,
        ReadyReason.PROVISIONING,
        f"took ownership of the clone {ctx.vmid}",
        base=StatusPatch(task=None),
        action=UpdateConfig(seen.vm.node, ctx.vmid, settable),
    )


def _desired(ctx: ReconcileContext, spec: ProxmoxVMSpec) -> dict[str, ConfigValue]:
    return desired_config(spec, ctx.name, ctx.uid)


def _create(
    ctx: ReconcileContext, spec: ProxmoxVMSpec, seen: Observation, vmid: int, base: StatusPatch
) -> Decision:
    # Judged on the live object: a create from a stale copy made a second VM that no
    # status named, and the destroy released the object without it.
    if seen.live is None:
        return Decision(Look(Need.LIVE))
    if seen.live.stale is not None:
        # No create. The live object's own events drive the next pass; a failed read is
        # tried again soon.
        return Decision(None, base, retry_after=RECHECK if seen.live.unreadable else None)
    clone = spec.source.clone_from if spec.source else None
    if clone is None:
        message = f"creating VM {vmid} on {spec.node}"
        action: TaskAction = CreateVM(spec.node, vmid, _desired(ctx, spec))
    else:
        source_node = clone.node
        if source_node is None:
            if seen.clone_source is None:
                return Decision(Look(Need.CLONE_SOURCE))
            if isinstance(seen.clone_source, NotListed):
                return _not_ready(
                    ctx,
                    ReadyReason.SOURCE_NOT_FOUND,
                    f"clone source VM {clone.vmid} does not exist",
                    base=base,
                    retry=30.0,
                    stalled=True,
                )
            source_node = seen.clone_source.node
        message = f"cloning VM {clone.vmid} to {vmid} on {spec.node}"
        action = CloneVM(
            source_node,
            clone.vmid,
            vmid,
            name=spec.name or ctx.name,
            full=clone.full,
            storage=clone.storage if clone.full else None,
            target=spec.node if spec.node != source_node else None,
        )
    return _progress(
        ctx,
        ReadyReason.PROVISIONING,
        message,
        base=base.then(StatusPatch(phase=Phase.PROVISIONING)),
        action=action,
        event=Event("Normal", "Creating", message),
    )


def _not_ours(
    ctx: ReconcileContext,
    spec: ProxmoxVMSpec,
    seen: Observation,
    found: ListedVM,
    base: StatusPatch,
) -> Decision:
    vmid = found.vmid
    if found.lock in PROVISIONING_LOCKS:
        # Still being made: its tags (whose it is) are final only once the task ends.
        return _progress(
            ctx,
            ReadyReason.WAITING,
            f"VM {vmid} on {found.node} is being made ({found.lock}); waiting",
            base=base,
        )
    claimed = sorted(t for t in found.tags if t.startswith(OWNERSHIP_TAG_PREFIX))
    if claimed and spec.vmid is None:
        # The VMID came from /cluster/nextid, which reserves nothing: objects created
        # together all get the same one, and the first create wins it. A VM carrying
        # another object's tag was never ours, so taking the next free VMID leaks nothing.
        if seen.next_vmid is None:
            return Decision(Look(Need.NEXT_VMID))
        message = (
            f"VM {vmid} went to another object ({', '.join(claimed)}) first; "
            f"VM {seen.next_vmid} will be created on {spec.node}"
        )
        return _progress(
            ctx,
            ReadyReason.PROVISIONING,
            message,
            base=base.then(StatusPatch(vmid=seen.next_vmid, phase=Phase.PROVISIONING)),
            event=Event("Normal", "VMIDReassigned", message),
        )
    if claimed:
        # Another object owns it: adopt never takes a VM from its owner.
        message = (
            f"VM {vmid} on {found.node} belongs to another object ({', '.join(claimed)}); "
            "it is left untouched"
        )
    elif not spec.adopt:
        message = (
            f"VM {vmid} on {found.node} exists and lacks this object's ownership tag "
            f"{ownership_tag(ctx.uid)}; it is left untouched. Set spec.adopt: true to take "
            "it over."
        )
    else:
        if seen.config is None:
            return Decision(Look(Need.CONFIG))
        tags = with_ownership_tag(";".join(seen.config.tags), ctx.uid)
        message = f"adopted VM {vmid} on {found.node} (spec.adopt)"
        return _progress(
            ctx,
            ReadyReason.ADOPTING,
            message,
            base=base,
            action=UpdateConfig(found.node, vmid, {"tags": tags}, seen.config.digest),
            event=Event("Normal", "Adopted", message),
        )
    return _not_ready(ctx, ReadyReason.NOT_OWNED, message, base=base, retry=None, stalled=True)


def _converge(
    ctx: ReconcileContext,
    spec: ProxmoxVMSpec,
    seen: Observation,
    found: ListedVM,
    base: StatusPatch,
) -> Decision:
    vmid, node = found.vmid, found.node
    if seen.config is None:
        return Decision(Look(Need.CONFIG))
    desired = _desired(ctx, spec)
    if spec.source and spec.source.clone_from:
        desired = {k: v for k, v in desired.items() if not is_disk_key(k)}
    changes = config_changes(desired, seen.config.values)
    if changes.set:
        keys = ", ".join(sorted(changes.set))
        return _progress(
            ctx,
            ReadyReason.UPDATING,
            f"updated {keys}",
            base=base,
            action=UpdateConfig(node, vmid, changes.set, seen.config.digest),
            event=Event("Normal", "ConfigUpdated", f"set {keys}"),
        )
    if seen.power is None:
        return Decision(Look(Need.POWER))
    power = seen.power
    want_running = spec.power_state is PowerState.RUNNING
    if power.running and power.paused:
        # Paused is neither state the spec can ask for; resuming is a human's call.
        return _not_ready(
            ctx,
            ReadyReason.VM_PAUSED,
            f"VM {vmid} is paused; resume it in Proxmox or set spec.powerState",
            base=base.then(StatusPatch(node=node, power_state=ObservedPower.PAUSED)),
            retry=None,
            stalled=True,
        )
    if want_running != power.running:
        reason = ReadyReason.STARTING if want_running else ReadyReason.STOPPING
        verb = "starting" if want_running else "stopping"
        action: TaskAction = StartVM(node, vmid) if want_running else StopVM(node, vmid)
        return _progress(
            ctx,
            reason,
            f"{verb} VM {vmid}",
            base=base,
            action=action,
            event=Event("Normal", reason.value, f"{verb} VM {vmid}"),
        )
    if power.running and seen.pending is None:
        return Decision(Look(Need.PENDING))
    return _reconciled(ctx, spec, seen, found, changes.unsupported, base)


def _reconciled(
    ctx: ReconcileContext,
    spec: ProxmoxVMSpec,
    seen: Observation,
    found: ListedVM,
    unsupported: Sequence[str],
    base: StatusPatch,
) -> Decision:
    assert seen.power is not None and seen.connection is not None
    running = seen.power.running
    previous = find(ctx.conditions, READY)
    message = f"VM {found.vmid} on {found.node} matches the spec"
    events: list[Event] = []
    pending = seen.pending or ()
    if pending:
        # cores, memory and the like apply at the next start; say so instead of rebooting.
        message += f"; waiting for a reboot to apply: {', '.join(pending)}"
        if previous is None or "waiting for a reboot" not in previous.message:
            events.append(
                Event("Normal", "RebootRequired", f"a reboot applies {', '.join(pending)}")
            )
    if unsupported:
        message += f"; cannot change in place (left as they are): {', '.join(unsupported)}"
    if seen.connection.insecure_tls:
        message += "; TLS is not verified (the Secret sets insecureSkipTLSVerify)"
        if previous is None or previous.status is not ConditionStatus.TRUE:
            events.append(
                Event(
                    "Warning",
                    "InsecureTLS",
                    f"the Secret {seen.connection.secret} sets insecureSkipTLSVerify: "
                    "Proxmox VE's certificate is not checked; set caCert instead",
                )
            )
    observed = StatusPatch(
        node=found.node,
        power_state=ObservedPower.RUNNING if running else ObservedPower.STOPPED,
        phase=Phase.RUNNING if running else Phase.STOPPED,
    )
    return _ready(
        ctx,
        Progress.READY,
        ConditionStatus.TRUE,
        ReadyReason.RECONCILED,
        message,
        base=base.then(observed),
        retry=None,
        events=tuple(events),
    )
