"""One pass of the destroy finalizer: observe, decide, act, and follow its own tasks.

A pass observes, lets the domain decide, and carries out the one action. When that action
started a task and the pass's ``Pace`` allows, the pass follows the task in-process (looking
when a task of its kind typically ends) and goes on with the next step as soon as it ended:
a Stop destroy is usually one pass, stop then delete then the proof of absence. Before the
first wait it persists what a restart must not lose (the start of the destroy, a shutdown
deadline). The caller persists the returned record and, unless the destroy is done, runs the
next pass after ``retry_after`` seconds. Nothing waits on the guest past the pace's bound.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..domain.conditions import parse_conditions
from ..domain.destroy import (
    Decision,
    DeleteVM,
    DestroyContext,
    Event,
    Outcome,
    PowerOff,
    PowerOffMethod,
    Release,
    RemoveOwnershipTag,
    StallReason,
    TaggedVM,
    TaskObservation,
    TaskState,
    VMObservation,
    VMUnreachable,
    Wait,
    backoff,
    call_failed,
    decide,
    destroy_report,
    destroy_strays,
    effective_mode,
    shutdown_accepted,
    start_record,
)
from ..domain.model import (
    DestroyMode,
    DestroyPolicy,
    DestroyStatus,
    DestroyStep,
    ProxmoxVMSpec,
    parse_time,
)
from ..domain.status import StatusPatch, apply_merge_patch
from ..domain.vmconfig import ownership_tag, without_ownership_tag
from ..proxmox import ErrorKind, ProxmoxClient, ProxmoxError
from ..proxmox.tasks import TaskWaiter
from .budget import TaskBudget
from .connections import ClientPool, ConnectionUnavailable
from .observe import observe_task, observe_vm, task_failure, task_observation
from .pace import Checkpoint, Pace

log = logging.getLogger(__name__)

# After a call started a task, look at it again soon.
AFTER_CALL = 1.0


@dataclass(frozen=True)
class DestroyRequest:
    namespace: str
    name: str
    uid: str
    annotations: Mapping[str, str]
    spec: object  # as stored: normally a mapping, but a destroy must survive anything
    status: Mapping[str, Any]
    generation: int | None = None


@dataclass
class DestroyPass:
    """What one pass did and what the caller should persist and report."""

    record: DestroyStatus | None
    outcome: Outcome | None = None  # set when the finalizer may go
    retry_after: float = 0.0
    stalled: StallReason | None = None
    error: StallReason | None = None  # the error this pass hit, if any
    message: str = ""
    events: list[Event] = field(default_factory=list)
    fallback: bool = False
    # The spec did not validate: the destroy runs with safe defaults, and says why.
    invalid_spec: str | None = None
    # What to write to .status: the record, the phase and the conditions.
    status: StatusPatch = field(default_factory=StatusPatch)
    mode: DestroyMode = DestroyMode.STOP  # the mode in force (the duration metric's label)
    # The status as the API server holds it after what this pass persisted along the way:
    # the base ``status`` is to be written against.
    persisted: Mapping[str, Any] | None = None
    # The task this pass's call started, if any (followed in-process when the pace allows),
    # and the waiter's time when the call returned.
    started_task: str | None = None
    started_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.outcome is not None


@dataclass(frozen=True)
class DestroySpec:
    """The spec as far as a destroy needs it, and what was wrong with it, if anything."""

    spec: ProxmoxVMSpec
    problem: str | None = None


# Stands in for a node name the spec does not give validly; never sent to Proxmox.
_NO_NODE = "unknown-node"


def spec_for_destroy(raw: object) -> DestroySpec:
    """The spec, or, if it does not validate, the parts a destroy needs with safe defaults.

    A broken spec must not stop a destroy: the default policy (a hard stop, purge) is the
    safe one. Only the connectionRef cannot be guessed; without it the destroy stalls on a
    missing Secret, which says so. This never raises, whatever ``raw`` is.
    """
    if isinstance(raw, Mapping):
        try:
            return DestroySpec(ProxmoxVMSpec.model_validate(raw))
        except ValidationError as exc:
            problem = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc']) or ''}: {e['msg']}" for e in exc.errors()
            )
        fields: Mapping[str, Any] = raw
    else:
        problem = f"spec is not an object but {type(raw).__name__}"
        fields = {}
    try:
        policy = DestroyPolicy.model_validate(fields.get("destroy") or {})
    except ValidationError:
        policy = DestroyPolicy()
    connection = fields.get("connectionRef")
    name = connection.get("name") if isinstance(connection, Mapping) else None
    fallback = {
        "connectionRef": {"name": name if isinstance(name, str) and name else "-"},
        "node": fields.get("node"),
        "adopt": fields.get("adopt") is True,
        "deletionPolicy": "Orphan" if fields.get("deletionPolicy") == "Orphan" else "Delete",
        "destroy": policy.model_dump(by_alias=True),
    }
    try:
        spec = ProxmoxVMSpec.model_validate(fallback)
    except ValidationError:
        spec = ProxmoxVMSpec.model_validate({**fallback, "node": _NO_NODE})
    return DestroySpec(spec, problem[:1024])


def _last_node(spec: ProxmoxVMSpec, status: Mapping[str, Any]) -> str | None:
    """Where the VM was last seen (status.node), else where the spec put it."""
    node = status.get("node")
    if isinstance(node, str) and node:
        return node
    return None if spec.node == _NO_NODE else spec.node


def _record(status: Mapping[str, Any]) -> DestroyStatus | None:
    raw = status.get("destroy")
    if not raw:
        return None
    try:
        return DestroyStatus.model_validate(raw)
    except ValidationError:
        return None  # a mangled record: start over; every step is idempotent


def _stall_reason(exc: ProxmoxError) -> StallReason:
    return {
        ErrorKind.LOCKED: StallReason.VM_LOCKED,
        ErrorKind.PROTECTED: StallReason.PROTECTED,
        ErrorKind.UNREACHABLE: StallReason.PROXMOX_UNREACHABLE,
        ErrorKind.UNAUTHORIZED: StallReason.PROXMOX_UNREACHABLE,
        ErrorKind.FORBIDDEN: StallReason.PERMISSION_DENIED,
    }.get(exc.kind, StallReason.TASK_FAILED)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# The task types that carry out each call: one already running is followed, not repeated.
_TASK_TYPES = {
    PowerOffMethod.STOP: ("qmstop",),
    PowerOffMethod.SHUTDOWN: ("qmshutdown",),
    PowerOffMethod.HA_STOP: ("hastop",),
}


@dataclass(frozen=True)
class _Followed:
    """A task this pass followed to its end, so the next step need not ask again."""

    upid: str
    task: TaskObservation


def _must_persist(persisted: Mapping[str, Any], record: DestroyStatus | None) -> bool:
    """Whether ``record`` holds what a restart must not lose and the API server lacks: the
    destroy's start (its stall clock), or what ``_must_persist_now`` names."""
    return record is not None and (
        _record(persisted) is None or _must_persist_now(persisted, record)
    )


