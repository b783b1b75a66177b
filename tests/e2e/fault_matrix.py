"""The destroy fault matrix: one row per way Proxmox, Kubernetes or the operator itself lets a
destroy down, each run end to end (the operator as a process, the emulator, real kubectl, the
simulator) and held to the same five promises:

1. the object keeps its finalizer while the fault holds, and is released only once the VM is
   gone (proven absent; the VM never reappears);
2. nothing leaks: no VM with the object's ownership tag is left;
3. no second DELETE is accepted while the first one's task runs (rows whose delete task
   fails expect exactly one more);
4. the stall condition names the cause (DeletionStalled=True with the row's reason);
5. recovery: once the fault clears, the destroy ends within ``RECOVERY_SECONDS``.

The simulator runs as a process of its own, steered through its HTTP control endpoint, as a
simulator in its own pod would be. A row is data: what to break, when (before the delete, or
once the destroy reaches a step), how to mend it, and what the user must see meanwhile.
Set ``FAULT_MATRIX_REPORT`` to a file path to have each row append its measured times there
(the table in docs/fault-matrix.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxmox_vm_operator.simulator.api import RecordedRequest

from .destroy_helpers import (
    FROZEN,
    assert_held,
    condition,
    create_running,
    deletes,
    wait_gone,
    wait_record,
    wait_vm,
)
from .harness import Cluster, dig

# Every wait of a failing destroy is capped at 15 s (domain.destroy.DESTROY_RETRY_CAP): the
# next pass after a fault clears comes within that, plus a pass and the emulator's latency.
RECOVERY_SECONDS = 20.0
STALL_AFTER = 2.0
NAME = "web-1"

Action = Callable[[Cluster, int], None]


@dataclass(frozen=True)
class Row:
    name: str
    break_: Action
    mend: Action
    stall: str  # the DeletionStalled reason while the fault holds
    at_step: str | None = None  # break once status.destroy.step is this; None: before delete
    running: bool = True  # the VM runs when the delete starts
    # DELETEs Proxmox accepts; None where each retry of a failing delete task is one more
    # (then no DELETE may have queued behind a running one: none failed on the VM's lock).
    accepted_deletes: int | None = 1
    hold_seconds: float = 1.0  # how long to watch the object held once the stall shows
    stall_timeout: float = 20.0
    # The fault blocks only the proof of absence: the cluster listing, which the lookups
    # before it take from a listing kept a few seconds. The VM may go meanwhile; the object
    # is held all the same until a listing shows it gone.
    blocks_only_the_proof: bool = False


@dataclass(frozen=True)
class Measured:
    row: str
    stalled_after: float  # from the delete to DeletionStalled=True with the row's reason
    recovered_after: float  # from the mend to the object gone


def ownership_tag(cluster: Cluster, name: str = NAME) -> str:
    vm = cluster.get_vm(name)
    assert vm is not None
    return f"vmop-{vm['metadata']['uid']}"


def accepted(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [r for r in requests if r.status == 200]


def stalled_with(vm: dict[str, Any] | None, reason: str) -> bool:
    found = condition(vm, "DeletionStalled")
    return found is not None and (found["status"], found["reason"]) == ("True", reason)


def run_row(cluster: Cluster, row: Row, vmid: int) -> Measured:
    create_running(cluster, NAME, {"vmid": vmid})
    tag = ownership_tag(cluster)
    if not row.running:
        cluster.kubectl("patch", "proxmoxvm", NAME, "--type=merge", "-p",
                        '{"spec":{"powerState":"Stopped"}}')  # fmt: skip
        wait_vm(cluster, NAME, lambda v: dig(v, "status.powerState") == "Stopped",
                timeout=20, what="the VM stopped")  # fmt: skip
    if row.at_step is None:
        row.break_(cluster, vmid)
    else:
        # Hold the simulated clock while the destroy reaches the step, so the fault lands
        # while the step's task is still in flight however slow this machine is.
        cluster.sim.set_time_scale(FROZEN)
    deleted_at = time.monotonic()
    cluster.delete_vm(NAME)
    if row.at_step is not None:
        wait_record(cluster, NAME, lambda r: r.get("step") == row.at_step, timeout=20,
                    what=f"the destroy at {row.at_step}")  # fmt: skip
        row.break_(cluster, vmid)
        cluster.sim.set_time_scale(cluster.options.time_scale)

    wait_vm(cluster, NAME, lambda v: stalled_with(v, row.stall), timeout=row.stall_timeout,
            what=f"DeletionStalled={row.stall}")  # fmt: skip
    stalled_after = time.monotonic() - deleted_at
    # Promise 1: held while the fault holds, and the VM is still there.
    assert_held(cluster, NAME, row.hold_seconds)
    if not row.blocks_only_the_proof:
        assert cluster.sim.vm_exists(vmid), "the VM went while the fault held"

    row.mend(cluster, vmid)
    mended_at = time.monotonic()
    wait_gone(cluster, NAME, timeout=RECOVERY_SECONDS + 5)
    recovered_after = time.monotonic() - mended_at

    # Promise 1 and 2: gone, and nothing with our tag anywhere.
    assert not cluster.sim.vm_exists(vmid)
    leftovers = cluster.sim.vm_ids(tag=tag)
    assert not leftovers, f"VMs left with {tag}: {leftovers}"
    # Promise 3.
    sent = [(r.method, r.path, r.status) for r in deletes(cluster, vmid)]
    if row.accepted_deletes is not None:
        assert len(accepted(deletes(cluster, vmid))) == row.accepted_deletes, sent
    queued = [
        t for t in cluster.sim.tasks()
        if t.get("type") == "qmdestroy" and "got timeout" in str(t.get("exitstatus"))
    ]  # fmt: skip
    assert not queued, f"a DELETE queued behind another: {queued}; {sent}"
    # Promise 5.
    assert recovered_after <= RECOVERY_SECONDS, f"recovered after {recovered_after:.1f} s"
    measured = Measured(row.name, round(stalled_after, 1), round(recovered_after, 1))
    _report(measured)
    return measured


def _report(measured: Measured) -> None:
    path = os.environ.get("FAULT_MATRIX_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as report:
            report.write(json.dumps(measured.__dict__) + "\n")


# ---------------------------------------------------------------------------- faults


def fail_calls(path: str, method: str, status: int = 500) -> Action:
    def inject(cluster: Cluster, vmid: int) -> None:
        cluster.sim.fail_next(path.format(vmid=vmid), method=method, status=status, times=10_000)

    return inject


def clear_faults(cluster: Cluster, vmid: int) -> None:
    cluster.sim.clear_faults()


def fail_tasks(task_type: str, message: str) -> Action:
    def inject(cluster: Cluster, vmid: int) -> None:
        cluster.sim.fail_task(task_type, vmid=vmid, times=10_000, message=message)

    return inject


def cut_off(mode: str) -> Action:
    def inject(cluster: Cluster, vmid: int) -> None:
        cluster.sim.make_unreachable(mode)

    return inject


def reconnect(cluster: Cluster, vmid: int) -> None:
    cluster.sim.restore()


def revoke_token(cluster: Cluster, vmid: int) -> None:
    """The token's secret changes in Proxmox (rotated, or the token deleted): 401."""
    cluster.sim.set_token(cluster.token_id, "rotated")


