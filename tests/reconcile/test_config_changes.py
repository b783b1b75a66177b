"""Spec changes on an owned VM: digest-guarded updates of the changed keys only."""

from __future__ import annotations

import re
from collections.abc import Callable

from .driver import OWNER_TAG, Driver, tag_set, vm_state

DISK = {"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 20}
FULL_SPEC = {
    "cores": 2,
    "sockets": 1,
    "cpuType": "host",
    "memoryMiB": 2048,
    "disks": [DISK],
    "networks": [{"slot": "net0", "model": "virtio", "bridge": "vmbr0", "vlan": 10}],
    "cloudInit": {
        "user": "ubuntu",
        "sshKeys": ["ssh-ed25519 AAAAC3Nz test@example"],
        "ipConfig": ["ip=dhcp"],
    },
    "tags": ["web"],
    "description": "front end\n",
    "onBoot": True,
    "agent": True,
}


async def reconciled(make_driver: Callable[..., Driver], **spec: object) -> Driver:
    driver = make_driver(**spec)
    await driver.settle()
    assert driver.ready["status"] == "True", driver.story(driver.passes)
    return driver


async def test_changed_cores_memory_and_tags_are_sent_digest_guarded_and_alone(
    make_driver: Callable[..., Driver],
) -> None:
    driver = await reconciled(make_driver, **FULL_SPEC)
    vmid = driver.vmid
    digest_before = driver.sim.call(lambda: driver.sim.cluster.vms[vmid].digest())

    driver.update_spec(cores=4, memoryMiB=4096, tags=["web", "db"])
    await driver.settle()

    [update] = driver.writes()[2:]  # after create and start
    assert (update.method, update.path) == ("PUT", f"/nodes/pve1/qemu/{vmid}/config")
    assert update.params["digest"] == digest_before
    assert re.fullmatch(r"[0-9a-f]{40}", update.params["digest"])
    assert set(update.params) == {"cores", "memory", "tags", "digest"}
    assert update.params["cores"] == "4"
    assert update.params["memory"] == "4096"
    assert tag_set(update.params["tags"]) == {"web", "db", OWNER_TAG}

    state = vm_state(driver.sim, vmid)
    merged = {**state["config"], **state["pending"]}  # running: cores/memory wait for a restart
    assert (merged["cores"], merged["memory"]) == (4, "4096")
    assert tag_set(merged["tags"]) == {"web", "db", OWNER_TAG}
    assert "ConfigUpdated" in driver.event_reasons()
    assert (driver.ready["status"], driver.ready["observedGeneration"]) == ("True", 2)


async def test_a_disk_resize_is_reported_as_not_changeable_in_place_and_never_sent(
    make_driver: Callable[..., Driver],
) -> None:
    driver = await reconciled(make_driver, disks=[DISK])
    writes_before = len(driver.writes())

    driver.update_spec(disks=[{**DISK, "sizeGiB": 40}])
    last = await driver.settle()

    assert driver.writes()[writes_before:] == []
    assert last.result.retry_after is None
    ready = driver.ready
    assert ready["status"] == "True"
    assert "cannot change in place" in ready["message"]
    assert "scsi0" in ready["message"]
    assert "size=20G" in vm_state(driver.sim, driver.vmid)["config"]["scsi0"]


async def test_a_reconciled_vm_gets_no_further_writes(
    make_driver: Callable[..., Driver],
) -> None:
    """Proxmox stores values in other shapes (MACs, volumes, encoded keys): no fight over them."""
    driver = await reconciled(make_driver, **FULL_SPEC)
    writes_before = len(driver.writes())

    records = await driver.run_passes(3)

    assert driver.writes()[writes_before:] == []
    assert all(r.result.retry_after is None for r in records)
    assert driver.ready["reason"] == "Reconciled"
    assert "cannot change" not in driver.ready["message"]
