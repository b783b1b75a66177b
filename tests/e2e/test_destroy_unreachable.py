"""Proxmox unreachable in the middle of a destroy: never taken for "the VM is gone".

The object keeps its finalizer (deletionTimestamp set) for as long as Proxmox does not answer,
status.destroy.lastError says why, DeletionStalled turns True with reason ProxmoxUnreachable
once --stall-after has passed (2 s here instead of the harness's 30), and once Proxmox is back
the destroy finishes without repeating a call.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest

from proxmox_vm_operator.simulator import GuestBehaviour

from .destroy_helpers import (
    FAST,
    FROZEN,
    assert_held,
    condition,
    condition_is,
    create_running,
    destructive_counts,
    stops,
    task_polls,
    wait_gone,
    wait_record,
    wait_vm,
)
from .harness import Cluster, dig

VMID = 122
STALL_AFTER = 2

pytestmark = pytest.mark.sandbox(stall_after=STALL_AFTER)


def _stalled_unreachable(cluster: Cluster) -> dict[str, Any]:
    return wait_vm(
        cluster,
        "web-1",
        lambda v: condition_is(v, "DeletionStalled", "True", "ProxmoxUnreachable"),
        timeout=15,
        what="DeletionStalled=True ProxmoxUnreachable",
    )


def _epoch(timestamp: str) -> int:
    return calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


def _says_unreachable(error: str) -> bool:
    return "connection" in error.lower() and ("refused" in error or "aborted" in error)


@pytest.mark.parametrize("cut", ["refuse", "reset"])
def test_proxmox_unreachable_holds_the_object_then_the_destroy_finishes(
    cluster: Cluster, cut: str
) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    cluster.delete_vm("web-1")
    cluster.sim.make_unreachable(cut)  # connections refused, or reset by the peer
    cut_at = len(cluster.sim.requests)

    # Held, with the reason in status, for several seconds...
    held = assert_held(cluster, "web-1", 3.5)
    assert dig(held, "status.phase") == "Deleting"
    assert _says_unreachable(dig(held, "status.destroy.lastError", "")), held["status"]
    # ...and reported stalled, but only once --stall-after had passed.
    vm = _stalled_unreachable(cluster)
    stalled = condition(vm, "DeletionStalled")
    assert stalled is not None and _says_unreachable(stalled["message"]), stalled
    since = _epoch(stalled["lastTransitionTime"]) - _epoch(dig(vm, "status.destroy.startedAt"))
    assert since >= STALL_AFTER, f"stalled {since} s after the destroy started"
    assert cluster.sim.requests[cut_at:] == []  # nothing got through
    assert cluster.sim.vm_exists(VMID)

    cluster.sim.restore()
    wait_gone(cluster, "web-1", timeout=20)
    assert not cluster.sim.vm_exists(VMID)
    # The stop may have gone out before the cut; either way each call went out once.
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}


def test_proxmox_lost_during_a_graceful_wait_keeps_the_object_and_the_deadline(
    cluster: Cluster,
) -> None:
    spec = {"vmid": VMID, "destroy": {"mode": "Shutdown", "shutdownTimeoutSeconds": 6}}
    create_running(cluster, "web-1", spec)
    cluster.sim.set_guest(VMID, GuestBehaviour(obeys_acpi=False))
    cluster.sim.set_time_scale(FROZEN)  # the qmshutdown task cannot time out by itself

    cluster.delete_vm("web-1")
    record = wait_record(
        cluster,
        "web-1",
        lambda r: r.get("step") == "WaitingForShutdown",
        timeout=10,
        what="the graceful wait",
    )
    upid = str(record["taskUpid"])
    cluster.wait_for(lambda: task_polls(cluster, upid), timeout=10, what="a look at the task")
    cluster.sim.make_unreachable("refuse")  # in the middle of the 6 s graceful wait

    _stalled_unreachable(cluster)
    held = assert_held(cluster, "web-1", 1.0)
    record = dig(held, "status.destroy")
    assert record["step"] == "WaitingForShutdown" and record["mode"] == "Shutdown"
    assert record["taskUpid"] == upid
    assert _says_unreachable(record["lastError"]), record
    assert destructive_counts(cluster, VMID) == {"shutdown": 1, "stop": 0, "delete": 0}

    cluster.sim.restore()
    # The deadline passed while the operator could not look: the forced stop follows.
    cluster.wait_for(lambda: stops(cluster, VMID), timeout=15, what="the forced stop")
    (stop,) = stops(cluster, VMID)
    assert stop.params == {"overrule-shutdown": "1"}
    vm = wait_vm(
        cluster,
        "web-1",
        lambda v: dig(v, "status.destroy.fallbackUsed") is True,
        timeout=10,
        what="fallbackUsed after the outage",
    )
    assert condition_is(vm, "DeletionStalled", "False", "Progressing"), vm["status"]
    cluster.sim.set_time_scale(FAST)
    wait_gone(cluster, "web-1", timeout=15)
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 1, "stop": 1, "delete": 1}