def restore_token(cluster: Cluster, vmid: int) -> None:
    cluster.sim.set_token(cluster.token_id, cluster.token_secret)


def hold_vm_lock(cluster: Cluster, vmid: int) -> None:
    """Another client's task holds the VM's lock file for 100 s (5 s here at time scale 20):
    our stop task waits 10 s for it and fails with PVE's everyday lock timeout."""
    cluster.sim.hold_flock(vmid, 100)


def let_it_finish(cluster: Cluster, vmid: int) -> None:
    """Nothing to mend: the other task ends on its own."""


def lock(kind: str) -> Action:
    def inject(cluster: Cluster, vmid: int) -> None:
        cluster.sim.set_lock(vmid, kind)

    return inject


def unlock(cluster: Cluster, vmid: int) -> None:
    cluster.sim.set_lock(vmid, None)


def protect(cluster: Cluster, vmid: int) -> None:
    cluster.sim.set_protection(vmid, True)


def unprotect(cluster: Cluster, vmid: int) -> None:
    cluster.sim.set_protection(vmid, False)


def delete_secret(cluster: Cluster, vmid: int) -> None:
    cluster.kubectl("delete", "secret", cluster.secret_name)


def restore_secret(cluster: Cluster, vmid: int) -> None:
    cluster.kubectl("apply", "-f", "-", input=cluster._namespace_and_secret())


