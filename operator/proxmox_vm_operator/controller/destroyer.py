"""One pass of the destroy finalizer: observe, decide, carry out one action.

The caller persists the returned record and, unless the destroy is done, runs the next pass
after ``retry_after`` seconds. Nothing here waits on the guest.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

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
    TaskObservation,
    TaskState,
    VMObservation,
    VMUnreachable,
    Wait,
    backoff,
    call_failed,
    decide,
    start_record,
)
from ..domain.model import DestroyPolicy, DestroyStatus, ProxmoxVMSpec
from ..domain.vmconfig import without_ownership_tag
from ..proxmox import ErrorKind, ProxmoxClient, ProxmoxError
from .budget import TaskBudget
from .connections import ClientPool, ConnectionUnavailable
from .observe import observe_task, observe_vm

# After a call started a task, look at it again soon.
AFTER_CALL = 1.0


@dataclass(frozen=True)
class DestroyRequest:
    namespace: str
    name: str
    uid: str
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]
    status: Mapping[str, Any]


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

    @property
    def done(self) -> bool:
        return self.outcome is not None


def spec_for_destroy(raw: Mapping[str, Any]) -> ProxmoxVMSpec:
    """The spec, or, if it no longer validates, the parts a destroy needs with safe defaults.

    A broken spec must not stop a destroy: the default policy (a hard stop) is the safe one.
    """
    try:
        return ProxmoxVMSpec.model_validate(raw)
    except ValidationError:
        pass
    try:
        policy = DestroyPolicy.model_validate(raw.get("destroy") or {})
    except ValidationError:
        policy = DestroyPolicy()
    connection = raw.get("connectionRef")
    name = connection.get("name") if isinstance(connection, Mapping) else None
    return ProxmoxVMSpec.model_validate(
        {
            "connectionRef": {"name": str(name or "-")},
            "node": str(raw.get("node") or "-"),
            "adopt": raw.get("adopt") is True,
            "deletionPolicy": "Orphan" if raw.get("deletionPolicy") == "Orphan" else "Delete",
            "destroy": policy.model_dump(by_alias=True),
        }
    )


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
    }.get(exc.kind, StallReason.TASK_FAILED)


class Destroyer:
    def __init__(self, pool: ClientPool, budget: TaskBudget, *, stall_after: float) -> None:
        self.pool = pool
        self.budget = budget
        self.stall_after = stall_after

    async def run_pass(self, request: DestroyRequest, now: datetime.datetime) -> DestroyPass:
        spec = spec_for_destroy(request.spec)
        vmid = request.status.get("vmid")
        provisioning = request.status.get("task") or {}
        ctx = DestroyContext(
            now=now,
            uid=request.uid,
            spec=spec,
            annotations=request.annotations,
            vmid=int(vmid) if vmid is not None else None,
            record=_record(request.status),
            stall_after=self.stall_after,
            provisioned_by_us=provisioning.get("action") in ("create", "clone"),
        )
        # Decide first without Proxmox: force-release and never-created need no lookup.
        early = decide(ctx, None, None)
        if isinstance(early.action, Release) and early.action.outcome in (
            Outcome.FORCE_RELEASED,
            Outcome.ALREADY_ABSENT,
        ):
            return self._finish(early)

        client: ProxmoxClient | None = None
        vm: VMObservation
        task: TaskObservation | None = None
        try:
            client = await self.pool.client(request.namespace, spec.connection_ref.name)
        except ConnectionUnavailable as exc:
            vm = VMUnreachable(str(exc))
        else:
            assert ctx.vmid is not None
            vm = await observe_vm(client, ctx.vmid)
            if ctx.record is not None and ctx.record.task_upid is not None:
                task = await observe_task(client, ctx.record.task_upid)
                if task.state in (TaskState.SUCCEEDED, TaskState.FAILED):
                    self.budget.finished(ctx.record.task_upid)
        decision = decide(ctx, vm, task)
        return await self._act(ctx, decision, client)

    def _finish(self, decision: Decision) -> DestroyPass:
        assert isinstance(decision.action, Release)
        return DestroyPass(
            decision.record, outcome=decision.action.outcome, events=list(decision.events)
        )

    async def _act(
        self, ctx: DestroyContext, decision: Decision, client: ProxmoxClient | None
    ) -> DestroyPass:
        action = decision.action
        if isinstance(action, Release):
            return self._finish(decision)
        if isinstance(action, Wait):
            return DestroyPass(
                decision.record,
                retry_after=action.seconds,
                stalled=action.stalled,
                error=action.error,
                message=decision.message,
                events=list(decision.events),
            )
        assert client is not None and ctx.vmid is not None
        if isinstance(action, RemoveOwnershipTag):
            return await self._remove_tag(ctx, decision, client, action)
        node_key = f"{client.settings.endpoint}/{action.node}"
        if ctx.record is not None and ctx.record.task_upid is not None:
            # This call supersedes the recorded task (a forced stop kills the shutdown).
            self.budget.finished(ctx.record.task_upid)
        reservation = self.budget.reserve(node_key)
        if reservation is None:
            return DestroyPass(
                ctx.record or start_record(ctx),
                retry_after=2.0,
                message=f"waiting: {self.budget.per_node} Proxmox tasks already in flight "
                f"on node {action.node}",
            )
        try:
            upid = await self._call(client, ctx.vmid, action)
        except ProxmoxError as exc:
            self.budget.finished(reservation)
            failed = call_failed(ctx, decision, _stall_reason(exc), exc.message)
            wait = failed.action
            assert isinstance(wait, Wait)
            return DestroyPass(
                failed.record,
                retry_after=wait.seconds,
                stalled=wait.stalled,
                error=wait.error,
                message=failed.message,
            )
        self.budget.started(reservation, upid)
        assert decision.record is not None
        return DestroyPass(
            decision.record.model_copy(update={"task_upid": upid}),
            retry_after=AFTER_CALL,
            message=f"started task {upid}",
            events=list(decision.events),
            fallback=decision.fallback,
        )

    async def _call(self, client: ProxmoxClient, vmid: int, action: PowerOff | DeleteVM) -> str:
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
            upid = await client.stop_vm(action.node, vmid, overrule_shutdown=True)
        return str(upid)

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
