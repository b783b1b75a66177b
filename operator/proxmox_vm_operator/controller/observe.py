"""Turn Proxmox answers into the domain's observations, never mistaking an error for absence."""

from __future__ import annotations

import math
import time

from .. import metrics
from ..domain.destroy import (
    StallReason,
    TaskObservation,
    TaskState,
    VMAbsent,
    VMObservation,
    VMPresent,
    VMUnreachable,
)
from ..proxmox import (
    ErrorKind,
    ProxmoxClient,
    ProxmoxError,
    TaskStatus,
    VmResource,
    match_message,
    parse_upid,
)


async def locate_vm(
    client: ProxmoxClient, vmid: int, *, max_age: float, asked_after: float | None = None
) -> VmResource | None:
    """Where the cluster listing puts the VM. A listing up to ``max_age`` seconds old (shared
    by every object on the connection) answers where it is, and what tags it has, unless it
    predates ``asked_after`` (our own change, which it would not show); only one asked after
    this call began may say it is missing, since the VM may have been made since."""
    began = client.monotonic()
    found = await client.find_vm(vmid, max_age=max_age, asked_after=asked_after)
    if found is None and max_age > 0:
        found = await client.find_vm(vmid, max_age=math.inf, asked_after=began)
    return found


async def observe_vm(
    client: ProxmoxClient, vmid: int, last_node: str | None, *, max_age: float = 0.0
) -> VMObservation:
    """Look the VM up. Absence needs proof: a per-VM lookup on the node it was last known on
    answers that its configuration does not exist, *and* a cluster listing asked during this
    lookup lacks it (the VM may have moved). The listing alone proves nothing: Proxmox
    silently leaves out every VM the token may not audit (pve-manager PVE/API2/Cluster.pm
    resources), where per-VM calls answer 403. ``max_age``: how old a listing may be that
    only says where the VM is."""
    began = client.monotonic()
    try:
        found = await client.find_vm(vmid, max_age=max_age)
        node = found.node if found is not None else last_node
        if node is None:
            found = await client.find_vm(vmid, max_age=math.inf, asked_after=began)
            if found is None:
                return VMUnreachable(
                    f"VM {vmid} is not listed, and no node is known to prove it absent on"
                )
            node = found.node
        try:
            status = await client.vm_status(node, vmid)
        except ProxmoxError as exc:
            if exc.kind is not ErrorKind.ABSENT:
                raise
            again = await client.find_vm(vmid, max_age=math.inf, asked_after=began)
            if again is None:
                return VMAbsent()
            if again.node == node:
                raise
            # It moved since the listing we went by: look where it is now.
            node = again.node
            status = await client.vm_status(node, vmid)
        config = await client.vm_config(node, vmid)
    except ProxmoxError as exc:
        return _unreachable(vmid, exc)
    return VMPresent(
        node=node,
        tags=frozenset(config.tags),
        running=status.running,
        lock=config.lock,
        protected=config.protected,
        ha_managed=status.ha_managed,
    )


def _unreachable(vmid: int, exc: ProxmoxError) -> VMUnreachable:
    if exc.kind is ErrorKind.FORBIDDEN:
        return VMUnreachable(exc.message, StallReason.PERMISSION_DENIED)
    if exc.kind is ErrorKind.ABSENT:
        # Listed a moment ago, gone from its node now (moved or being deleted): look again.
        return VMUnreachable(f"VM {vmid} changed during the lookup: {exc.message}")
    return VMUnreachable(exc.message)


def _record_duration(upid: str, ok: bool) -> None:
    """proxmox_task_duration_seconds: from the start in the UPID to when we saw it end."""
    try:
        started = parse_upid(upid)
    except ValueError:
        return
    metrics.observe_task(started.type, ok, time.time() - started.starttime)


async def observe_task(client: ProxmoxClient, upid: str) -> TaskObservation:
    try:
        task = await client.task_status(upid)
    except ProxmoxError as exc:
        return task_failure(exc)
    return task_observation(upid, task)


def task_failure(exc: ProxmoxError) -> TaskObservation:
    """The task's status could not be read."""
    if exc.kind is ErrorKind.REJECTED:
        # Proxmox no longer knows the task (e.g. its node was reinstalled): count it as
        # failed so the step is retried with a new, idempotent call.
        return TaskObservation(TaskState.FAILED, f"task status unavailable: {exc.message}")
    if exc.kind is ErrorKind.FORBIDDEN:
        return TaskObservation(TaskState.UNKNOWN, exc.message, reason=StallReason.PERMISSION_DENIED)
    return TaskObservation(TaskState.UNKNOWN, exc.message)


def task_observation(upid: str, task: TaskStatus) -> TaskObservation:
    if task.running:
        return TaskObservation(TaskState.RUNNING)
    _record_duration(upid, task.ok)
    if task.ok:
        return TaskObservation(TaskState.SUCCEEDED, task.exitstatus or "OK")
    exitstatus = task.exitstatus or "unexpected status"
    matched = match_message(exitstatus)
    locked = matched is not None and matched[0] is ErrorKind.LOCKED
    return TaskObservation(TaskState.FAILED, exitstatus, failed_on_lock=locked)