def deny(privilege: str) -> Action:
    """The token loses ``privilege`` on the VM: privilege separation on, and the token granted
    only the rest of what a destroy needs (a user-granted ACL keeps the user able to)."""

    def inject(cluster: Cluster, vmid: int) -> None:
        needed = {"VM.Audit", "VM.PowerMgmt", "VM.Allocate"}
        cluster.sim.set_privsep(cluster.token_id, True)
        cluster.sim.grant(cluster.token_id, "/vms", sorted(needed - {privilege}))
        cluster.sim.grant(cluster.token_id, "/nodes", ["Sys.Audit"])

    return inject


def allow_all(cluster: Cluster, vmid: int) -> None:
    cluster.sim.set_privsep(cluster.token_id, False)


VM_PATH = r"^/nodes/[^/]+/qemu/{vmid}"
LOCK_TIMEOUT = "can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"

ROWS: dict[str, Row] = {
    row.name: row
    for row in (
        # Calls refused by Proxmox (an unrecognised 500 proves nothing: ProxmoxUnreachable).
        Row("500 on stop", fail_calls(VM_PATH + "/status/stop$", "POST"), clear_faults,
            "ProxmoxUnreachable"),
        Row("500 on DELETE", fail_calls(VM_PATH + "$", "DELETE"), clear_faults,
            "ProxmoxUnreachable", running=False),
        Row("500 on the lookup", fail_calls(r"^/cluster/resources$", "GET"), clear_faults,
            "ProxmoxUnreachable", blocks_only_the_proof=True),
        Row("500 on the task poll", fail_calls(r"/tasks/[^/]+/status$", "GET"), clear_faults,
            "ProxmoxUnreachable"),
        Row("595 on the lookup", fail_calls(r"^/cluster/resources$", "GET", 595), clear_faults,
            "ProxmoxUnreachable", blocks_only_the_proof=True),
        Row("401: token rotated", revoke_token, restore_token, "ProxmoxUnreachable"),
        # Outages.
        Row("outage: connection refused", cut_off("refuse"), reconnect, "ProxmoxUnreachable"),
        Row("outage: connection reset", cut_off("reset"), reconnect, "ProxmoxUnreachable"),
        # Tasks that fail.
        Row("failing stop task", fail_tasks("qmstop", "unable to stop VM: simulated"),
            clear_faults, "TaskFailed"),
        Row("failing delete task", fail_tasks("qmdestroy", "storage 'local-lvm' is not online"),
            clear_faults, "TaskFailed", running=False, accepted_deletes=None),
        Row("lock timeout: another task holds the VM's lock", hold_vm_lock, let_it_finish,
            "VMLocked"),
        # Locks and protection appearing mid-destroy, and the credentials going away.
        Row("backup lock appears mid-destroy", lock("backup"), unlock, "VMLocked",
            at_step="Stopping"),
        Row("protection appears mid-destroy", protect, unprotect, "Protected",
            at_step="Stopping"),
        Row("Secret deleted and restored", delete_secret, restore_secret, "ProxmoxUnreachable"),
        # Privileges: a 403 is never "VM gone". Without VM.Audit the VM is not even listed.
        Row("403: no VM.Audit", deny("VM.Audit"), allow_all, "PermissionDenied"),
        Row("403: no VM.PowerMgmt", deny("VM.PowerMgmt"), allow_all, "PermissionDenied"),
        Row("403: no VM.Allocate", deny("VM.Allocate"), allow_all, "PermissionDenied"),
    )
}  # fmt: skip
