"""Fault matrix, the operator itself: SIGKILL and restart at each step of a destroy and in the
middle of a create (the object deleted while the operator is down), and objects deleted while
their create tasks run, whose task slots must free as soon as Proxmox says the tasks ended.

The simulated clock is frozen while the operator is down, so the task it was following is
still in flight when it comes back, however slow the machine.
"""

from __future__ import annotations

import re
import time

import pytest

from .destroy_helpers import (
    FROZEN,
    create_running,
    deletes,
    event_reasons,
    stops,
    wait_gone,
    wait_record,
    wait_vm,
)
from .fault_matrix import STALL_AFTER, accepted
from .harness import Cluster, dig

pytestmark = pytest.mark.sandbox(stall_after=STALL_AFTER, simulator_process=True)

CREATE = re.compile(r"^/nodes/[^/]+/qemu$")


def _creates(cluster: Cluster) -> list[int]:
    return [
        int(r.params["vmid"])
        for r in cluster.sim.requests
        if r.method == "POST" and CREATE.match(r.path) and r.status == 200
    ]


def _kill_restart(cluster: Cluster, down_for: float = 1.0) -> None:
    assert cluster.operator.kill() == -9
    time.sleep(down_for)  # the operator is away; nothing to await
    cluster.operator.start()


@pytest.mark.parametrize(
    ("step", "task", "running"),
    [("Stopping", "qmstop", True), ("DeletingVM", "qmdestroy", False)],
)
def test_sigkill_while_a_destroy_task_runs_resumes_it_without_a_second_call(
    cluster: Cluster, step: str, task: str, running: bool
) -> None:
    vmid = 311
    create_running(cluster, "web-1", {"vmid": vmid})
    if not running:
        cluster.kubectl("patch", "proxmoxvm", "web-1", "--type=merge", "-p",
                        '{"spec":{"powerState":"Stopped"}}')  # fmt: skip
        wait_vm(cluster, "web-1", lambda v: dig(v, "status.powerState") == "Stopped",
                timeout=20, what="stopped")  # fmt: skip
    cluster.sim.set_time_scale(FROZEN)
    cluster.delete_vm("web-1")
    wait_record(cluster, "web-1",
                lambda r: r.get("step") == step and f":{task}:" in (r.get("taskUpid") or ""),
                timeout=20, what=f"{task} recorded")  # fmt: skip

    _kill_restart(cluster)
    cluster.sim.set_time_scale(cluster.options.time_scale)
    wait_gone(cluster, "web-1", timeout=30)

    assert not cluster.sim.vm_exists(vmid)
    assert len(accepted(stops(cluster, vmid))) == (1 if running else 0)
    assert len(accepted(deletes(cluster, vmid))) == 1


def test_sigkill_mid_create_with_the_object_deleted_while_down_leaks_nothing(
    cluster: Cluster,
) -> None:
    """The VM sits under "lock: create" without tags when the operator comes back and finds
    its object being deleted: it is waited for, then destroyed; never judged NotOwned."""
    cluster.sim.set_time_scale(FROZEN)
    cluster.apply_vm("web-1", {"vmid": 312})
    cluster.wait_for(lambda: 312 in _creates(cluster), timeout=20, what="the create call")
    assert cluster.operator.kill() == -9
    cluster.delete_vm("web-1")
    cluster.operator.start()
    cluster.sim.set_time_scale(cluster.options.time_scale)

    wait_gone(cluster, "web-1", timeout=40)

    assert not cluster.sim.vm_exists(312)
    assert len(accepted(deletes(cluster, 312))) == 1
    assert ("Warning", "NotOwned") not in event_reasons(cluster, "web-1")


@pytest.mark.sandbox(
    operator_args=("--max-tasks-per-node", "2"), stall_after=STALL_AFTER, simulator_process=True
)
def test_objects_deleted_during_their_create_tasks_free_the_nodes_task_slots(
    cluster: Cluster,
) -> None:
    """Slots follow what Proxmox lists as running on the node: the deleted objects never look
    at their create tasks again, and slots that waited for them froze the node for an hour."""
    cluster.sim.set_time_scale(FROZEN)
    for name, vmid in (("a", 321), ("b", 322)):
        cluster.apply_vm(name, {"vmid": vmid})
    cluster.wait_for(lambda: {321, 322} <= set(_creates(cluster)), timeout=20,
                     what="both creates in flight")  # fmt: skip
    for name in ("a", "b"):
        cluster.delete_vm(name)
    cluster.sim.set_time_scale(cluster.options.time_scale)  # the creates end now

    cluster.apply_vm("c", {"vmid": 323})
    cluster.wait_for(lambda: 323 in _creates(cluster), timeout=15,
                     what="the third object's create, with the node's slots free")  # fmt: skip
    for name in ("a", "b"):
        wait_gone(cluster, name, timeout=40)
    assert not cluster.sim.vm_exists(321) and not cluster.sim.vm_exists(322)
    assert cluster.sim.max_tasks_running()["pve1"] <= 2
