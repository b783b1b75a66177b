"""The simulated cluster's state: nodes, VMs with their config files, HA resources, tasks."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any

ConfigValue = int | str

# Keys a running VM applies at once; everything else waits in [PENDING] until the next start.
FAST_PLUG_KEYS = frozenset(
    {"name", "description", "tags", "onboot", "protection", "startup", "hookscript", "shares"}
)
HOTPLUG_PREFIXES = ("net", "scsi", "virtio", "sata", "ide", "unused", "ipconfig")
CLOUD_INIT_KEYS = frozenset(
    {
        "ciuser",
        "cipassword",
        "citype",
        "ciupgrade",
        "cicustom",
        "sshkeys",
        "nameserver",
        "searchdomain",
    }
)
# Storages every node reaches (storage.cfg ``shared 1``); the others are node-local.
SHARED_STORAGES = frozenset({"ceph-rbd"})
CONFIG_LOCKS = (
    "backup",
    "clone",
    "create",
    "migrate",
    "rollback",
    "snapshot",
    "snapshot-delete",
    "suspending",
    "suspended",
)


@dataclass(frozen=True)
class GuestBehaviour:
    """How the guest OS inside a VM reacts to a graceful shutdown request.

    ``obeys_acpi=False`` models the guest this project exists for: a frozen installer, a
    kernel panic, a job that ignores the signal. It never powers off on its own.
    """

    obeys_acpi: bool = True
    shutdown_seconds: float = 3.0


@dataclass(frozen=True)
class Timings:
    """How long each kind of worker runs, in simulated seconds."""

    create: float = 2.0
    clone_full: float = 6.0
    clone_linked: float = 1.0
    start: float = 2.0
    stop: float = 1.0
    destroy: float = 2.0
    config: float = 0.5
    # The CRM/LRM loop of pve-ha-manager: how long before HA acts on a request.
    ha_delay: float = 10.0
    # pvestatd broadcasts status to /cluster/resources about every 10 s.
    rrd_interval: float = 10.0
    # Flock waits of qemu-server: 10 s for most calls, 5 s for create's synchronous
    # create_and_lock_config, 1 s in the create worker and for clone.
    flock_wait: float = 10.0
    flock_wait_create: float = 5.0
    flock_wait_clone: float = 1.0
    flock_wait_create_worker: float = 1.0


@dataclass
class VM:
    vmid: int
    node: str
    config: dict[str, ConfigValue]
    pending: dict[str, ConfigValue] = field(default_factory=dict)
    pending_delete: set[str] = field(default_factory=set)
    running: bool = False
    paused: bool = False
    started_at: float | None = None
    guest: GuestBehaviour = field(default_factory=GuestBehaviour)
    # What /cluster/resources shows: refreshed by the simulated pvestatd, so it lags.
    rrd: dict[str, Any] | None = None
    disk_counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def lock(self) -> str | None:
        value = self.config.get("lock")
        return str(value) if value is not None else None

    @property
    def name(self) -> str:
        return str(self.config.get("name", f"VM {self.vmid}"))

    @property
    def is_template(self) -> bool:
        return self.config.get("template") == 1

    def merged_config(self) -> dict[str, ConfigValue]:
        merged = {**self.config, **self.pending}
        for key in self.pending_delete:
            merged.pop(key, None)
        return merged

    def serialized(self) -> str:
        """The config file as qemu-server writes it, pending section included."""
        lines = [f"{key}: {value}" for key, value in self.config.items()]
        if self.pending or self.pending_delete:
            lines.append("")
            lines.append("[PENDING]")
            if self.pending_delete:
                lines.append(f"delete: {','.join(sorted(self.pending_delete))}")
            lines.extend(f"{key}: {value}" for key, value in self.pending.items())
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        return hashlib.sha1(self.serialized().encode(), usedforsecurity=False).hexdigest()

    def apply_pending(self) -> None:
        self.config.update(self.pending)
        for key in self.pending_delete:
            self.config.pop(key, None)
        self.pending.clear()
        self.pending_delete.clear()

    def memory_mib(self) -> int:
        match = re.search(r"\d+", str(self.config.get("memory", "512")))
        return int(match.group(0)) if match else 512

    def tags(self) -> str | None:
        value = self.config.get("tags")
        return str(value) if value else None


class FileLock:
    """flock(2) on ``/var/lock/qemu-server/lock-{vmid}.conf``: shared holders, or one exclusive.

    qemu-server locks exclusively almost everywhere; a clone of a stopped VM locks its source
    shared, so several clones of one template run side by side.
    """

    def __init__(self) -> None:
        self._shared = 0
        self._exclusive = False
        self._changed = asyncio.Condition()

    @property
    def locked(self) -> bool:
        return self._exclusive or self._shared > 0

    async def acquire(self, *, shared: bool = False) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._exclusive and (shared or self._shared == 0)
            )
            if shared:
                self._shared += 1
            else:
                self._exclusive = True

    async def release(self, *, shared: bool = False) -> None:
        async with self._changed:
            if shared:
                self._shared -= 1
            else:
                self._exclusive = False
            self._changed.notify_all()


@dataclass
class HAResource:
    vmid: int
    state: str = "started"  # the requested state in resources.cfg
    service_state: str = "started"  # what the CRM reports in status/current ha.state
    comment: str = ""

    @property
    def sid(self) -> str:
        return f"vm:{self.vmid}"

    @property
    def managed(self) -> bool:
        return self.state != "ignored"


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    pid: int
    pstart: int
    log: list[str] = field(default_factory=list)
    exitstatus: str | None = None
    endtime: int | None = None
    warnings: int = 0
    worker: asyncio.Task[None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        return self.exitstatus is None

    def status_reply(self) -> dict[str, Any]:
        user, _, tokenid = self.user.partition("!")
        reply: dict[str, Any] = {
            "upid": self.upid,
            "node": self.node,
            "pid": self.pid,
            "pstart": self.pstart,
            "starttime": self.starttime,
            "type": self.type,
            "id": self.id,
            "user": user,
            "status": "running" if self.running else "stopped",
        }
        if tokenid:
            reply["tokenid"] = tokenid
        if not self.running:
            reply["exitstatus"] = self.exitstatus
        return reply


def make_upid(
    node: str, pid: int, pstart: int, starttime: int, task_type: str, task_id: str, user: str
) -> str:
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{task_id}:{user}:"


UPID_PATTERN = re.compile(
    r"UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):"
)


def random_mac(rng: random.Random) -> str:
    # BC:24:11 is the Proxmox Server Solutions OUI that PVE uses for generated MACs.
    return "BC:24:11:" + ":".join(f"{rng.randrange(256):02X}" for _ in range(3))


@dataclass
class Node:
    name: str
    online: bool = True
    storages: tuple[str, ...] = ("local", "local-lvm", "ceph-rbd")
    tasks_running: int = 0
    max_tasks_running: int = 0
