"""One pass of reconcile: observe what the domain asks for, then carry out its one action.

The decisions are ``domain.reconcile.decide``'s; this module only talks to Proxmox and the
API server and keeps the per-node task budget. The caller writes ``status`` and runs the next
pass after ``retry_after`` seconds (``None``: nothing left to do until the object changes or
the drift timer fires).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain.conditions import Progress
from ..domain.destroy import TaskState
from ..domain.model import ProxmoxVMSpec
from ..domain.reconcile import (
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
    task_node,
    task_started,
)
from ..domain.status import Event, StatusPatch
from ..proxmox import ErrorKind, ProxmoxClient, ProxmoxError, VmResource
from .budget import TaskBudget
from .connections import ClientPool, ConnectionUnavailable
from .observe import observe_task
from .vmids import VmidAllocator

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


@dataclass
class ReconcilePass:
    status: StatusPatch = field(default_factory=StatusPatch)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    progress: Progress = Progress.PROGRESSING


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
    return ListedVM(found.vmid, found.node, frozenset(found.tags), found.lock)


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
    ) -> None:
        self.pool = pool
        self.budget = budget or TaskBudget(per_node=4)
        self.vmids = vmids or VmidAllocator()

    async def run_pass(self, request: ReconcileRequest, now: datetime.datetime) -> ReconcilePass:
        ctx = context_from_status(
            request.status,
            now=now,
            namespace=request.namespace,
            name=request.name,
            uid=request.uid,
            generation=request.generation,
            spec=parse_spec(request.spec),
            retry=request.retry,
        )
        look = _Look(self, request, ctx)
        seen = Observation()
        for _ in range(_MAX_STEPS):
            decision = decide(ctx, seen)
            if isinstance(decision.action, Look):
                seen = await look(decision.action.need, seen)
                continue
            if decision.action is None:
                return _result(decision)
            assert look.client is not None, "an action needs a connection"
            try:
                return _result(await self._act(ctx, decision, look.client))
            except ProxmoxError as exc:
                # A failed call is observed like a failed look; decide says what follows. (A
                # VMID lost to another creator stays held, so it is not handed out again.)
                seen = dataclasses.replace(seen, failure=_failure(exc))
        raise RuntimeError(f"a reconcile pass did not settle: {decision.action}")

    async def _act(
        self, ctx: ReconcileContext, decision: Decision, client: ProxmoxClient
    ) -> Decision:
        action = decision.action
        if isinstance(action, UpdateConfig):
            await client.update_config(
                action.node, action.vmid, dict(action.changes), digest=action.digest
            )
            return decision
        assert isinstance(action, (CreateVM, CloneVM, StartVM, StopVM))
        node = task_node(action)
        await self.budget.look(client, node)
        reservation = self.budget.reserve(self.budget.node_key(client, node))
        if reservation is None:
            return node_busy(ctx, decision, self.budget.per_node)
        try:
            upid = str(await _start(client, action))
        except BaseException:
            self.budget.finished(reservation)
            raise
        self.budget.started(reservation, upid)
        return task_started(decision, upid)


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

    def __init__(self, reconciler: Reconciler, request: ReconcileRequest, ctx: ReconcileContext):
        self.reconciler = reconciler
        self.request = request
        self.ctx = ctx
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
            task = await observe_task(client, ctx.task.upid)
            if task.state in (TaskState.SUCCEEDED, TaskState.FAILED):
                self.reconciler.budget.finished(ctx.task.upid)
            return dataclasses.replace(seen, task=task)
        assert ctx.vmid is not None
        if need is Need.VM:
            return dataclasses.replace(seen, vm=_listed(await client.find_vm(ctx.vmid)))
        if need is Need.CLONE_SOURCE:
            spec = ctx.spec
            assert isinstance(spec, ProxmoxVMSpec)
            assert spec.source is not None and spec.source.clone_from is not None
            source = await client.find_vm(spec.source.clone_from.vmid)
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
