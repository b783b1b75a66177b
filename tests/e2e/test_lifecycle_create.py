"""Creating a VM from `kubectl apply`: the object is seen at once, the VM is created with our
ownership tag and started, and the status, printer columns and events tell the user so."""

from __future__ import annotations

import time
from typing import Any

from .harness import Cluster, dig
from .lifecycle_helpers import (
    condition,
    ownership_tag,
    ready,
    reasons,
    vm_tags,
    wait_event,
    wait_object,
    wait_phase,
    writes,
)


def test_apply_creates_starts_and_reports_a_blank_vm(cluster: Cluster) -> None:
    spec = {
        "vmid": 150,
        "cores": 2,
        "memoryMiB": 1024,
        "disks": [{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 8}],
        "networks": [{"slot": "net0", "bridge": "vmbr0", "vlan": 10}],
        "tags": ["web"],
    }
    applied = cluster.apply_vm("web-1", spec)
    uid = applied["metadata"]["uid"]
    assert applied["metadata"]["generation"] == 1

    # First seen: Ready is set, not True yet: the VMID is written before the VM is made.
    first = wait_object(
        cluster, lambda: condition(cluster.get_vm("web-1")), timeout=10, what="a Ready condition"
    )
    assert first["status"] in ("False", "Unknown"), first

    vm = wait_phase(cluster, "web-1", "Running", timeout=30)
    status = vm["status"]
    assert status["vmid"] == 150
    assert status["node"] == "pve1"
    assert status["powerState"] == "Running"
    assert status["observedGeneration"] == vm["metadata"]["generation"] == 1
    assert ready(vm) == ("True", "Reconciled")
    assert dig(condition(vm), "observedGeneration") == 1

    proxmox = cluster.sim.vm(150)
    assert proxmox is not None and proxmox["running"] and proxmox["node"] == "pve1"
    assert vm_tags(cluster, 150) == sorted(["web", f"vmop-{uid}"])
    assert ownership_tag(vm) == f"vmop-{uid}"
    config = proxmox["config"]
    assert (config["name"], int(config["cores"]), int(config["memory"])) == ("web-1", 2, 1024)
    assert str(config["net0"]).endswith("bridge=vmbr0,tag=10")
    assert str(config["scsi0"]).startswith("local-lvm:")

    # One create and one start reached Proxmox, nothing else that changes state.
    changes = [(r.method, r.path) for r in writes(cluster, 150)]
    assert changes == [
        ("POST", "/nodes/pve1/qemu"),
        ("POST", "/nodes/pve1/qemu/150/status/start"),
    ], changes

    header, row = cluster.kubectl("get", "pvm").stdout.splitlines()
    assert header.split() == ["NAME", "VMID", "NODE", "PHASE", "POWER", "AGE"]
    assert row.split()[:5] == ["web-1", "150", "pve1", "Running", "Running"]

    events = cluster.kubectl.json("get", "events")["items"]
    about = [e for e in events if dig(e, "involvedObject.uid") == uid]
    assert {"Creating", "Starting"} <= {e["reason"] for e in about}, about
    assert all(e["type"] == "Normal" for e in about), about
    # kubectl describe's "From" column names the operator, not kopf's default "kopf"/"dev".
    assert {dig(e, "source.component") for e in about} == {"proxmox-vm-operator"}, about
    assert {e.get("reportingComponent") for e in about} == {"proxmox-vm-operator"}, about
    assert all(e.get("reportingInstance") not in (None, "", "dev") for e in about), about
    order = reasons(cluster, "web-1")
    assert order.index("Creating") < order.index("Starting"), order


def test_a_vm_without_a_vmid_gets_the_next_free_one(cluster: Cluster) -> None:
    cluster.sim.add_vm(100)  # someone else's: nextid skips it
    cluster.apply_vm("auto", {"powerState": "Stopped"})
    vm = wait_phase(cluster, "auto", "Stopped", timeout=30)
    vmid = vm["status"]["vmid"]
    assert vmid != 100 and cluster.sim.vm_exists(vmid)
    assert dig(vm, "status.powerState") == "Stopped"
    assert not cluster.sim.vm(vmid)["running"]  # type: ignore[index]
    assert ownership_tag(vm) in vm_tags(cluster, vmid)
    assert vm_tags(cluster, 100) == []  # the foreign VM is untouched
    assert not writes(cluster, 100)
    assert "Starting" not in reasons(cluster, "auto")


