"""One pass of reconcile: observe what the domain asks for, carry out its one action, and
go on while the next step is due at once.

The decisions are ``domain.reconcile.decide``'s; this module only talks to Proxmox and the
API server and keeps the per-node task budget. When an action asks to be looked at again
soon (a VMID chosen, a task started, a config written) and the ``Pace`` allows, the pass
persists what a restart must not lose (the VMID before anything is made under it, the task),
follows its task in-process, and decides again: a create is usually one pass, create then
start then Ready. The caller writes ``status`` and runs the next pass after ``retry_after``
seconds (``None``: nothing left to do until the object changes or the drift timer fires).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain.conditions import Progress
from ..domain.destroy import TaskObservation, TaskState
from ..domain.model import ProxmoxVMSpec
from ..domain.reconcile import (
    AFTER_CALL,
    CloneVM,
    Connection,
    CreateVM,
    Decision,
    Failure,
    FailureKind,
    ListedVM,
    LiveCheck,
    Look,
    Need,
    NotListed,
    Observation,
    ReconcileContext,
    StartVM,
    StopVM,
    TaskAction,
    UpdateConfig,
    VMConfig,
    VMPower,
    context_from_status,
    decide,
    judge_live_object,
    node_busy,
    parse_spec,
    steady_by_listing,
    task_node,
    task_started,
)
from ..domain.status import Event, StatusPatch, apply_merge_patch
from ..proxmox import ErrorKind, ProxmoxClient, ProxmoxError, VmResource, parse_upid
from ..proxmox.tasks import TaskWaiter
from .budget import TaskBudget
from .connections import ClientPool, ConnectionUnavailable
from .observe import locate_vm, observe_task, task_failure, task_observation
from .pace import Checkpoint, Pace
from .vmids import VmidAllocator

log = logging.getLogger(__name__)

# Reads the object as the API server has it now (None: it is gone). A pass acts on the copy
# its event carried, which a slow API server may hand out long after it changed.
LiveReader = Callable[[], Awaitable[Mapping[str, Any] | None]]

# A pass observes at most each thing once, and acts at most twice (a call, then what its
# failure asks for): a bound that only a bug in decide() can reach.
_MAX_STEPS = 2 * len(Need) + 2


@dataclass(frozen=True)
class ReconcileRequest:
    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    live: LiveReader | None = None
    retry: int = 0  # kopf's retry: passes in a row of this handling that asked to re-run
    # The drift timer's pass: it may stop at the shared listing (``steady_by_listing``).
    periodic: bool = False


@dataclass
class ReconcilePass:
    status: StatusPatch = field(default_factory=StatusPatch)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    progress: Progress = Progress.PROGRESSING
    # The status as the API server holds it after what this pass persisted along the way:
    # the base ``status`` is to be written against.
    persisted: Mapping[str, Any] | None = None
    # The waiter's time when the call that started this pass's task returned.
    started_at: float | None = None
    # A drift pass that found another pass of the object under way: it did nothing.
    skipped: bool = False


@dataclass(frozen=True)
class _Followed:
    """A task this pass followed to its end, so the next step need not ask again."""

    upid: str
    task: TaskObservation


# Steps one pass may take in a row (create, start, a config write, and their looks).
_MAX_CONTINUATIONS = 6


def _must_persist(persisted: Mapping[str, Any], local: Mapping[str, Any]) -> bool:
    """What a restart must not lose: the VMID before anything is made under it, the task."""
    return any(persisted.get(key) != local.get(key) for key in ("vmid", "task"))


def _failure(exc: ProxmoxError) -> Failure:
    kind = {
        ErrorKind.UNREACHABLE: FailureKind.UNREACHABLE,
        ErrorKind.UNAUTHORIZED: FailureKind.UNAUTHORIZED,
        ErrorKind.FORBIDDEN: FailureKind.UNAUTHORIZED,
        ErrorKind.REJECTED: FailureKind.REJECTED,
        ErrorKind.TAKEN: FailureKind.VMID_TAKEN,
    }.get(exc.kind, FailureKind.ERROR)
    return Failure(kind, exc.message)


def _listed(found: VmResource | None) -> ListedVM | NotListed:
    if found is None:
        return NotListed()
    return ListedVM(found.vmid, found.node, frozenset(found.tags), found.lock, found.status)


def _result(decision: Decision) -> ReconcilePass:
    return ReconcilePass(
        decision.status, list(decision.events), decision.retry_after, decision.progress
    )


class Reconciler:
    def __init__(
        self,
        pool: ClientPool,
        budget: TaskBudget | None = None,
        vmids: VmidAllocator | None = None,
        *,
        pace: Pace | None = None,
        waiter: TaskWaiter | None = None,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.pool = pool
        self.budget = budget or TaskBudget(per_node=4)
        self.vmids = vmids or VmidAllocator()
        self.pace = pace or Pace()
        self.waiter = waiter or TaskWaiter()
        self.clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        # Per object: the lock its passes hold (see run_pass).
        self._passes: dict[str, tuple[asyncio.Lock, int]] = {}  # and how many passes use it
        # Per object: when a pass last compared its VM with the spec in full and found it so.
        self._full_checks: dict[str, float] = {}
        # Per object: when its last call to Proxmox returned. A kept listing from before that
        # would not show the change, so the object's next look asks for a newer one.
        self._changed: dict[str, float] = {}

    def _changed_since(self, uid: str, client_now: float) -> float | None:
        changed = self._changed.get(uid)
        if changed is not None and client_now - changed > self.pace.listing_max_age:
            del self._changed[uid]  # every listing kept now is newer
            return None
        return changed

    def forget(self, uid: str) -> None:
        """The object is gone: drop what this process kept of it."""
        self._full_checks.pop(uid, None)
        self._changed.pop(uid, None)

    async def run_pass(
        self,
        request: ReconcileRequest,
        now: datetime.datetime,
        checkpoint: Checkpoint | None = None,
    ) -> ReconcilePass:
        """One pass; with a pace that follows tasks, every step due at once within it.

        One pass per object at a time: kopf runs the drift timer apart from the change
        handlers, and a timer pass beside a create that waits for a task slot would create
        too. A periodic pass finds the object busy and does nothing; another pass waits."""
        lock, users = self._passes.get(request.uid, (asyncio.Lock(), 0))
        if request.periodic and lock.locked():
            return ReconcilePass(skipped=True)
        self._passes[request.uid] = (lock, users + 1)
        try:
            async with lock:
                if request.periodic and await self._steady(request, now):
                    return ReconcilePass(progress=Progress.READY)
                result = await self._run_pass(request, now, checkpoint)
        finally:
            lock, users = self._passes[request.uid]
            if users == 1:
                del self._passes[request.uid]  # no pass holds or waits for it
            else:
                self._passes[request.uid] = (lock, users - 1)
        if result.progress is Progress.READY:
            self._full_checks[request.uid] = self.waiter.now()
        return result

    async def _steady(self, request: ReconcileRequest, now: datetime.datetime) -> bool:
        """Whether a periodic pass can stop at the shared listing: a full pass ran less than
        ``full_check_after`` ago and the listing shows nothing changed. Any doubt (no
        client, a failed listing) runs the full pass, which reports it."""
        checked = self._full_checks.get(request.uid)
        if checked is None or self.waiter.now() - checked >= self.pace.full_check_after:
            return False
        ctx = _context(request, now)
        spec = ctx.spec
        if ctx.vmid is None or not isinstance(spec, ProxmoxVMSpec):
            return False
        try:
            client = await self.pool.client(request.namespace, spec.connection_ref.name)
            found = await client.find_vm(ctx.vmid, max_age=self.pace.periodic_listing_max_age)
        except (ConnectionUnavailable, ProxmoxError):
            return False
        return steady_by_listing(ctx, request.status, _listed(found))

    async def _run_pass(
        self,
        request: ReconcileRequest,
        now: datetime.datetime,
        checkpoint: Checkpoint | None,
    ) -> ReconcilePass:
        deadline = self.waiter.now() + self.pace.follow_within
        persisted: dict[str, Any] = dict(request.status)
        local: dict[str, Any] = dict(request.status)
        events: list[Event] = []
        total = StatusPatch()
        followed: _Followed | None = None
        fresh_after: float | None = None
        current = request
        for _ in range(_MAX_CONTINUATIONS):
            result, client = await self._one_step(current, now, followed, fresh_after, deadline)
            events.extend(result.events)
            total = total.then(result.status)
            local = apply_merge_patch(local, result.status.to_merge_patch(local))
            if (
                client is None
                or result.retry_after is None
                or result.retry_after > AFTER_CALL
                or self.waiter.now() >= deadline
            ):
                break
            if checkpoint is None:
                break  # the caller writes what this step did; nothing goes on before that
            if _must_persist(persisted, local):
                merge = total.to_merge_patch(persisted)
                try:
                    await checkpoint.write_status(merge)
                except Exception as exc:  # the API server's problem: kopf writes it later
                    log.info("could not persist the status of %s: %s", request.name, exc)
                    break
                persisted = apply_merge_patch(persisted, merge)
            checkpoint.post_events(events)
            events = []
            task = local.get("task")
            if isinstance(task, Mapping) and isinstance(task.get("upid"), str):
                upid = task["upid"]
                followed = await self._follow(client, upid, result, deadline)
                if followed is None:
                    break  # still running: the next pass looks at it
            if await _deleted_meanwhile(request):
                break  # the destroy comes next: no more work for a VM on its way out
            # What this pass did is seen only in a listing asked after it.
            fresh_after = client.monotonic()
            current = dataclasses.replace(current, status=local)
            now = self.clock()
        result.events = events
        result.status = total
        result.persisted = persisted
        return result

    async def _follow(
        self, client: ProxmoxClient, upid: str, result: ReconcilePass, deadline: float
    ) -> _Followed | None:
        """Wait for the task until the pass's deadline; None if it still runs then."""
        started = result.started_at
        if started is None:  # a task of an earlier pass: it started when its UPID says
            try:
                age = time.time() - parse_upid(upid).starttime
            except ValueError:
                return None
            started = self.waiter.now() - max(0.0, age)
        try:
            status = await self.waiter.wait(
                client, upid, started=started, within=deadline - self.waiter.now()
            )
        except ProxmoxError as exc:
            return _Followed(upid, task_failure(exc))
        if status.running:
            return None
        return _Followed(upid, task_observation(upid, status))

    async def _one_step(
        self,
        request: ReconcileRequest,
        now: datetime.datetime,
        followed: _Followed | None,
        fresh_after: float | None,
        deadline: float,
    ) -> tuple[ReconcilePass, ProxmoxClient | None]:
        ctx = _context(request, now)
        look = _Look(self, request, ctx, followed, fresh_after, self._changed_since)
        seen = Observation()
        for _ in range(_MAX_STEPS):
            decision = decide(ctx, seen)
            if isinstance(decision.action, Look):
                seen = await look(decision.action.need, seen)
                continue
            if decision.action is None:
                return _result(decision), look.client
            assert look.client is not None, "an action needs a connection"
            try:
                acted, started_at = await self._act(ctx, decision, look.client, deadline)
                self._changed[request.uid] = look.client.monotonic()
                result = _result(acted)
                result.started_at = started_at
                return result, look.client
            except ProxmoxError as exc:
                # A failed call may have changed something all the same (a lost reply).
                self._changed[request.uid] = look.client.monotonic()
                # A failed call is observed like a failed look; decide says what follows. (A
                # VMID lost to another creator stays held, so it is not handed out again.)
                seen = dataclasses.replace(seen, failure=_failure(exc))
        raise RuntimeError(f"a reconcile pass did not settle: {decision.action}")

    async def _act(
        self, ctx: ReconcileContext, decision: Decision, client: ProxmoxClient, deadline: float
    ) -> tuple[Decision, float | None]:
        """Carry out the action; the waiter's time when a task's call returned, if one did."""
        action = decision.action
        if isinstance(action, UpdateConfig):
            await client.update_config(
                action.node, action.vmid, dict(action.changes), digest=action.digest
            )
            return decision, None
        assert isinstance(action, (CreateVM, CloneVM, StartVM, StopVM))
        node = task_node(action)
        await self.budget.look(client, node, max_age=self.pace.listing_max_age)
        reservation = await self.budget.acquire(
            self.budget.node_key(client, node), within=max(0.0, deadline - self.waiter.now())
        )
        if reservation is None:
            return node_busy(ctx, decision, self.budget.per_node), None
        try:
            upid = str(await _start(client, action))
        except BaseException:
            self.budget.finished(reservation)
            raise
        started_at = self.waiter.now()
        self.budget.started(reservation, upid)
        return task_started(decision, upid), started_at


