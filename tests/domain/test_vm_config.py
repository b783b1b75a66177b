"""Spec → Proxmox config keys, and the comparison that keeps reconcile from fighting Proxmox."""

from __future__ import annotations

import urllib.parse
from typing import Any

from proxmox_vm_operator.domain.model import ProxmoxVMSpec
from proxmox_vm_operator.domain.vmconfig import (
    config_changes,
    desired_config,
    normalize_tags,
    with_ownership_tag,
    without_ownership_tag,
)

UID = "5f0c"


def make_spec(**fields: Any) -> ProxmoxVMSpec:
    return ProxmoxVMSpec.model_validate(
        {"connectionRef": {"name": "pve"}, "node": "pve1", **fields}
    )


def test_desired_config_maps_every_managed_field_and_adds_the_ownership_tag() -> None:
    spec = make_spec(
        cores=2,
        memoryMiB=4096,
        cpuType="host",
        onBoot=True,
        agent=True,
        tags=["web", "prod"],
        description="front end",
        disks=[{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 20}],
        networks=[{"slot": "net0", "bridge": "vmbr1", "vlan": 10}],
        cloudInit={"user": "ubuntu", "sshKeys": ["ssh-ed25519 AAAA a@b"], "ipConfig": ["ip=dhcp"]},
    )
    config = desired_config(spec, "web-1", UID)
    assert config == {
        "name": "web-1",
        "cores": 2,
        "sockets": 1,
        "cpu": "host",
        "memory": "4096",
        "onboot": 1,
        "agent": "1",
        "tags": "prod;vmop-5f0c;web",
        "description": "front end",
        "scsihw": "virtio-scsi-single",
        "scsi0": "local-lvm:20",
        "net0": "virtio,bridge=vmbr1,tag=10",
        "ciuser": "ubuntu",
        "sshkeys": urllib.parse.quote("ssh-ed25519 AAAA a@b", safe=""),
        "ipconfig0": "ip=dhcp",
    }


def test_spec_name_overrides_the_object_name() -> None:
    assert desired_config(make_spec(name="db"), "web-1", UID)["name"] == "db"


def test_a_vm_as_proxmox_stored_it_needs_no_change() -> None:
    spec = make_spec(
        disks=[{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 20}],
        networks=[{"slot": "net0"}],
        tags=["web"],
        description="notes",
    )
    stored = {
        **desired_config(spec, "web-1", UID),
        "scsi0": "local-lvm:vm-120-disk-0,size=20G",
        "net0": "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0",
        "tags": "vmop-5f0c;web",
        "description": "notes\n",
        "smbios1": "uuid=1",
    }
    changes = config_changes(desired_config(spec, "web-1", UID), stored)
    assert changes.set == {}
    assert changes.unsupported == []


def test_changed_nic_keeps_its_mac_and_changed_scalars_are_sent() -> None:
    spec = make_spec(cores=4, networks=[{"slot": "net0", "bridge": "vmbr9"}])
    current = {
        **desired_config(make_spec(networks=[{"slot": "net0"}]), "web-1", UID),
        "net0": "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0",
    }
    changes = config_changes(desired_config(spec, "web-1", UID), current)
    assert changes.set == {"cores": 4, "net0": "virtio=BC:24:11:AA:BB:CC,bridge=vmbr9"}


def test_disk_resize_is_reported_not_applied_and_a_new_disk_is_added() -> None:
    spec = make_spec(
        disks=[
            {"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 40},
            {"slot": "scsi1", "storage": "local-lvm", "sizeGiB": 5},
        ]
    )
    current = {
        **desired_config(make_spec(), "web-1", UID),
        "scsi0": "local-lvm:vm-120-disk-0,size=20G",
    }
    changes = config_changes(desired_config(spec, "web-1", UID), current)
    assert changes.unsupported == ["scsi0"]
    assert changes.set["scsi1"] == "local-lvm:5"


def test_ownership_tag_is_added_and_removed_without_touching_other_tags() -> None:
    assert with_ownership_tag("Web;db", UID) == "db;vmop-5f0c;web"
    assert without_ownership_tag("db;vmop-5f0c;web", UID) == "db;web"
    assert normalize_tags("b, A;a  c") == ["a", "b", "c"]
