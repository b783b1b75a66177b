"""Turn Proxmox answers into the domain's observations, never mistaking an error for absence."""

from __future__ import annotations

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
from ..proxmox import ErrorKind, ProxmoxClient, ProxmoxError, match_message, parse_upid


async def observe_vm(client: ProxmoxClient, vmid: int, last_node: str | None) -> VMObservation:
    """Look the VM up. Absence needs proof: the cluster listing lacks it *and* a per-VM lookup
    on the node it was last known on answers that its configuration does not exist. The
    listing alone proves nothing: Proxmox silently leaves out every VM the token may not
    audit (pve-manager PVE/API2/Cluster.pm resources), where per-VM calls answer 403."""
    try:
        found = await client.find_vm(vmid)
        node = found.node if found is not None else last_node
        if node is None:
            return VMUnreachable(
                f"VM {vmid} is not listed, and no node is known to prove it absent on"
            )
        try:
            status = await client.vm_status(node, vmid)
        except ProxmoxError as exc:
            if exc.kind is ErrorKind.ABSENT and found is None:
                return VMAbsent()
            raise
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
        if exc.kind is ErrorKind.REJECTED:
            # Proxmox no longer knows the task (e.g. its node was reinstalled): count it as
            # failed so the step is retried with a new, idempotent call.
            return TaskObservation(TaskState.FAILED, f"task status unavailable: {exc.message}")
        if exc.kind is ErrorKind.FORBIDDEN:
            return TaskObservation(
                TaskState.UNKNOWN, exc.message, reason=StallReason.PERMISSION_DENIED
            )
        return TaskObservation(TaskState.UNKNOWN, exc.message)
    if task.running:
        return TaskObservation(TaskState.RUNNING)
    _record_duration(upid, task.ok)
    if task.ok:
        return TaskObservation(TaskState.SUCCEEDED, task.exitstatus or "OK")
    exitstatus = task.exitstatus or "unexpected status"
    matched = match_message(exitstatus)
    locked = matched is not None and matched[0] is ErrorKind.LOCKED
    return TaskObservation(TaskState.FAILED, exitstatus, failed_on_lock=locked)
