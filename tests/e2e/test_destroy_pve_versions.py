"""The default destroy of a guest that ignores ACPI completes on Proxmox VE 8.1, 8.3 and 9.x:
a hard stop (with overrule-shutdown where the release knows it), then the delete."""

from __future__ import annotations

import time

import pytest

from proxmox_vm_operator.simulator import GuestBehaviour

from .destroy_helpers import create_running, deletes, shutdowns, stops
from .harness import Cluster


@pytest.mark.parametrize(
    ("cluster", "overrule"),
    [
        ({"simulator": {"pve_version": "8.1.4"}}, False),
        ({"simulator": {"pve_version": "8.3.0"}}, True),
        ({"simulator": {"pve_version": "9.1.1"}}, True),
    ],
    indirect=["cluster"],
    ids=["8.1", "8.3", "9.1"],
)
def test_a_hung_guest_is_destroyed_with_the_default_policy(
    cluster: Cluster, overrule: bool
) -> None:
    create_running(cluster, "web-1", {"vmid": 131})
    cluster.sim.set_guest(131, GuestBehaviour(obeys_acpi=False))

    started = time.monotonic()
    cluster.delete_vm("web-1", wait=True, timeout=30)

    assert time.monotonic() - started < 15
    assert not cluster.sim.vm_exists(131)
    assert shutdowns(cluster, 131) == []
    [stop] = stops(cluster, 131)
    assert ("overrule-shutdown" in stop.params) is overrule
    assert [r.status for r in deletes(cluster, 131)] == [200]
