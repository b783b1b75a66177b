"""Many objects created and deleted at once, with `--max-tasks-per-node 2`: every object gets
there with one call of each kind (no double work), and never more Proxmox tasks than the limit
are in flight on a node at once."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.simulator import Timings

from .harness import Cluster, dig
from .lifecycle_helpers import writes

COUNT = 6
LIMIT = 2
NAMES = [f"vm-{i}" for i in range(COUNT)]
VMIDS = [800 + i for i in range(COUNT)]
# Tasks long enough (1 s real at time_scale 20) that, without the limit, they would overlap.
SLOW = Timings(create=20, start=20, stop=20, destroy=20)
# The calls that start a task: create, start, stop and DELETE.
TASK_CALLS = r"(/qemu|/qemu/\d+|/status/(start|stop|shutdown))$"

pytestmark = pytest.mark.sandbox(
    operator_args=("--max-tasks-per-node", str(LIMIT)), simulator={"timings": SLOW}
)


def all_running(cluster: Cluster) -> bool:
    vms = cluster.list_vms()
    return len(vms) == COUNT and all(
        dig(vm, "status.phase") == "Running" and dig(vm, "status.powerState") == "Running"
        for vm in vms
    )


def create_all_then_delete_all(cluster: Cluster) -> tuple[int, int]:
    """Apply COUNT objects in one kubectl call, wait, delete them all; the two task peaks."""
    cluster.apply(*(cluster.vm_manifest(n, {"vmid": v}) for n, v in zip(NAMES, VMIDS, strict=True)))
    cluster.wait_for(lambda: all_running(cluster), timeout=90, what="all VMs running")
    assert all(cluster.sim.vm(v)["running"] for v in VMIDS)  # type: ignore[index]
    created_peak = cluster.sim.max_tasks_running()["pve1"]

    cluster.kubectl("delete", "pvm", "--all", "--wait=false")
    cluster.wait_for(lambda: cluster.list_vms() == [], timeout=90, what="all objects released")
    assert not any(cluster.sim.vm_exists(v) for v in VMIDS)
    assert cluster.sim.max_tasks_running()["pve2"] == 0
    return created_peak, cluster.sim.max_tasks_running()["pve1"]


def test_many_objects_at_once_all_get_there_without_double_work(cluster: Cluster) -> None:
    create_all_then_delete_all(cluster)
    # Each VM: exactly one create, one start, one stop and one delete.
    for vmid in VMIDS:
        kinds = sorted(
            r.path.rsplit("/", 1)[-1] if "/status/" in r.path else r.method
            for r in writes(cluster, vmid)
            if not r.path.endswith("/config")
        )
        assert kinds == ["DELETE", "POST", "start", "stop"], (vmid, kinds)
        assert all(r.status == 200 for r in writes(cluster, vmid))


def test_creating_many_objects_at_once_respects_the_per_node_task_limit(
    cluster: Cluster,
) -> None:
    cluster.sim.set_latency(10, path=TASK_CALLS)  # 10 simulated s = 0.5 s per task call
    cluster.apply(*(cluster.vm_manifest(n, {"vmid": v}) for n, v in zip(NAMES, VMIDS, strict=True)))
    cluster.wait_for(lambda: all_running(cluster), timeout=90, what="all VMs running")
    peak = cluster.sim.max_tasks_running()["pve1"]
    assert peak <= LIMIT, f"{peak} tasks ran at once on pve1 while creating"


def test_deleting_many_objects_at_once_respects_the_per_node_task_limit(
    cluster: Cluster,
) -> None:
    # Adopted running VMs: taking them over starts no task, so every task is the destroy's.
    for vmid in VMIDS:
        cluster.sim.add_vm(vmid, running=True)
    specs = [{"vmid": v, "adopt": True, "memoryMiB": 512} for v in VMIDS]
    cluster.apply(*(cluster.vm_manifest(n, s) for n, s in zip(NAMES, specs, strict=True)))
    cluster.wait_for(lambda: all_running(cluster), timeout=60, what="all VMs adopted")
    assert cluster.sim.max_tasks_running()["pve1"] == 0

    cluster.sim.set_latency(10, path=TASK_CALLS)
    cluster.kubectl("delete", "pvm", "--all", "--wait=false")
    cluster.wait_for(lambda: cluster.list_vms() == [], timeout=90, what="all objects released")
    assert not any(cluster.sim.vm_exists(v) for v in VMIDS)
    peak = cluster.sim.max_tasks_running()["pve1"]
    assert peak <= LIMIT, f"{peak} tasks ran at once on pve1 while deleting"
