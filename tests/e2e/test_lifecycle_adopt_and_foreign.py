"""A VM that already exists at spec.vmid: without our ownership tag it is reported NotOwned
and left untouched; `spec.adopt: true` (set with kubectl) takes it over by adding our tag;
a VM that carries another object's tag is never taken over, adopt or not."""

from __future__ import annotations

import time
from typing import Any

from .harness import Cluster, dig
from .lifecycle_helpers import (
    condition,
    kpatch,
    ownership_tag,
    ready,
    reasons,
    vm_tags,
    wait_event,
    wait_gone,
    wait_phase,
    wait_reason,
    writes,
)


def seed_legacy_vm(cluster: Cluster) -> dict[str, object] | None:
    cluster.sim.add_vm(500, name="legacy", running=True, tags=["prod"], config={"cores": 2})
    return cluster.sim.vm(500)


LEGACY_SPEC = {"vmid": 500, "cores": 2, "tags": ["prod"]}


def assert_adopted_in_place(cluster: Cluster, vm: dict[str, Any], generation: int) -> None:
    assert ready(vm) == ("True", "Reconciled")
    assert (dig(vm, "status.vmid"), dig(vm, "status.observedGeneration")) == (500, generation)
    assert vm_tags(cluster, 500) == sorted(["prod", ownership_tag(vm)])
    adopted = cluster.sim.vm(500)
    assert adopted is not None and adopted["running"]
    assert adopted["config"]["name"] == "legacy"
    # Taken over in place: never re-created, stopped or restarted.
    paths = [r.path for r in writes(cluster, 500)]
    assert paths and all(p.endswith("/qemu/500/config") for p in paths), paths
    assert writes(cluster, 500)[0].params.get("digest"), "the adopting write is digest-guarded"
    assert "Adopted" in reasons(cluster, "legacy")


def test_a_foreign_vm_is_reported_not_owned_and_left_untouched(cluster: Cluster) -> None:
    before = seed_legacy_vm(cluster)
    vm = cluster.apply_vm("legacy", LEGACY_SPEC)
    tag = ownership_tag(vm)

    vm = wait_reason(cluster, "legacy", "NotOwned", status="False")
    message = str(dig(condition(vm), "message"))
    assert "VM 500" in message and tag in message and "spec.adopt" in message, message
    assert dig(vm, "status.phase") != "Running"
    warning = wait_event(cluster, "legacy", "NotOwned")
    assert warning["type"] == "Warning"
    time.sleep(1.5)  # a few passes' worth: still nothing done to it
    assert writes(cluster, 500) == []
    assert cluster.sim.vm(500) == before
    assert ready(cluster.get_vm("legacy")) == ("False", "NotOwned")

    # Deleting the object leaves the foreign VM as it was.
    cluster.delete_vm("legacy")
    wait_gone(cluster, "legacy", timeout=20)
    assert writes(cluster, 500) == [] and cluster.sim.vm(500) == before


def test_a_foreign_vm_with_adopt_true_is_taken_over(cluster: Cluster) -> None:
    seed_legacy_vm(cluster)
    cluster.apply_vm("legacy", {**LEGACY_SPEC, "adopt": True})
    vm = wait_phase(cluster, "legacy", "Running", timeout=30)
    assert_adopted_in_place(cluster, vm, 1)


def test_patching_adopt_true_takes_a_not_owned_vm_over_promptly(cluster: Cluster) -> None:
    seed_legacy_vm(cluster)
    cluster.apply_vm("legacy", LEGACY_SPEC)
    wait_reason(cluster, "legacy", "NotOwned", status="False")

    kpatch(cluster, "legacy", {"spec": {"adopt": True}})
    vm = wait_phase(cluster, "legacy", "Running", timeout=12)
    assert_adopted_in_place(cluster, vm, 2)


def claim_owned_vm(cluster: Cluster) -> tuple[dict[str, Any], list[str]]:
    """`owner` runs VM 520; `thief` asks to adopt it. Returns the owner and its VM's tags."""
    owner = cluster.apply_vm("owner", {"vmid": 520})
    wait_phase(cluster, "owner", "Running")
    owners_tags = vm_tags(cluster, 520)
    assert owners_tags == [ownership_tag(owner)]
    cluster.sim.clear_requests()
    cluster.apply_vm("thief", {"vmid": 520, "adopt": True, "cores": 8})
    vm = wait_reason(cluster, "thief", "NotOwned", status="False")
    message = str(dig(condition(vm), "message"))
    assert "belongs to another object" in message and ownership_tag(owner) in message, message
    return owner, owners_tags


def test_a_vm_owned_by_another_object_is_never_adopted(cluster: Cluster) -> None:
    _, owners_tags = claim_owned_vm(cluster)
    time.sleep(1.5)
    assert writes(cluster, 520) == [], "adopt must not take a VM from its owner"
    assert vm_tags(cluster, 520) == owners_tags
    assert int(cluster.sim.vm(520)["config"]["cores"]) == 1  # type: ignore[index]
    assert ready(cluster.get_vm("owner")) == ("True", "Reconciled")


def test_deleting_a_would_be_adopter_leaves_the_owners_vm_alone(cluster: Cluster) -> None:
    owner, owners_tags = claim_owned_vm(cluster)
    cluster.delete_vm("thief")
    wait_gone(cluster, "thief", timeout=20)
    assert writes(cluster, 520) == [], "another object's VM was stopped or deleted"
    survivor = cluster.sim.vm(520)
    assert survivor is not None and survivor["running"]
    assert vm_tags(cluster, 520) == owners_tags
    assert ready(cluster.get_vm("owner")) == ("True", "Reconciled")
    assert dig(owner, "metadata.name") == "owner"


def test_a_vm_tagged_for_an_unknown_object_is_never_adopted(cluster: Cluster) -> None:
    stranger = "vmop-00000000-0000-0000-0000-00000000beef"
    cluster.sim.add_vm(530, name="stray", tags=[stranger])
    cluster.apply_vm("stray", {"vmid": 530, "adopt": True})
    vm = wait_reason(cluster, "stray", "NotOwned", status="False")
    assert stranger in str(dig(condition(vm), "message"))
    time.sleep(1.5)
    assert writes(cluster, 530) == []
    assert vm_tags(cluster, 530) == [stranger]
