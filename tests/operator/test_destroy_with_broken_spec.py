"""A spec that no longer validates must not block a destroy (and must not weaken it)."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.controller.destroyer import spec_for_destroy
from proxmox_vm_operator.domain.model import DeletionPolicy, DestroyMode


def test_broken_spec_keeps_a_valid_destroy_policy() -> None:
    parsed = spec_for_destroy(
        {
            "connectionRef": {"name": "pve"},
            "node": "pve1",
            "memoryMiB": 1,
            "destroy": {"mode": "Shutdown", "shutdownTimeoutSeconds": 30},
            "deletionPolicy": "Orphan",
        }
    )
    spec = parsed.spec
    assert parsed.problem is not None and "memoryMiB" in parsed.problem
    assert spec.connection_ref.name == "pve"
    assert spec.destroy.mode is DestroyMode.SHUTDOWN
    assert spec.destroy.shutdown_timeout_seconds == 30
    assert spec.deletion_policy is DeletionPolicy.ORPHAN


def test_broken_destroy_policy_falls_back_to_the_hard_stop_default() -> None:
    spec = spec_for_destroy(
        {"connectionRef": {"name": "pve"}, "destroy": {"mode": "Hibernate"}, "cores": "many"}
    ).spec
    assert spec.destroy.mode is DestroyMode.STOP
    assert spec.deletion_policy is DeletionPolicy.DELETE


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"connectionRef": {"name": "pve"}, "node": "n" * 64}, "node"),
        ({"connectionRef": {"name": "pve"}, "node": 7}, "node"),
        (["not", "an", "object"], "not an object"),
        ("text", "not an object"),
        (None, "not an object"),
    ],
)
def test_a_spec_that_cannot_be_parsed_at_all_still_gives_the_safe_defaults(
    raw: object, named: str
) -> None:
    """A node name of 64+ characters or a spec that is not an object once made the destroy
    raise, and kopf retried it every 60 s forever with no condition or event."""
    parsed = spec_for_destroy(raw)
    assert parsed.spec.destroy.mode is DestroyMode.STOP
    assert parsed.spec.destroy.purge is True
    assert parsed.spec.deletion_policy is DeletionPolicy.DELETE
    assert parsed.problem is not None and named in parsed.problem