def _context(request: ReconcileRequest, now: datetime.datetime) -> ReconcileContext:
    return context_from_status(
        request.status,
        now=now,
        namespace=request.namespace,
        name=request.name,
        uid=request.uid,
        generation=request.generation,
        spec=parse_spec(request.spec),
        retry=request.retry,
    )


async def _deleted_meanwhile(request: ReconcileRequest) -> bool:
    """Whether the object is gone or being deleted now (a pass that goes on checks first)."""
    if request.live is None:
        return False
    try:
        live = await request.live()
    except Exception:
        return True  # unknown: stop here; the next pass judges afresh
    if live is None:
        return True
    metadata = live.get("metadata")
    return isinstance(metadata, Mapping) and bool(metadata.get("deletionTimestamp"))


async def _start(client: ProxmoxClient, action: TaskAction) -> object:
    if isinstance(action, CreateVM):
        return await client.create_vm(action.node, action.vmid, dict(action.config))
    if isinstance(action, CloneVM):
        return await client.clone_vm(
            action.source_node,
            action.source_vmid,
            action.vmid,
            name=action.name,
            full=action.full,
            storage=action.storage,
            target=action.target,
        )
    if isinstance(action, StartVM):
        return await client.start_vm(action.node, action.vmid)
    return await client.shutdown_vm(
        action.node, action.vmid, timeout=action.timeout, force_stop=True
    )


