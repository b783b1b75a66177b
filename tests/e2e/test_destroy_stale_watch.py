"""A slow API server hands the operator stale copies of its objects: no VM is created for an
object already being deleted, and none is left behind.

The emulator delivers every watch event 3 s late (reads stay current). The operator records
its VMID, its first create call fails (so the pass ends and the next one comes after a
backoff), and the object is deleted meanwhile: the pass that follows acts on a copy without
the deletionTimestamp. It once created the VM (and, with VMIDs from nextid, a second one the
status never named, which the destroy then left running under the object's tag).
"""

from __future__ import annotations

import re

import pytest

from proxmox_vm_operator.simulator.api import RecordedRequest

from .destroy_helpers import wait_gone, wait_vm
from .harness import Cluster, dig

CREATE = re.compile(r"^/nodes/[^/]+/qemu$")


def creates(cluster: Cluster) -> list[RecordedRequest]:
    return [r for r in cluster.sim.requests if r.method == "POST" and CREATE.match(r.path)]


@pytest.mark.sandbox(watch_lag=3.0)
def test_an_object_deleted_while_the_watch_lags_gets_no_vm_and_leaks_nothing(
    cluster: Cluster,
) -> None:
    cluster.sim.fail_next(CREATE.pattern, method="POST", status=500, message="try again")
    cluster.apply_vm("web-1")  # no spec.vmid: the operator takes one from nextid
    vm = wait_vm(cluster, "web-1", lambda v: dig(v, "status.vmid") is not None, timeout=30,
                 what="the VMID recorded")  # fmt: skip
    tag = f"vmop-{vm['metadata']['uid']}"
    cluster.wait_for(lambda: creates(cluster), timeout=10, what="the first create call")
    cluster.delete_vm("web-1")

    wait_gone(cluster, "web-1", timeout=60)

    made = [r for r in creates(cluster) if r.status == 200]
    assert made == [], "a VM was created for an object that was being deleted"
    assert cluster.sim.vm_ids(tag=tag) == []
    assert cluster.sim.vm_ids() == []
    log = cluster.operator.log_text()
    assert "Traceback" not in log, log[-3000:]
