"""Deleting an object before its VM is fully there: nothing may leak.

Argo CD syncs and prunes within seconds, and people `kubectl apply` then `kubectl delete`
again; a full clone takes minutes on real storage. Whatever the moment, once the object is
gone there must be no VM left behind that the operator created for it.

While Proxmox creates or clones a VM, the VM's config holds only `lock: create` (or
`lock: clone`) and none of its tags yet; the operator knows the VM is its own from the task it
recorded in `status.task`. The destroy must use that knowledge: a VM without the ownership tag
would otherwise be released as NotOwned (the ownership check comes before the check for
locks; docs/design.md, "The destroy algorithm"), and the VM the operator just created would
stay in Proxmox with nobody to delete it.
"""

from __future__ import annotations

import pytest

from proxmox_vm_operator.simulator import Timings

from .destroy_helpers import condition, released_as, wait_gone
from .harness import FINALIZER, Cluster, dig

VMID = 127
TEMPLATE = 9000
# 100 simulated seconds: 5 s at the sandbox's time scale, a long window to delete in.
SLOW_PROVISIONING = Timings(create=100, clone_full=100)


def test_an_object_that_never_got_a_vmid_is_released_without_asking_proxmox(
    cluster: Cluster,
) -> None:
    cluster.sim.fail_next(r"^/cluster/nextid$", times=1000, status=500, message="no nextid")
    cluster.apply_vm("web-1")  # no spec.vmid: the operator asks /cluster/nextid, in vain

    def not_ready() -> dict[str, object] | None:
        vm = cluster.get_vm("web-1")
        ready = condition(vm, "Ready")
        return vm if ready is not None and ready["status"] != "True" else None

    vm = cluster.wait_for(not_ready, timeout=15, what="Ready not True")
    assert dig(vm, "metadata.finalizers") == [FINALIZER]
    assert dig(vm, "status.vmid") is None
    asked = len(cluster.sim.requests)

    cluster.delete_vm("web-1", wait=True, timeout=15)

    after = [(r.method, r.path) for r in cluster.sim.requests[asked:]]
    assert not [a for a in after if a[1] != "/cluster/nextid"], after  # no lookup, no call
    assert not [r for r in cluster.sim.requests if r.method != "GET"]
    assert released_as(cluster, "already_absent")


@pytest.mark.sandbox(simulator={"timings": SLOW_PROVISIONING})
@pytest.mark.parametrize("source", ["blank", "clone"])
def test_deleting_while_the_vm_is_being_provisioned_destroys_it_afterwards(
    cluster: Cluster, source: str
) -> None:
    spec: dict[str, object] = {"vmid": VMID}
    if source == "clone":
        cluster.sim.add_vm(TEMPLATE, template=True)
        spec["source"] = {"cloneFrom": {"vmid": TEMPLATE}}
    cluster.apply_vm("web-1", spec)
    task = cluster.wait_for(
        lambda: dig(cluster.get_vm("web-1"), "status.task"), timeout=10, what="status.task"
    )
    assert task["action"] == ("clone" if source == "clone" else "create")
    in_flight = cluster.sim.vm(VMID)
    assert in_flight is not None and in_flight["lock"] in ("create", "clone"), in_flight

    cluster.delete_vm("web-1")
    wait_gone(cluster, "web-1", timeout=30)

    def provisioning_over() -> bool:
        vm = cluster.sim.vm(VMID)
        return vm is None or vm["lock"] is None

    cluster.wait_for(provisioning_over, timeout=15, what="the create or clone task to end")
    reasons = [e["reason"] for e in cluster.events_for("web-1")]
    assert "NotOwned" not in reasons, f"our own VM was called not owned: {reasons}"
    assert not cluster.sim.vm_exists(VMID), f"VM {VMID} leaked: {cluster.sim.vm(VMID)}"