def test_objects_applied_together_without_vmids_each_get_their_own_vm(cluster: Cluster) -> None:
    """nextid reserves nothing, so the operator hands VMIDs out itself: each object gets its own
    at once, and no create is sent to lose a race (no VMIDReassigned)."""
    names = ["batch-1", "batch-2", "batch-3"]
    cluster.apply(*(cluster.vm_manifest(name, {"powerState": "Stopped"}) for name in names))
    vms = [wait_phase(cluster, name, "Stopped", timeout=60) for name in names]

    vmids = [vm["status"]["vmid"] for vm in vms]
    assert len(set(vmids)) == len(names), vmids
    for vm, vmid in zip(vms, vmids, strict=True):
        assert vm_tags(cluster, vmid) == [ownership_tag(vm)], (vmid, vm_tags(cluster, vmid))
    for name in names:
        assert "VMIDReassigned" not in reasons(cluster, name)


def test_clone_from_a_template_ends_running_with_our_tag(cluster: Cluster) -> None:
    cluster.sim.add_vm(9000, name="ubuntu-tpl", template=True, tags=["template"])
    spec = {
        "vmid": 201,
        "cores": 2,
        "tags": ["cloned"],
        "source": {"cloneFrom": {"vmid": 9000, "node": "pve1", "full": True}},
    }
    cluster.apply_vm("clone-1", spec)
    vm = wait_phase(cluster, "clone-1", "Running", timeout=40)
    assert (vm["status"]["vmid"], vm["status"]["powerState"]) == (201, "Running")

    clone = cluster.sim.vm(201)
    assert clone is not None and clone["running"]
    assert clone["config"]["name"] == "clone-1"
    assert int(clone["config"]["cores"]) == 2
    assert vm_tags(cluster, 201) == sorted(["cloned", ownership_tag(vm)])
    # The template keeps its own tags and is not started or changed.
    template = cluster.sim.vm(9000)
    assert template is not None and not template["running"]
    assert vm_tags(cluster, 9000) == ["template"]
    clones = [r for r in writes(cluster) if r.path.endswith("/qemu/9000/clone")]
    assert len(clones) == 1 and str(clones[0].params.get("newid")) == "201"
    wait_event(cluster, "clone-1", "Creating")
    wait_event(cluster, "clone-1", "Starting")


def fail_first_start_and_create(cluster: Cluster) -> float:
    """Create web-1 while its first start call fails; seconds from that failure to Running.

    In between, the Ready condition must name the failure (a 5xx the client cannot classify
    is reported as Unknown / ProxmoxUnreachable, with Proxmox's message).
    """
    cluster.sim.fail_next(r"/qemu/160/status/start$", status=500, message="start failed: boom")
    cluster.apply_vm("web-1", {"vmid": 160})

    def failed_start() -> bool:
        return any(r.status == 500 for r in cluster.sim.requests_to(r"/qemu/160/status/start$"))

    cluster.wait_for(failed_start, timeout=20, interval=0.05, what="the failed start call")
    failed_at = time.monotonic()

    def reported() -> dict[str, Any] | None:
        found = condition(cluster.get_vm("web-1"))
        return found if found and "boom" in str(found.get("message")) else None

    seen = wait_object(cluster, reported, timeout=10, what="the failure in Ready")
    assert seen["status"] in ("False", "Unknown"), seen
    wait_phase(cluster, "web-1", "Running", timeout=40)
    return time.monotonic() - failed_at


def test_a_failed_start_call_is_reported_and_retried(cluster: Cluster) -> None:
    fail_first_start_and_create(cluster)
    starts = cluster.sim.requests_to(r"/qemu/160/status/start$")
    assert [r.status for r in starts] == [500, 200]
    assert len([r for r in writes(cluster, 160) if r.path == "/nodes/pve1/qemu"]) == 1
    assert ready(cluster.get_vm("web-1")) == ("True", "Reconciled")


def test_a_failed_start_call_is_retried_after_the_base_backoff(cluster: Cluster) -> None:
    recovered_after = fail_first_start_and_create(cluster)
    # backoff(1) = 2 s, then a start task and the pass that sees it: well under 6 s.
    assert recovered_after < 6, f"Running only {recovered_after:.1f} s after one failed call"