def _must_persist_now(persisted: Mapping[str, Any], record: DestroyStatus | None) -> bool:
    """What may not wait at all: the shutdown deadline the guest was promised, and that the
    graceful shutdown ran out (shown to users as ``fallbackUsed``)."""
    if record is None:
        return False
    stored = _record(persisted)
    deadline = stored.shutdown_deadline if stored is not None else None
    fallback = stored.fallback_used if stored is not None else False
    return deadline != record.shutdown_deadline or fallback != record.fallback_used


def _shutdown_due_in(record: DestroyStatus | None, now: datetime.datetime) -> float | None:
    """Seconds until the forced stop of a graceful shutdown is due; None if none is awaited."""
    if record is None or record.shutdown_deadline is None:
        return None
    if record.step is not DestroyStep.WAITING_FOR_SHUTDOWN:
        return None
    # A hair past it: the pass's clock must read the deadline as passed when it decides.
    return max(0.0, (parse_time(record.shutdown_deadline) - now).total_seconds()) + 0.01


class Destroyer:
    def __init__(
        self,
        pool: ClientPool,
        budget: TaskBudget,
        *,
        stall_after: float,
        clock: Callable[[], datetime.datetime] = _utcnow,
        pace: Pace | None = None,
        waiter: TaskWaiter | None = None,
    ) -> None:
        self.pool = pool
        self.budget = budget
        self.stall_after = stall_after
        # Reads the time after a call returns (the pass's ``now`` is from before it).
        self.clock = clock
        self.pace = pace or Pace()
        self.waiter = waiter or TaskWaiter()

    async def run_pass(
        self,
        request: DestroyRequest,
        now: datetime.datetime,
        checkpoint: Checkpoint | None = None,
    ) -> DestroyPass:
        """One pass; with a pace that follows tasks, as many steps as end within it."""
        parsed = spec_for_destroy(request.spec)
        deadline = self.waiter.now() + self.pace.follow_within
        persisted: dict[str, Any] = dict(request.status)
        current = request
        followed: _Followed | None = None
        events: list[Event] = []
        total = StatusPatch()
        fallback = False
        while True:
            result, client = await self._run_pass(current, parsed.spec, now, followed, deadline)
            self._report(current, parsed, result, now, first=current is request)
            events.extend(result.events)
            total = total.then(result.status)
            fallback = fallback or result.fallback
            left = deadline - self.waiter.now()
            upid = result.started_task
            if result.done or upid is None or client is None or left <= 0:
                break
            # What a restart must not lose is written before the wait: a shutdown deadline
            # or a fallback at once, the start of the destroy once the wait outlasts the
            # pace's ``checkpoint_after`` (a destroy that is over by then never writes it;
            # a restart before then finds its task in the node's task list).
            pending = checkpoint is not None and _must_persist(persisted, result.record)
            urgent = pending and _must_persist_now(persisted, result.record)
            if urgent:
                if not await self._checkpoint(checkpoint, total, persisted, request):
                    break
                persisted = apply_merge_patch(persisted, total.to_merge_patch(persisted))
                pending = False
            if checkpoint is not None:  # events cost a write whenever they go: post them now
                checkpoint.post_events(events)
                events = []
            # A graceful shutdown is followed only up to its deadline, where the forced stop
            # is due.
            within = deadline - self.waiter.now()
            due = _shutdown_due_in(result.record, self.clock())
            if due is not None:
                within = min(within, due)
            first = min(within, self.pace.checkpoint_after) if pending else within
            try:
                status = await self.waiter.wait(
                    client, upid, started=result.started_at, within=first
                )
                if status.running and pending and first < within:
                    if not await self._checkpoint(checkpoint, total, persisted, request):
                        break
                    persisted = apply_merge_patch(persisted, total.to_merge_patch(persisted))
                    status = await self.waiter.wait(
                        client, upid, started=result.started_at, within=within - first
                    )
            except ProxmoxError as exc:
                followed = _Followed(upid, task_failure(exc))
            else:
                if status.running and (due is None or due > within):
                    break  # the pace's bound: the next pass looks again
                followed = _Followed(upid, task_observation(upid, status))
            local = apply_merge_patch(current.status, total.to_merge_patch(current.status))
            current = dataclasses.replace(current, status=local)
            now = self.clock()
        result.events = events
        result.status = total
        result.fallback = fallback
        result.persisted = persisted
        return result

    @staticmethod
    async def _checkpoint(
        checkpoint: Checkpoint | None,
        total: StatusPatch,
        persisted: Mapping[str, Any],
        request: DestroyRequest,
    ) -> bool:
        """Write the status; False if the write failed."""
        assert checkpoint is not None
        try:
            await checkpoint.write_status(total.to_merge_patch(persisted))
        except Exception as exc:  # the API server's problem: kopf writes it later
            log.info("could not persist the destroy of %s: %s", request.name, exc)
            return False
        return True

    def _report(
        self,
        request: DestroyRequest,
        parsed: DestroySpec,
        result: DestroyPass,
        now: datetime.datetime,
        *,
        first: bool,
    ) -> None:
        """Fill in the pass's message, mode, status patch and stall events."""
        message = result.message
        if parsed.problem is not None:
            result.invalid_spec = parsed.problem
            message = (
                f"{message or 'destroying'} (the spec is invalid, so the default policy "
                f"applies: {parsed.problem})"
            )
            if first and request.status.get("destroy") is None:  # once, at the first pass
                result.events.insert(
                    0,
                    Event(
                        "Warning",
                        "InvalidSpec",
                        f"destroying with the default policy (Stop, purge): {parsed.problem}",
                    ),
                )
        result.message = message
        result.mode = (
            result.record.mode
            if result.record is not None
            else effective_mode(parsed.spec, request.annotations)
        )
        result.status, stall_events = destroy_report(
            parse_conditions(request.status.get("conditions")),
            generation=request.generation,
            record=result.record,
            stalled=result.stalled,
            message=message,
            now=now,
        )
        result.events.extend(stall_events)

    async def _run_pass(
        self,
        request: DestroyRequest,
        spec: ProxmoxVMSpec,
        now: datetime.datetime,
        followed: _Followed | None,
        deadline: float,
    ) -> tuple[DestroyPass, ProxmoxClient | None]:
        record = _record(request.status)
        vmid = request.status.get("vmid")
        if record is not None and record.vmid is not None:
            vmid = record.vmid  # a stray VM with our tag, after the one status names
        provisioning = request.status.get("task") or {}
        ctx = DestroyContext(
            now=now,
            uid=request.uid,
            spec=spec,
            annotations=request.annotations,
            vmid=int(vmid) if vmid is not None else None,
            record=record,
            stall_after=self.stall_after,
            provisioned_by_us=provisioning.get("action") in ("create", "clone"),
        )
        # Decide first without Proxmox: force-release and never-created need no lookup.
        early = decide(ctx, None, None)
        if isinstance(early.action, Release) and early.action.outcome in (
            Outcome.FORCE_RELEASED,
            Outcome.ALREADY_ABSENT,
        ):
            return self._finish(early), None

        client: ProxmoxClient | None = None
        vm: VMObservation
        task: TaskObservation | None = None
        try:
            client = await self.pool.client(request.namespace, spec.connection_ref.name)
        except ConnectionUnavailable as exc:
            vm = VMUnreachable(str(exc))
        else:
            assert ctx.vmid is not None
            vm = await observe_vm(
                client,
                ctx.vmid,
                _last_node(spec, request.status),
                max_age=self.pace.listing_max_age,
            )
            if ctx.record is not None and ctx.record.task_upid is not None:
                upid = ctx.record.task_upid
                if followed is not None and followed.upid == upid:
                    task = followed.task
                else:
                    task = await observe_task(client, upid)
                if task.state in (TaskState.SUCCEEDED, TaskState.FAILED):
                    self.budget.finished(ctx.record.task_upid)
        decision = decide(ctx, vm, task)
        if (
            client is not None
            and isinstance(decision.action, Release)
            and decision.action.outcome in (Outcome.DELETED, Outcome.ALREADY_ABSENT)
        ):
            try:
                # The listing that proved the VM absent serves (strays predate the destroy).
                listing = await client.list_vms(max_age=max(self.pace.listing_max_age, 1.0))
                tagged = [
                    TaggedVM(found.vmid, found.node)
                    for found in listing
                    if ownership_tag(ctx.uid) in found.tags
                ]
            except ProxmoxError as exc:
                decision = call_failed(ctx, decision, _stall_reason(exc), exc.message)
            else:
                decision = destroy_strays(ctx, decision, tagged)
        return await self._act(ctx, decision, client, deadline), client

    def _finish(self, decision: Decision) -> DestroyPass:
        assert isinstance(decision.action, Release)
        return DestroyPass(
            decision.record, outcome=decision.action.outcome, events=list(decision.events)
        )

    async def _act(
        self,
        ctx: DestroyContext,
        decision: Decision,
        client: ProxmoxClient | None,
        deadline: float,
    ) -> DestroyPass:
        action = decision.action
        if isinstance(action, Release):
            return self._finish(decision)
        if isinstance(action, Wait):
            return self._wait(decision)
        assert client is not None and ctx.vmid is not None
        if isinstance(action, RemoveOwnershipTag):
            return await self._remove_tag(ctx, decision, client, action)
        assert decision.record is not None
        try:
            running = await self.budget.look(client, action.node, max_age=self.pace.listing_max_age)
        except ProxmoxError as exc:
            return self._failed(ctx, decision, exc)
        superseded = ctx.record.task_upid if ctx.record is not None else None
        if superseded is not None:
            # This call supersedes the recorded task (a forced stop kills the shutdown), so
            # that task no longer takes a slot.
            self.budget.finished(superseded)
            running = [task for task in running if task.upid.raw != superseded]
        # A task for this very step already runs: ours, started before a restart lost its
        # record, or (for a delete) anyone's. Follow it rather than send a second call, which
        # would only queue behind it on the VM's lock.
        wanted = ("qmdestroy",) if isinstance(action, DeleteVM) else _TASK_TYPES[action.method]
        mine = client.settings.token_id
        for task in running:
            if task.upid.id != str(ctx.vmid) or task.upid.type not in wanted:
                continue
            if task.upid.type == "qmdestroy" or task.user == mine:
                return DestroyPass(
                    decision.record.model_copy(update={"task_upid": task.upid.raw}),
                    retry_after=AFTER_CALL,
                    message=f"following task {task.upid.raw}, already running",
                )
        node_key = self.budget.node_key(client, action.node)
        reservation = await self.budget.acquire(
            node_key, within=max(0.0, deadline - self.waiter.now())
        )
        if reservation is None:
            return DestroyPass(
                ctx.record or start_record(ctx),
                retry_after=2.0,
                message=f"waiting: {self.budget.per_node} Proxmox tasks already in flight "
                f"on node {action.node}",
            )
        try:
            upid, note = await self._call(client, ctx.vmid, action)
        except ProxmoxError as exc:
            self.budget.finished(reservation)
            return self._failed(ctx, decision, exc)
        started_at = self.waiter.now()
        self.budget.started(reservation, upid)
        record = decision.record.model_copy(update={"task_upid": upid})
        if isinstance(action, PowerOff) and action.method is PowerOffMethod.SHUTDOWN:
            assert action.timeout_seconds is not None
            record = shutdown_accepted(record, self.clock(), action.timeout_seconds)
        return DestroyPass(
            record,
            retry_after=AFTER_CALL,
            message=f"started task {upid}{note}",
            events=list(decision.events),
            fallback=decision.fallback,
            started_task=upid,
            started_at=started_at,
        )

    @staticmethod
    def _wait(decision: Decision) -> DestroyPass:
        wait = decision.action
        assert isinstance(wait, Wait)
        return DestroyPass(
            decision.record,
            retry_after=wait.seconds,
            stalled=wait.stalled,
            error=wait.error,
            message=decision.message,
            events=list(decision.events),
        )

    def _failed(self, ctx: DestroyContext, decision: Decision, exc: ProxmoxError) -> DestroyPass:
        """The call failed before a task started: the same step again, after a backoff."""
        return self._wait(call_failed(ctx, decision, _stall_reason(exc), exc.message))

    async def _call(
        self, client: ProxmoxClient, vmid: int, action: PowerOff | DeleteVM
    ) -> tuple[str, str]:
        """Make the call; return the task's UPID and a note for the message."""
        note = ""
        if isinstance(action, DeleteVM):
            upid = await client.delete_vm(
                action.node,
                vmid,
                purge=action.purge,
                destroy_unreferenced_disks=action.destroy_unreferenced_disks,
            )
        elif action.method is PowerOffMethod.SHUTDOWN:
            upid = await client.shutdown_vm(action.node, vmid, timeout=action.timeout_seconds)
        elif action.method is PowerOffMethod.HA_STOP:
            upid = await client.stop_vm(action.node, vmid)
        else:
            if not await client.knows_overrule_shutdown():
                version = (await client.known_version()).version
                note = (
                    f" (a plain stop: Proxmox VE {version} cannot overrule a running shutdown, "
                    "which must end first)"
                )
            upid = await client.stop_vm(action.node, vmid, overrule_shutdown=True)
        return str(upid), note

    async def _remove_tag(
        self,
        ctx: DestroyContext,
        decision: Decision,
        client: ProxmoxClient,
        action: RemoveOwnershipTag,
    ) -> DestroyPass:
        assert ctx.vmid is not None
        try:
            config = await client.vm_config(action.node, ctx.vmid)
            tags = without_ownership_tag(";".join(config.tags), ctx.uid)
            changes = {"tags": tags} if tags else {}
            await client.update_config(
                action.node,
                ctx.vmid,
                changes,
                delete=() if tags else ("tags",),
                digest=config.digest,
            )
        except ProxmoxError as exc:
            return DestroyPass(
                decision.record,
                retry_after=backoff(2),
                error=_stall_reason(exc),
                message=f"could not remove the ownership tag: {exc.message}",
            )
        return DestroyPass(decision.record, outcome=Outcome.ORPHANED)
