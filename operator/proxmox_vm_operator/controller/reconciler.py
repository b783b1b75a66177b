"""One pass of reconcile: bring the VM one step closer to the spec, and report.

Each pass makes at most one state-changing Proxmox call and returns. The caller merges
``status`` into the object's status and runs the next pass after ``retry_after`` seconds
(``None``: nothing left to do until the object changes or the drift timer fires).

Safety rules: the VMID is persisted in status *before* anything is created, so a crash
between the create call and the status write cannot leak a VM; a VM without our ownership
tag is never touched unless ``spec.adopt`` says so.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..domain.conditions import READY, Progress, find, set_readiness
from ..domain.destroy import Event, TaskState, backoff
from ..domain.model import OWNERSHIP_TAG_PREFIX, ObservedPower, Phase, PowerState, ProxmoxVMSpec
from ..domain.vmconfig import (
    config_changes,
    desired_config,
    is_disk_key,
    ownership_tag,
    with_ownership_tag,
)
from ..proxmox import ErrorKind, ProxmoxClient, ProxmoxError, VmResource
from .budget import TaskBudget
from .connections import ClientPool, ConnectionUnavailable
from .observe import observe_task

AFTER_CALL = 1.0
SECRET_RECHECK_CAP = 30.0
POWER_OFF_TIMEOUT = 60


# Reads the object as the API server has it now (None: it is gone). A pass acts on the copy
# its event carried, which a slow API server may hand out long after it changed.
LiveObject = Callable[[], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class ReconcileRequest:
    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    live: LiveObject | None = None


@dataclass
class ReconcilePass:
    status: dict[str, Any] = field(default_factory=dict)  # merged into .status
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    progress: Progress = Progress.PROGRESSING


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        parts.append(f"spec.{where}: {item['msg']}")
    return "; ".join(parts)


class Reconciler:
    def __init__(self, pool: ClientPool, budget: TaskBudget | None = None) -> None:
        self.pool = pool
        self.budget = budget or TaskBudget(per_node=4)
        # Passes that failed in a row, per object uid: the backoff of the next retry.
        self._failures: dict[str, int] = {}

    async def run_pass(self, request: ReconcileRequest, now: datetime.datetime) -> ReconcilePass:
        step = _Pass(request, now, self.budget)
        try:
            spec = ProxmoxVMSpec.model_validate(request.spec)
        except ValidationError as exc:
            return step.refuse("InvalidSpec", _describe(exc))
        known = request.status.get("vmid")
        if known is not None and spec.vmid is not None and spec.vmid != known:
            return step.refuse(
                "InvalidSpec", f"spec.vmid is immutable: this object owns VM {known}"
            )
        try:
            client = await self.pool.client(request.namespace, spec.connection_ref.name)
        except ConnectionUnavailable as exc:
            # Not stalled: GitOps often applies the Secret (or an external-secrets object
            # that makes it) alongside the VM, and Flux would fail fast on Stalled. Nothing
            # watches Secrets, so look again soon first (2, 4, 8 s...), then every 30 s.
            attempt = self._failures.get(request.uid, 0)
            self._failures[request.uid] = attempt + 1
            retry = min(SECRET_RECHECK_CAP, backoff(attempt + 1))
            return step.not_ready("ConnectionUnavailable", str(exc), retry=retry)
        try:
            result = await step.run(spec, client)
        except ProxmoxError as exc:
            attempt = self._failures.get(request.uid, 0)
            self._failures[request.uid] = attempt + 1
            reason = {
                ErrorKind.UNREACHABLE: "ProxmoxUnreachable",
                ErrorKind.UNAUTHORIZED: "ProxmoxUnauthorized",
                ErrorKind.FORBIDDEN: "ProxmoxUnauthorized",
            }.get(exc.kind, "ProxmoxError")
            status = "Unknown" if exc.kind is ErrorKind.UNREACHABLE else "False"
            # A wrong token, missing privileges or a call Proxmox refuses will not heal alone.
            stalled = exc.kind in (ErrorKind.UNAUTHORIZED, ErrorKind.FORBIDDEN, ErrorKind.REJECTED)
            return step.not_ready(
                reason, exc.message, retry=backoff(attempt + 1), status=status, stalled=stalled
            )
        self._failures.pop(request.uid, None)
        return result


class _Pass:
    def __init__(
        self, request: ReconcileRequest, now: datetime.datetime, budget: TaskBudget
    ) -> None:
        self.request = request
        self.now = now
        self.budget = budget
        self.result = ReconcilePass()

    async def _start_task(
        self,
        client: ProxmoxClient,
        node: str,
        action: str,
        call: Callable[[], Awaitable[object]],
    ) -> bool:
        """Start a task within --max-tasks-per-node and record it; False if the node is full."""
        await self.budget.look(client, node)
        reservation = self.budget.reserve(self.budget.node_key(client, node))
        if reservation is None:
            return False
        try:
            upid = str(await call())
        except BaseException:
            self.budget.finished(reservation)
            raise
        self.budget.started(reservation, upid)
        self.result.status["task"] = {"upid": upid, "action": action}
        return True

    def _node_busy(self, node: str) -> ReconcilePass:
        return self._progress(
            "Waiting", f"{self.budget.per_node} Proxmox tasks already in flight on {node}"
        )

    # -- reporting --------------------------------------------------------------------------

    def _ready(self, progress: Progress, status: str, reason: str, message: str) -> None:
        previous = find(self.request.status.get("conditions") or [], READY)
        self.result.status["conditions"] = set_readiness(
            self.request.status.get("conditions") or [],
            progress,
            status,
            reason,
            message,
            now=self.now,
            generation=self.request.generation,
        )
        self.result.status["observedGeneration"] = self.request.generation
        self.result.progress = progress
        if progress is Progress.STALLED and reason != "VMPaused":
            # A paused VM is still there and Running as a phase; the rest cannot go on.
            self.result.status["phase"] = Phase.FAILED.value
        if status == "False" and (previous is None or previous.get("reason") != reason):
            self.result.events.append(Event("Warning", reason, message))

    def refuse(self, reason: str, message: str) -> ReconcilePass:
        """Bad input: say so, call nothing, and wait for the user to change the object."""
        self._ready(Progress.STALLED, "False", reason, message)
        return self.result

    def not_ready(
        self,
        reason: str,
        message: str,
        *,
        retry: float | None,
        status: str = "False",
        stalled: bool = False,
    ) -> ReconcilePass:
        """Not ready. ``retry=None`` finishes the handler: a spec change or the drift timer
        looks again (a kopf retry delay would also hold back the user's fix). ``stalled``:
        only a human can unblock it (kstatus Failed), though it is still retried."""
        self._ready(Progress.STALLED if stalled else Progress.RETRYING, status, reason, message)
        self.result.retry_after = retry
        return self.result

    def _progress(self, reason: str, message: str, event: Event | None = None) -> ReconcilePass:
        previous = self.request.status.get("conditions") or []
        self.result.status["conditions"] = set_readiness(
            previous,
            Progress.PROGRESSING,
            "False",
            reason,
            message,
            now=self.now,
            generation=self.request.generation,
        )
        self.result.status["observedGeneration"] = self.request.generation
        self.result.progress = Progress.PROGRESSING
        if event is not None:
            self.result.events.append(event)
        self.result.retry_after = AFTER_CALL
        return self.result

    # -- the pass ---------------------------------------------------------------------------

    async def run(self, spec: ProxmoxVMSpec, client: ProxmoxClient) -> ReconcilePass:
        status = self.request.status
        vmid = status.get("vmid")
        if vmid is None:
            # Persist the VMID before anything exists under it.
            vmid = spec.vmid if spec.vmid is not None else await client.next_vmid()
            self.result.status.update({"vmid": vmid, "phase": Phase.PROVISIONING.value})
            return self._progress("Provisioning", f"VM {vmid} will be created on {spec.node}")

        task = status.get("task")
        if task:
            finished = await self._follow_task(spec, client, int(vmid), task)
            if finished is not None:
                return finished

        found = await client.find_vm(int(vmid))
        if found is None:
            return await self._create(spec, client, int(vmid))
        ours = ownership_tag(self.request.uid)
        if ours not in found.tags:
            if found.lock in ("create", "clone"):
                # Still being made: its tags (whose it is) are final only once the task ends.
                return self._progress(
                    "Waiting", f"VM {vmid} on {found.node} is being made ({found.lock}); waiting"
                )
            claimed = sorted(t for t in found.tags if t.startswith(OWNERSHIP_TAG_PREFIX))
            if claimed and spec.vmid is None:
                return await self._reassign_vmid(spec, client, found, claimed)
            if claimed:
                # Another object owns it: adopt never takes a VM from its owner.
                return self.not_ready(
                    "NotOwned",
                    f"VM {vmid} on {found.node} belongs to another object ({', '.join(claimed)}); "
                    "it is left untouched",
                    retry=None,
                    stalled=True,
                )
            if not spec.adopt:
                return self.not_ready(
                    "NotOwned",
                    f"VM {vmid} on {found.node} exists and lacks this object's ownership tag "
                    f"{ownership_tag(self.request.uid)}; it is left untouched. Set "
                    "spec.adopt: true to take it over.",
                    retry=None,
                    stalled=True,
                )
            return await self._adopt(client, found)
        if found.lock:
            return self.not_ready(
                "VMLocked", f"VM {vmid} is locked ({found.lock})", retry=5.0, status="Unknown"
            )
        return await self._converge(spec, client, found)

    async def _reassign_vmid(
        self, spec: ProxmoxVMSpec, client: ProxmoxClient, found: VmResource, claimed: list[str]
    ) -> ReconcilePass:
        """The VMID came from /cluster/nextid, which reserves nothing: objects created together
        all get the same one, and the first create wins it. A VM carrying another object's
        tag was never ours, so taking the next free VMID can leak nothing."""
        vmid = await client.next_vmid()
        self.result.status.update({"vmid": vmid, "phase": Phase.PROVISIONING.value})
        message = (
            f"VM {found.vmid} went to another object ({', '.join(claimed)}) first; "
            f"VM {vmid} will be created on {spec.node}"
        )
        return self._progress("Provisioning", message, Event("Normal", "VMIDReassigned", message))

    async def _follow_task(
        self, spec: ProxmoxVMSpec, client: ProxmoxClient, vmid: int, task: Mapping[str, Any]
    ) -> ReconcilePass | None:
        upid, action = str(task.get("upid")), str(task.get("action"))
        observed = await observe_task(client, upid)
        if observed.state is TaskState.RUNNING:
            return self._progress(_PROGRESS_REASON.get(action, "Provisioning"), f"{action} running")
        if observed.state is TaskState.UNKNOWN:
            return self.not_ready(
                "ProxmoxUnreachable", observed.exitstatus, retry=5.0, status="Unknown"
            )
        self.budget.finished(upid)
        if observed.state is TaskState.FAILED:
            self.result.status["task"] = None
            return self.not_ready(
                f"{action.capitalize()}Failed",
                f"{action} of VM {vmid} failed: {observed.exitstatus}",
                retry=backoff(3),
                stalled=True,
            )
        if action == "clone":
            # A clone carries the source's name and tags: make it ours before anything else.
            # The task stays recorded until this write succeeds, so a failed write is retried
            # instead of leaving our own clone looking foreign; it is this pass's one write.
            found = await client.find_vm(vmid)
            if found is not None:
                desired = self._desired(spec)
                settable = {k: v for k, v in desired.items() if not is_disk_key(k)}
                await client.update_config(found.node, vmid, settable)
                self.result.status["task"] = None
                return self._progress("Provisioning", f"took ownership of the clone {vmid}")
        self.result.status["task"] = None
        return None

    def _desired(self, spec: ProxmoxVMSpec) -> dict[str, str | int]:
        return desired_config(spec, self.request.name, self.request.uid)

    async def _still_to_create(self, vmid: int) -> str | None:
        """Why this pass must not create ``vmid`` after all, judged on the live object: it is
        being deleted, or another pass recorded another VMID. A create from a stale copy made
        a second VM that no status named, and the destroy released the object without it."""
        if self.request.live is None:
            return None
        try:
            live = await self.request.live()
        except Exception as exc:  # the API server is the one that could not answer
            return f"the object could not be read to confirm the create: {exc}"
        if live is None:
            return "the object is gone"
        metadata = live.get("metadata") or {}
        if metadata.get("uid") != self.request.uid:
            return "the object was replaced"
        if metadata.get("deletionTimestamp"):
            return "the object is being deleted"
        recorded = (live.get("status") or {}).get("vmid")
        if recorded != vmid:
            return f"the object now records VM {recorded}, not {vmid}"
        return None

    async def _create(self, spec: ProxmoxVMSpec, client: ProxmoxClient, vmid: int) -> ReconcilePass:
        stale = await self._still_to_create(vmid)
        if stale is not None:
            # No create. The live object's own events drive the next pass; a failed read is
            # tried again soon.
            self.result.retry_after = 5.0 if "could not be read" in stale else None
            return self.result
        clone = spec.source.clone_from if spec.source else None
        if clone is not None:
            source_node = clone.node
            if source_node is None:
                source = await client.find_vm(clone.vmid)
                if source is None:
                    return self.not_ready(
                        "SourceNotFound",
                        f"clone source VM {clone.vmid} does not exist",
                        retry=30.0,
                        stalled=True,
                    )
                source_node = source.node
            started = await self._start_task(
                client,
                source_node,
                "clone",
                lambda: client.clone_vm(
                    source_node,
                    clone.vmid,
                    vmid,
                    name=spec.name or self.request.name,
                    full=clone.full,
                    storage=clone.storage if clone.full else None,
                    target=spec.node if spec.node != source_node else None,
                ),
            )
            message = f"cloning VM {clone.vmid} to {vmid} on {spec.node}"
        else:
            desired = self._desired(spec)
            started = await self._start_task(
                client, spec.node, "create", lambda: client.create_vm(spec.node, vmid, desired)
            )
            message = f"creating VM {vmid} on {spec.node}"
        if not started:
            return self._node_busy(spec.node)
        self.result.status["phase"] = Phase.PROVISIONING.value
        return self._progress("Provisioning", message, Event("Normal", "Creating", message))

    async def _adopt(self, client: ProxmoxClient, found: VmResource) -> ReconcilePass:
        config = await client.vm_config(found.node, found.vmid)
        tags = with_ownership_tag(";".join(config.tags), self.request.uid)
        await client.update_config(found.node, found.vmid, {"tags": tags}, digest=config.digest)
        message = f"adopted VM {found.vmid} on {found.node} (spec.adopt)"
        return self._progress("Adopting", message, Event("Normal", "Adopted", message))

    async def _converge(
        self, spec: ProxmoxVMSpec, client: ProxmoxClient, found: VmResource
    ) -> ReconcilePass:
        vmid, node = found.vmid, found.node
        config = await client.vm_config(node, vmid)
        desired = self._desired(spec)
        if spec.source and spec.source.clone_from:
            desired = {k: v for k, v in desired.items() if not is_disk_key(k)}
        changes = config_changes(desired, config.values)
        if changes.set:
            await client.update_config(node, vmid, changes.set, digest=config.digest)
            keys = ", ".join(sorted(changes.set))
            return self._progress(
                "Updating", f"updated {keys}", Event("Normal", "ConfigUpdated", f"set {keys}")
            )
        current = await client.vm_status(node, vmid)
        want_running = spec.power_state is PowerState.RUNNING
        if current.running and current.qmpstatus == "paused":
            # Paused is neither state the spec can ask for; resuming is a human's call.
            self.result.status.update({"node": node, "powerState": ObservedPower.PAUSED.value})
            return self.not_ready(
                "VMPaused",
                f"VM {vmid} is paused; resume it in Proxmox or set spec.powerState",
                retry=None,
                stalled=True,
            )
        if want_running and not current.running:
            if not await self._start_task(
                client, node, "start", lambda: client.start_vm(node, vmid)
            ):
                return self._node_busy(node)
            return self._progress(
                "Starting",
                f"starting VM {vmid}",
                Event("Normal", "Starting", f"starting VM {vmid}"),
            )
        if not want_running and current.running:
            if not await self._start_task(
                client,
                node,
                "stop",
                lambda: client.shutdown_vm(node, vmid, timeout=POWER_OFF_TIMEOUT, force_stop=True),
            ):
                return self._node_busy(node)
            return self._progress(
                "Stopping",
                f"stopping VM {vmid}",
                Event("Normal", "Stopping", f"stopping VM {vmid}"),
            )
        power = ObservedPower.RUNNING if current.running else ObservedPower.STOPPED
        self.result.status.update(
            {
                "node": node,
                "powerState": power.value,
                "phase": (Phase.RUNNING if current.running else Phase.STOPPED).value,
            }
        )
        message = f"VM {vmid} on {node} matches the spec"
        pending = await client.pending_keys(node, vmid) if current.running else []
        if pending:
            # cores, memory and the like apply at the next start; say so instead of rebooting.
            message += f"; waiting for a reboot to apply: {', '.join(pending)}"
            previous = find(self.request.status.get("conditions") or [], READY)
            if previous is None or "waiting for a reboot" not in str(previous.get("message")):
                self.result.events.append(
                    Event("Normal", "RebootRequired", f"a reboot applies {', '.join(pending)}")
                )
        if changes.unsupported:
            message += (
                f"; cannot change in place (left as they are): {', '.join(changes.unsupported)}"
            )
        if client.settings.insecure_skip_tls_verify:
            message += "; TLS is not verified (the Secret sets insecureSkipTLSVerify)"
            previous = find(self.request.status.get("conditions") or [], READY)
            if previous is None or previous.get("status") != "True":
                self.result.events.append(
                    Event(
                        "Warning",
                        "InsecureTLS",
                        f"the Secret {self.request.namespace}/{spec.connection_ref.name} sets "
                        "insecureSkipTLSVerify: Proxmox VE's certificate is not checked; set "
                        "caCert instead",
                    )
                )
        self._ready(Progress.READY, "True", "Reconciled", message)
        return self.result


_PROGRESS_REASON = {
    "create": "Provisioning",
    "clone": "Provisioning",
    "start": "Starting",
    "stop": "Stopping",
}
