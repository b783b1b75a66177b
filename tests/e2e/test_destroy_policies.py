"""What a user can ask of a destroy besides the default: keep the VM (deletionPolicy Orphan),
let go of a stuck destroy (the force-release annotation), and what Proxmox can ask of it:
wait while the VM has `protection: 1`.
"""

from __future__ import annotations

from .destroy_helpers import (
    FORCE_RELEASE,
    annotate,
    assert_held,
    condition,
    condition_is,
    create_running,
    destroy_record,
    destructive_counts,
    event_reasons,
    released_as,
    set_protection,
    wait_gone,
    wait_vm,
    writes_to,
)
from .harness import Cluster, dig

VMID = 126


def _ours(vm: dict[str, object]) -> str:
    return f"vmop-{dig(vm, 'metadata.uid')}"


def _tags(cluster: Cluster) -> list[str]:
    snapshot = cluster.sim.vm(VMID)
    assert snapshot is not None
    return str(snapshot["config"].get("tags", "")).split(";")


def test_orphan_keeps_the_vm_running_removes_only_our_tag_and_releases(cluster: Cluster) -> None:
    spec = {"vmid": VMID, "deletionPolicy": "Orphan", "tags": ["web"]}
    vm = create_running(cluster, "web-1", spec)
    assert sorted(_tags(cluster)) == sorted([_ours(vm), "web"])
    writes_before = len(writes_to(cluster, VMID))

    cluster.delete_vm("web-1", wait=True, timeout=15)

    kept = cluster.sim.vm(VMID)
    assert kept is not None and kept["running"] is True
    assert _tags(cluster) == ["web"]
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 0, "delete": 0}
    during = writes_to(cluster, VMID)[writes_before:]
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in during] in (
        [("PUT", "config")],
        [("POST", "config")],
    ), during
    reasons = event_reasons(cluster, "web-1")
    assert not [r for r in reasons if r[1] in ("Stopping", "ShuttingDown", "DeletingVM")]
    assert released_as(cluster, "orphaned")


def test_force_release_lets_a_stuck_destroy_go_without_calling_proxmox(cluster: Cluster) -> None:
    vm = create_running(cluster, "web-1", {"vmid": VMID})
    writes_before = len(writes_to(cluster, VMID))
    cluster.sim.make_unreachable("refuse")  # the destroy cannot make progress

    cluster.delete_vm("web-1")
    held = assert_held(cluster, "web-1", 1.5)
    assert dig(held, "status.destroy.lastError"), held["status"]

    annotate(cluster, "web-1", FORCE_RELEASE, "true")
    wait_gone(cluster, "web-1", timeout=15)

    released = cluster.events_for("web-1")[-1]
    assert (released["type"], released["reason"]) == ("Warning", "ForceReleased"), released
    assert str(VMID) in released["message"]
    assert released_as(cluster, "force_released")
    cluster.sim.restore()
    # Proxmox was never reached: the VM runs on, still tagged as ours.
    kept = cluster.sim.vm(VMID)
    assert kept is not None and kept["running"] is True
    assert _ours(vm) in _tags(cluster)
    assert writes_to(cluster, VMID)[writes_before:] == []


def test_a_protected_vm_stalls_the_destroy_until_protection_is_cleared(cluster: Cluster) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    set_protection(cluster, VMID, True)  # an administrator protects the VM

    cluster.delete_vm("web-1")

    vm = wait_vm(
        cluster,
        "web-1",
        lambda v: condition_is(v, "DeletionStalled", "True", "Protected"),
        timeout=10,
        what="DeletionStalled=True Protected",
    )
    stalled = condition(vm, "DeletionStalled")
    assert stalled is not None and "protection" in stalled["message"], stalled
    assert "protection" in destroy_record(cluster, "web-1").get("lastError", "")
    assert_held(cluster, "web-1", 2.0)
    # Nothing destructive while protected: the VM even keeps running.
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 0, "delete": 0}
    protected = cluster.sim.vm(VMID)
    assert protected is not None and protected["running"] is True

    set_protection(cluster, VMID, False)
    wait_gone(cluster, "web-1", timeout=20)
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
    assert not [r for r in cluster.sim.requests if "skiplock" in r.params]
