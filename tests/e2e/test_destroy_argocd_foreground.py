"""Argo CD's way of deleting: `propagationPolicy: Foreground` behaves like a plain delete.

Argo CD prunes and deletes applications' resources with foreground propagation
(`kubectl delete --cascade=foreground` sends the same DeleteOptions). The API server then adds
its `foregroundDeletion` finalizer beside ours and the garbage collector removes it; the
operator must run the destroy as usual and release its own finalizer, so the object goes.
"""

from __future__ import annotations

import re
import time

from proxmox_vm_operator.simulator import GuestBehaviour

from .destroy_helpers import (
    FAST,
    FROZEN,
    condition_is,
    create_running,
    destroy_record,
    destructive_counts,
    event_reasons,
    stops,
)
from .harness import FINALIZER, Cluster, dig

VMID = 125
BOUND = 15.0


def test_a_foreground_delete_runs_the_destroy_and_the_object_goes(cluster: Cluster) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    cluster.sim.set_guest(VMID, GuestBehaviour(obeys_acpi=False))
    cluster.sim.set_time_scale(FROZEN)  # hold the destroy at its stop task, to look at it

    # -v=8 logs the DeleteOptions sent and the object answered: a foreground delete, which
    # the API server marks with its foregroundDeletion finalizer next to ours.
    deleted = cluster.kubectl("delete", "proxmoxvm", "web-1", "--cascade=foreground",
                              "--wait=false", "-v=8")  # fmt: skip
    assert re.search(r'"propagationPolicy":\s*"Foreground"', deleted.stderr), deleted.stderr
    assert "foregroundDeletion" in deleted.stderr, deleted.stderr

    cluster.wait_for(lambda: stops(cluster, VMID), timeout=10, what="the destroy's stop")
    vm = cluster.get_vm("web-1")
    assert vm is not None and dig(vm, "metadata.deletionTimestamp")
    assert FINALIZER in dig(vm, "metadata.finalizers", [])
    cluster.wait_for(
        lambda: destroy_record(cluster, "web-1").get("step") == "Stopping",
        timeout=10,
        what="status.destroy at step Stopping",
    )
    vm = cluster.get_vm("web-1")
    assert dig(vm, "status.phase") == "Deleting"
    assert condition_is(vm, "Deleting", "True", "Stopping"), dig(vm, "status.conditions")

    cluster.sim.set_time_scale(FAST)
    started = time.monotonic()
    waited = cluster.kubectl(
        "wait", "--for=delete", "proxmoxvm/web-1", f"--timeout={BOUND:g}s", check=False
    )
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert time.monotonic() - started < BOUND
    assert cluster.get_vm("web-1") is None
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
    reasons = event_reasons(cluster, "web-1")
    assert ("Normal", "Stopping") in reasons and ("Normal", "DeletingVM") in reasons


def test_a_blocking_foreground_delete_returns_once_the_vm_is_destroyed(cluster: Cluster) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    cluster.sim.set_guest(VMID, GuestBehaviour(obeys_acpi=False))

    started = time.monotonic()
    deleted = cluster.delete_vm("web-1", cascade="foreground", wait=True, timeout=BOUND)
    assert time.monotonic() - started < BOUND
    assert 'proxmoxvm.proxmox.vmop.dev "web-1" deleted' in deleted.stdout
    assert cluster.get_vm("web-1") is None
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
