"""Specs the API server stores but the operator must refuse (the emulator does not enforce the
CRD's schema, as an API server with an older CRD or a validation webhook gap would not):
Ready False / InvalidSpec with a message naming the field, phase Failed, one Warning event,
and no Proxmox call for them; the operator keeps serving valid objects, a fix with kubectl
reconciles, and deleting a refused object releases it at once."""

from __future__ import annotations

import time
from typing import Any

from .harness import FINALIZER, Cluster, dig
from .lifecycle_helpers import (
    calls_about,
    condition,
    kpatch,
    ready,
    wait_gone,
    wait_phase,
    wait_reason,
)

# name: (spec, what the message must say)
INVALID: dict[str, tuple[dict[str, Any], list[str]]] = {
    "tiny-memory": ({"vmid": 401, "memoryMiB": 1}, ["spec.memoryMiB", "16"]),
    "bad-tag": ({"vmid": 402, "tags": ["Not A Tag!"]}, ["spec.tags.0", "pattern"]),
    "hibernate": ({"vmid": 403, "destroy": {"mode": "Hibernate"}}, ["spec.destroy.mode", "Stop"]),
    "typo-field": ({"vmid": 404, "coers": 2}, ["spec.coers", "not permitted"]),
}


def warnings_about(cluster: Cluster, name: str) -> list[dict[str, object]]:
    return [e for e in cluster.events_for(name) if e.get("type") == "Warning"]


def wait_warning(cluster: Cluster, name: str) -> None:
    cluster.wait_for(lambda: warnings_about(cluster, name), timeout=10, what=f"{name}'s warning")


def test_invalid_specs_are_refused_without_calling_proxmox(cluster: Cluster) -> None:
    cluster.apply(*(cluster.vm_manifest(name, spec) for name, (spec, _) in INVALID.items()))

    for name, (_, expected) in INVALID.items():
        vm = wait_reason(cluster, name, "InvalidSpec", status="False", timeout=20)
        assert dig(vm, "status.phase") == "Failed", vm["status"]
        message = str(dig(condition(vm), "message"))
        for fragment in expected:
            assert fragment in message, f"{name}: {message!r} lacks {fragment!r}"
        assert dig(vm, "status.observedGeneration") == 1
        assert "vmid" not in vm["status"]  # nothing was ever created for it
        wait_warning(cluster, name)
        (warning,) = warnings_about(cluster, name)
        assert warning["reason"] == "InvalidSpec" and warning["message"] == message

    assert cluster.sim.requests == [], "an invalid spec must not reach Proxmox at all"

    # The operator is not stuck on them: a valid object created afterwards runs.
    cluster.apply_vm("good", {"vmid": 405})
    wait_phase(cluster, "good", "Running", timeout=30)
    for vmid in (401, 402, 403, 404):
        assert calls_about(cluster, vmid) == [], vmid
        assert not cluster.sim.vm_exists(vmid)
    for name in INVALID:  # refused once, not retried in a loop
        assert len(warnings_about(cluster, name)) == 1, cluster.events_for(name)
        assert ready(cluster.get_vm(name)) == ("False", "InvalidSpec")


def test_fixing_the_spec_with_kubectl_reconciles_it(cluster: Cluster) -> None:
    cluster.apply_vm("fix-me", {"vmid": 410, "memoryMiB": 1})
    wait_reason(cluster, "fix-me", "InvalidSpec", status="False")
    assert cluster.sim.requests == []

    kpatch(cluster, "fix-me", {"spec": {"memoryMiB": 512}})
    vm = wait_phase(cluster, "fix-me", "Running", timeout=30)
    assert dig(vm, "status.observedGeneration") == 2
    assert ready(vm) == ("True", "Reconciled")
    created = cluster.sim.vm(410)
    assert created is not None and created["running"]
    assert int(created["config"]["memory"]) == 512


def test_deleting_a_refused_object_releases_it_at_once(cluster: Cluster) -> None:
    cluster.apply_vm("doomed", {"vmid": 420, "destroy": {"mode": "Hibernate"}})
    vm = wait_reason(cluster, "doomed", "InvalidSpec", status="False")
    cluster.wait_for(
        lambda: FINALIZER in (dig(cluster.get_vm("doomed"), "metadata.finalizers") or []),
        timeout=10,
        what="the destroy finalizer",
    )
    assert "vmid" not in vm["status"]

    started = time.monotonic()
    cluster.delete_vm("doomed")
    wait_gone(cluster, "doomed", timeout=10)
    assert time.monotonic() - started < 10
    assert cluster.sim.requests == [], "no VM was created, so nothing to look up or destroy"


def test_changing_the_vmid_of_an_owned_vm_is_refused_and_leaves_it_alone(
    cluster: Cluster,
) -> None:
    cluster.apply_vm("pinned", {"vmid": 430})
    wait_phase(cluster, "pinned", "Running")
    cluster.sim.clear_requests()

    kpatch(cluster, "pinned", {"spec": {"vmid": 431}})
    vm = wait_reason(cluster, "pinned", "InvalidSpec", status="False")
    assert "spec.vmid is immutable" in str(dig(condition(vm), "message"))
    assert dig(vm, "status.vmid") == 430
    assert not cluster.sim.vm_exists(431) and calls_about(cluster, 431) == []
    running = cluster.sim.vm(430)
    assert running is not None and running["running"]
    assert [r for r in cluster.sim.requests if r.method != "GET"] == []

    kpatch(cluster, "pinned", {"spec": {"vmid": 430}})  # put it back: reconciled again
    wait_phase(cluster, "pinned", "Running")
