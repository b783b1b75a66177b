"""The story this project exists for, driven through the real proxmoxer client over TLS."""

from __future__ import annotations

from typing import Any

from proxmox_vm_operator.simulator import GuestBehaviour, Simulator

from .helpers import play_hung_guest_story


def test_guest_ignoring_acpi_survives_shutdown_until_overruled_then_deletes(
    sim: Simulator, px: Any
) -> None:
    vmid = play_hung_guest_story(
        px, lambda vmid: sim.set_guest(vmid, GuestBehaviour(obeys_acpi=False))
    )
    assert not sim.vm_exists(vmid)
    assert all(entry["vmid"] != vmid for entry in px.cluster.resources.get(type="vm"))
