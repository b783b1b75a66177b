"""The story this project exists for, driven through the real proxmoxer client over TLS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ResourceException

from proxmox_vm_operator.simulator import GuestBehaviour, Simulator


def test_guest_ignoring_acpi_survives_shutdown_until_overruled_then_deletes(
    sim: Simulator, px: Any, wait_task: Callable[..., dict[str, Any]]
) -> None:
    vmid = int(px.cluster.nextid.get())
    vm = px.nodes("pve1").qemu(vmid)
    upid = px.nodes("pve1").qemu.post(vmid=vmid, name="web-1", memory=1024, scsi0="local-lvm:8")
    assert wait_task(upid)["exitstatus"] == "OK"
    sim.set_guest(vmid, GuestBehaviour(obeys_acpi=False))
    assert wait_task(vm.status.start.post())["exitstatus"] == "OK"

    shutdown = wait_task(vm.status.shutdown.post(timeout=30))
    assert shutdown["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert vm.status.current.get()["status"] == "running"

    with pytest.raises(ResourceException) as refused:
        vm.delete()
    assert refused.value.status_code == 500
    assert refused.value.content == f"VM {vmid} is running - destroy failed"

    assert wait_task(vm.status.stop.post(**{"overrule-shutdown": 1}))["exitstatus"] == "OK"
    assert wait_task(vm.delete(purge=1))["exitstatus"] == "OK"
    assert not sim.vm_exists(vmid)
    assert all(entry["vmid"] != vmid for entry in px.cluster.resources.get(type="vm"))
