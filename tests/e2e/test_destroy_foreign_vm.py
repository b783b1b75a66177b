"""A VM at spec.vmid that lacks the ownership tag is never touched, not even by a delete.

Someone else's VM sits at the VMID the object asks for. Without `spec.adopt: true` the
operator reports Ready=False (NotOwned) and writes nothing to it; deleting the object releases
the finalizer with a Warning event NotOwned and still writes nothing: the VM keeps running
with its own tags.
"""

from __future__ import annotations

from .destroy_helpers import (
    condition,
    condition_is,
    create_running,
    event_reasons,
    released_as,
    wait_gone,
    wait_vm,
    writes_to,
)
from .harness import FINALIZER, Cluster, dig

VMID = 124


def test_deleting_an_object_whose_vmid_holds_a_foreign_vm_releases_it_untouched(
    cluster: Cluster,
) -> None:
    cluster.sim.add_vm(VMID, tags=["someone-else"], running=True)
    cluster.apply_vm("web-1", {"vmid": VMID})

    vm = wait_vm(
        cluster,
        "web-1",
        lambda v: condition_is(v, "Ready", "False", "NotOwned"),
        timeout=20,
        what="Ready=False NotOwned",
    )
    ready = condition(vm, "Ready")
    assert ready is not None and "ownership tag" in ready["message"], ready
    assert dig(vm, "metadata.finalizers") == [FINALIZER]
    assert dig(vm, "status.phase") != "Running"
    assert ("Warning", "NotOwned") in event_reasons(cluster, "web-1")
    assert writes_to(cluster, VMID) == []

    before = len(cluster.events_for("web-1"))
    cluster.delete_vm("web-1")
    wait_gone(cluster, "web-1", timeout=20)

    assert writes_to(cluster, VMID) == []  # no stop, no shutdown, no delete, no config change
    foreign = cluster.sim.vm(VMID)
    assert foreign is not None and foreign["running"] is True
    assert foreign["config"]["tags"] == "someone-else"
    on_delete = cluster.events_for("web-1")[before:]
    assert [(e["type"], e["reason"]) for e in on_delete] == [("Warning", "NotOwned")], on_delete
    assert str(VMID) in on_delete[0]["message"], on_delete
    assert released_as(cluster, "not_owned")


def test_a_vmid_reused_by_someone_else_behind_the_operators_back_is_left_alone(
    cluster: Cluster,
) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    # Someone deleted our VM by hand and created theirs under the same VMID.
    cluster.sim.call(lambda: cluster.sim.cluster.vms.pop(VMID))
    cluster.sim.add_vm(VMID, tags=["someone-else"], running=True)
    writes_before = len(writes_to(cluster, VMID))

    cluster.delete_vm("web-1")
    wait_gone(cluster, "web-1", timeout=20)

    assert writes_to(cluster, VMID)[writes_before:] == []
    foreign = cluster.sim.vm(VMID)
    assert foreign is not None and foreign["running"] is True
    assert foreign["config"]["tags"] == "someone-else"
    reasons = event_reasons(cluster, "web-1")
    assert reasons[-1] == ("Warning", "NotOwned"), reasons
    assert not [r for r in reasons if r[1] in ("Stopping", "ShuttingDown", "DeletingVM")]
