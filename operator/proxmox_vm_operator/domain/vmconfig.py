"""From a ProxmoxVM spec to Proxmox VE config keys, and what differs from a VM's config.

Proxmox stores some values in a different shape from the one written (a NIC gains a MAC, a
disk becomes a volume with a size, tags are normalised), so comparing needs per-key rules;
they live here so that the reconcile loop never fights Proxmox over cosmetic differences.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from .model import OWNERSHIP_TAG_PREFIX, Network, ProxmoxVMSpec

ConfigValue = str | int

DISK_PREFIXES = ("scsi", "virtio", "sata", "ide")
# Keys the operator manages; anything else in a VM's config is left as it is.
MANAGED_SCALARS = ("name", "cores", "sockets", "cpu", "memory", "onboot", "agent", "description")


def is_disk_key(key: str) -> bool:
    return re.sub(r"\d+$", "", key) in DISK_PREFIXES


def ownership_tag(uid: str) -> str:
    return f"{OWNERSHIP_TAG_PREFIX}{uid}"


def normalize_tags(raw: str | None) -> list[str]:
    """Tags as Proxmox VE stores them: split on ; , or spaces, lower-case, unique, sorted."""
    return sorted({t.lower() for t in re.split(r"[;,\s]+", raw or "") if t})


def tags_value(tags: list[str]) -> str:
    return ";".join(normalize_tags(";".join(tags)))


def network_value(network: Network, mac: str | None = None) -> str:
    model = f"{network.model.value}={mac}" if mac else network.model.value
    value = f"{model},bridge={network.bridge}"
    if network.vlan is not None:
        value += f",tag={network.vlan}"
    return value


def _properties(value: str) -> tuple[str, str | None, dict[str, str]]:
    """Split a property string like ``virtio=BC:24:11:00:00:01,bridge=vmbr0`` into parts."""
    first, *rest = value.split(",")
    key, _, default = first.partition("=")
    options = dict(item.partition("=")[::2] for item in rest if item)
    return key, default or None, options


def desired_config(spec: ProxmoxVMSpec, name: str, uid: str) -> dict[str, ConfigValue]:
    """The managed config keys for ``spec``; disks in create form (``storage:size``)."""
    config: dict[str, ConfigValue] = {
        "name": spec.name or name,
        "cores": spec.cores,
        "sockets": spec.sockets,
        "cpu": spec.cpu_type,
        "memory": str(spec.memory_mib),
        "onboot": int(spec.on_boot),
        "agent": "1" if spec.agent else "0",
        "tags": tags_value([*spec.tags, ownership_tag(uid)]),
    }
    if spec.description is not None:
        config["description"] = spec.description
    if any(d.slot.startswith("scsi") for d in spec.disks):
        config["scsihw"] = "virtio-scsi-single"
    for disk in spec.disks:
        config[disk.slot] = f"{disk.storage}:{disk.size_gib}"
    for network in spec.networks:
        config[network.slot] = network_value(network)
    if spec.cloud_init is not None:
        cloud = spec.cloud_init
        if cloud.user:
            config["ciuser"] = cloud.user
        if cloud.ssh_keys:
            # PVE wants the key list URL-encoded inside the parameter.
            config["sshkeys"] = urllib.parse.quote("\n".join(cloud.ssh_keys), safe="")
        for index, ip_config in enumerate(cloud.ip_config):
            config[f"ipconfig{index}"] = ip_config
    return config


@dataclass(frozen=True)
class ConfigChanges:
    """What to send to bring a VM's config to the spec, and what cannot be changed in place."""

    set: dict[str, ConfigValue]
    unsupported: list[str]  # e.g. a disk resize or a new disk storage: reported, not applied


def _same_network(desired: str, current: str) -> bool:
    want_model, _, want = _properties(desired)
    have_model, _, have = _properties(current)
    return want_model == have_model and want == {k: v for k, v in have.items() if k in want}


def _disk_size_gib(current: str) -> float | None:
    match = re.search(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)", current)
    if not match:
        return None
    factor = {"K": 1 / 2**20, "M": 1 / 2**10, "G": 1, "T": 2**10, "": 1 / 2**30}[match.group(2)]
    return float(match.group(1)) * factor


def config_changes(
    desired: Mapping[str, ConfigValue], current: Mapping[str, ConfigValue]
) -> ConfigChanges:
    """Compare the desired managed keys with a VM's (pending-merged) config.

    Keys the spec leaves unset are not touched: a VM adopted with its own description keeps it.
    """
    to_set: dict[str, ConfigValue] = {}
    unsupported: list[str] = []
    for key, want in desired.items():
        have = current.get(key)
        prefix = re.sub(r"\d+$", "", key)
        if prefix in DISK_PREFIXES:
            if have is None:
                to_set[key] = want  # a new disk can be added in place
                continue
            storage, size = str(want).split(":")
            have_size = _disk_size_gib(str(have))
            if not str(have).startswith(f"{storage}:") or have_size != float(size):
                unsupported.append(key)
            continue
        if prefix == "net" and have is not None:
            if not _same_network(str(want), str(have)):
                # Keep the MAC Proxmox assigned: a new one would look like a new NIC to the guest.
                _, mac, _ = _properties(str(have))
                model, _, options = _properties(str(want))
                rebuilt = f"{model}={mac}" if mac else model
                to_set[key] = ",".join([rebuilt, *(f"{k}={v}" for k, v in options.items())])
            continue
        if key == "tags":
            if normalize_tags(str(want)) != normalize_tags(str(have) if have else None):
                to_set[key] = want
            continue
        if key == "description" and have is not None and str(have).rstrip() == str(want).rstrip():
            continue
        if have is None or str(have) != str(want):
            to_set[key] = want
    return ConfigChanges(to_set, unsupported)


def with_ownership_tag(current_tags: str | None, uid: str) -> str:
    return tags_value([*normalize_tags(current_tags), ownership_tag(uid)])


def without_ownership_tag(current_tags: str | None, uid: str) -> str:
    return tags_value([t for t in normalize_tags(current_tags) if t != ownership_tag(uid)])
