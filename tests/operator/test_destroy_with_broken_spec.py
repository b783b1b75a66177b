"""A spec that no longer validates must not block a destroy (and must not weaken it)."""

from __future__ import annotations

from proxmox_vm_operator.controller.destroyer import spec_for_destroy
from proxmox_vm_operator.domain.model import DeletionPolicy, DestroyMode


def test_broken_spec_keeps_a_valid_destroy_policy() -> None:
    spec = spec_for_destroy(
        {
            "connectionRef": {"name": "pve"},
            "node": "pve1",
            "memoryMiB": 1,
            "destroy": {"mode": "Shutdown", "shutdownTimeoutSeconds": 30},
            "deletionPolicy": "Orphan",
        }
    )
    assert spec.connection_ref.name == "pve"
    assert spec.destroy.mode is DestroyMode.SHUTDOWN
    assert spec.destroy.shutdown_timeout_seconds == 30
    assert spec.deletion_policy is DeletionPolicy.ORPHAN


def test_broken_destroy_policy_falls_back_to_the_hard_stop_default() -> None:
    spec = spec_for_destroy(
        {"connectionRef": {"name": "pve"}, "destroy": {"mode": "Hibernate"}, "cores": "many"}
    )
    assert spec.destroy.mode is DestroyMode.STOP
    assert spec.deletion_policy is DeletionPolicy.DELETE