class _Look:
    """The observations of one pass; a failed one is an observation too."""

    def __init__(
        self,
        reconciler: Reconciler,
        request: ReconcileRequest,
        ctx: ReconcileContext,
        followed: _Followed | None,
        fresh_after: float | None,
        changed_since: Callable[[str, float], float | None],
    ):
        self.reconciler = reconciler
        self.request = request
        self.ctx = ctx
        self.followed = followed
        self.fresh_after = fresh_after
        self.changed_since = changed_since
        self.client: ProxmoxClient | None = None

    async def __call__(self, need: Need, seen: Observation) -> Observation:
        if need is Need.CONNECTION:
            return await self._connect(seen)
        if need is Need.LIVE:
            return dataclasses.replace(seen, live=await self._live())
        assert self.client is not None
        try:
            return await self._proxmox(need, seen, self.client)
        except ProxmoxError as exc:
            return dataclasses.replace(seen, failure=_failure(exc))

    async def _connect(self, seen: Observation) -> Observation:
        spec = self.ctx.spec
        assert isinstance(spec, ProxmoxVMSpec)
        name = spec.connection_ref.name
        try:
            self.client = await self.reconciler.pool.client(self.request.namespace, name)
        except ConnectionUnavailable as exc:
            return dataclasses.replace(
                seen, failure=Failure(FailureKind.CONNECTION_UNAVAILABLE, str(exc))
            )
        connection = Connection(
            f"{self.request.namespace}/{name}",
            insecure_tls=self.client.settings.insecure_skip_tls_verify,
        )
        return dataclasses.replace(seen, connection=connection)

    async def _proxmox(self, need: Need, seen: Observation, client: ProxmoxClient) -> Observation:
        ctx = self.ctx
        if need is Need.NEXT_VMID:
            vmid = await self.reconciler.vmids.allocate(client)
            return dataclasses.replace(seen, next_vmid=vmid)
        if need is Need.TASK:
            assert ctx.task is not None
            if self.followed is not None and self.followed.upid == ctx.task.upid:
                task = self.followed.task
            else:
                task = await observe_task(client, ctx.task.upid)
            if task.state in (TaskState.SUCCEEDED, TaskState.FAILED):
                self.reconciler.budget.finished(ctx.task.upid)
                # What the task did shows only in a listing asked after it ended.
                ended = client.monotonic()
                self.fresh_after = max(self.fresh_after or ended, ended)
            return dataclasses.replace(seen, task=task)
        assert ctx.vmid is not None
        max_age = self.reconciler.pace.listing_max_age
        if need is Need.VM:
            found = await locate_vm(client, ctx.vmid, max_age=max_age, asked_after=self.fresh_after)
            return dataclasses.replace(seen, vm=_listed(found))
        if need is Need.CLONE_SOURCE:
            spec = ctx.spec
            assert isinstance(spec, ProxmoxVMSpec)
            assert spec.source is not None and spec.source.clone_from is not None
            source = await locate_vm(client, spec.source.clone_from.vmid, max_age=max_age)
            return dataclasses.replace(seen, clone_source=_listed(source))
        assert isinstance(seen.vm, ListedVM)
        node = seen.vm.node
        if need is Need.CONFIG:
            config = await client.vm_config(node, ctx.vmid)
            return dataclasses.replace(
                seen, config=VMConfig(config.values, config.digest, config.tags)
            )
        if need is Need.POWER:
            status = await client.vm_status(node, ctx.vmid)
            power = VMPower(status.running, paused=status.qmpstatus == "paused")
            return dataclasses.replace(seen, power=power)
        assert need is Need.PENDING
        pending = await client.pending_keys(node, ctx.vmid)
        return dataclasses.replace(seen, pending=tuple(pending))

    async def _live(self) -> LiveCheck:
        if self.request.live is None:
            return LiveCheck()
        try:
            live = await self.request.live()
        except Exception as exc:  # the API server is the one that could not answer
            return LiveCheck(
                f"the object could not be read to confirm the create: {exc}", unreadable=True
            )
        return judge_live_object(live, self.request.uid, self.ctx.vmid)
