"""The operator killed (SIGKILL) in the middle of a destroy resumes from status.destroy.

What survives a crash is the object's status alone. The restarted operator must pick the
destroy up where it was: follow the recorded task instead of calling again, and keep the
graceful-wait deadline that was persisted (`startedAt + shutdownTimeoutSeconds`), not start a
new one. Each of status/shutdown, status/stop and DELETE reaches the VM at most once.

The simulated clock is frozen (destroy_helpers.FROZEN) while the operator is down and coming
back, so the task the operator recorded is still in flight when it returns; the test lets the
clock run again once it has seen the restarted operator look at that task.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from proxmox_vm_operator.simulator import GuestBehaviour, Timings

from .destroy_helpers import (
    FAST,
    FROZEN,
    assert_held,
    create_running,
    destroy_record,
    destructive_counts,
    event_reasons,
    stops,
    task_polls,
    wait_gone,
    wait_record,
)
from .harness import Cluster, dig

VMID = 123
GRACE = 6


def _recorded_task(cluster: Cluster, step: str, task_type: str) -> dict[str, Any]:
    return wait_record(
        cluster,
        "web-1",
        lambda r: r.get("step") == step and f":{task_type}:" in r.get("taskUpid", ""),
        timeout=10,
        what=f"a {task_type} task in status ({step})",
    )


def _crash_and_restart(cluster: Cluster, upid: str, down_for: float) -> None:
    """SIGKILL the operator, keep it down, start it; wait until it has looked at ``upid``."""
    assert cluster.operator.kill() == -9
    held = assert_held(cluster, "web-1", down_for)
    assert dig(held, "status.destroy.taskUpid") == upid
    seen, calls = task_polls(cluster, upid), destructive_counts(cluster, VMID)
    cluster.operator.start()
    cluster.wait_for(
        lambda: task_polls(cluster, upid) > seen or destructive_counts(cluster, VMID) != calls,
        timeout=15,
        what="the restarted operator following the recorded task (or calling again)",
    )


def test_a_crash_during_the_graceful_wait_keeps_the_persisted_deadline(cluster: Cluster) -> None:
    spec = {"vmid": VMID, "destroy": {"mode": "Shutdown", "shutdownTimeoutSeconds": GRACE}}
    create_running(cluster, "web-1", spec)
    cluster.sim.set_guest(VMID, GuestBehaviour(obeys_acpi=False))
    cluster.sim.set_time_scale(FROZEN)

    deleted_at = time.monotonic()
    cluster.delete_vm("web-1")
    before = _recorded_task(cluster, "WaitingForShutdown", "qmshutdown")

    # Down for 2.5 s, so a deadline counted from the restart would come about 3 s late.
    cluster.operator.kill()
    assert_held(cluster, "web-1", 2.5)
    calls_before = len(cluster.sim.requests)
    cluster.operator.start()
    # From its first look at Proxmox: on a loaded machine kopf may take seconds to get there.
    cluster.wait_for(
        lambda: len(cluster.sim.requests) > calls_before,
        timeout=30,
        what="the restarted operator's first Proxmox call",
    )
    restarted_at = time.monotonic()

    cluster.wait_for(lambda: stops(cluster, VMID), timeout=15, what="the forced stop")
    stopped_at = time.monotonic()
    assert destructive_counts(cluster, VMID) == {"shutdown": 1, "stop": 1, "delete": 0}
    assert stopped_at - deleted_at >= GRACE - 1.5, "forced before the persisted deadline"
    assert stopped_at - restarted_at < GRACE - 1.5, "the deadline was counted from the restart"
    after = destroy_record(cluster, "web-1")
    assert (after["startedAt"], after["shutdownDeadline"]) == (
        before["startedAt"],
        before["shutdownDeadline"],
    )

    cluster.sim.set_time_scale(FAST)
    wait_gone(cluster, "web-1", timeout=15)
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 1, "stop": 1, "delete": 1}
    reasons = event_reasons(cluster, "web-1")
    assert reasons.count(("Normal", "ShuttingDown")) == 1, reasons
    assert reasons.count(("Warning", "ShutdownTimedOut")) == 1, reasons


def test_a_crash_right_after_the_stop_task_started_does_not_stop_again(cluster: Cluster) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    cluster.sim.set_guest(VMID, GuestBehaviour(obeys_acpi=False))
    cluster.sim.set_time_scale(FROZEN)  # the stop task stays in flight

    cluster.delete_vm("web-1")
    record = _recorded_task(cluster, "Stopping", "qmstop")
    _crash_and_restart(cluster, str(record["taskUpid"]), down_for=1.0)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 0}
    assert destroy_record(cluster, "web-1")["startedAt"] == record["startedAt"]

    cluster.sim.set_time_scale(FAST)
    wait_gone(cluster, "web-1", timeout=15)
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
    assert event_reasons(cluster, "web-1").count(("Normal", "Stopping")) == 1


@pytest.mark.sandbox(simulator={"timings": Timings(destroy=200)})  # 10 s at time scale 20
# 200 simulated seconds, 10 s at the sandbox's time scale: the DELETE is in flight a while.
@pytest.mark.sandbox(simulator={"timings": Timings(destroy=200)})
def test_a_crash_while_the_delete_task_runs_does_not_delete_again(cluster: Cluster) -> None:
    """The pass that sent the DELETE followed its task without writing it to the status (a
    write per step would cost every destroy). The restarted operator finds the task in the
    node's list of running tasks and follows it instead of sending a second DELETE, which
    would queue behind the first on the VM's lock."""
    create_running(cluster, "web-1", {"vmid": VMID})

    cluster.delete_vm("web-1")
    cluster.wait_for(
        lambda: destructive_counts(cluster, VMID)["delete"] == 1, timeout=10, what="the DELETE"
    )
    cluster.sim.set_time_scale(FROZEN)
    assert cluster.operator.kill() == -9
    assert_held(cluster, "web-1", 1.0)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
    assert cluster.sim.vm_exists(VMID)  # Proxmox is still deleting it

    cluster.operator.start()
    cluster.sim.set_time_scale(1000)
    wait_gone(cluster, "web-1", timeout=15)
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
    assert event_reasons(cluster, "web-1").count(("Normal", "DeletingVM")) == 1
