"""Typed views of the Proxmox VE answers the operator uses, holding only what it reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# pve-common UPID.pm; the trailing colon is part of the format.
_UPID = re.compile(
    r"UPID:(?P<node>[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s/]+):"
    r"(?P<id>[^:\s/]*):(?P<user>[^:\s/]+):"
)
_TAG_SEPARATORS = re.compile(r"[;,\s]+")


@dataclass(frozen=True)
class Upid:
    """A task id. `str(upid)` gives it back exactly as Proxmox wrote it."""

    raw: str
    node: str
    starttime: int
    type: str
    id: str
    user: str  # includes "!tokenname" for token-started tasks

    def __str__(self) -> str:
        return self.raw


def parse_upid(text: str) -> Upid:
    """Parse `UPID:{node}:{pid}:{pstart}:{starttime}:{type}:{id}:{user}:`; ValueError if not one."""
    found = _UPID.fullmatch(text)
    if not found:
        raise ValueError(f"not a Proxmox task id (UPID): {text!r}")
    return Upid(
        raw=text,
        node=found["node"],
        starttime=int(found["starttime"], 16),
        type=found["type"],
        id=found["id"],
        user=found["user"],
    )


def parse_tags(value: object) -> tuple[str, ...]:
    """PVE splits `tags` on ';', ',' or whitespace; it lower-cases and sorts them when stored."""
    if not value:
        return ()
    return tuple(tag for tag in _TAG_SEPARATORS.split(str(value)) if tag)


def _flag(value: object) -> bool:
    return value is not None and int(str(value)) == 1


def _optional_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True)
class ProxmoxVersion:
    version: str  # e.g. "8.2.4"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ProxmoxVersion:
        return cls(str(data["version"]))

    @property
    def number(self) -> tuple[int, ...]:
        """``8.1.4`` as (8, 1, 4); ``8.2.0~rc1`` as (8, 2, 0); unparsable parts end it."""
        parts: list[int] = []
        for part in re.split(r"[.~-]", self.version):
            if not part.isdigit():
                break
            parts.append(int(part))
        return tuple(parts)

    @property
    def knows_overrule_shutdown(self) -> bool:
        """`status/stop` takes `overrule-shutdown` since qemu-server 8.1.2, shipped with PVE
        8.2; older versions refuse the unknown parameter with 400."""
        return self.number >= (8, 2)


@dataclass(frozen=True)
class ActiveTask:
    """A running task from `GET /nodes/{node}/tasks?source=active`."""

    upid: Upid
    user: str  # who started it; for a token "user@realm!token"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ActiveTask:
        upid = parse_upid(str(data["upid"]))
        # Running entries carry the full user, index entries split off "tokenid".
        user = str(data.get("user") or upid.user)
        if data.get("tokenid") and "!" not in user:
            user = f"{user}!{data['tokenid']}"
        return cls(upid, user)


@dataclass(frozen=True)
class VmResource:
    """One QEMU entry of `/cluster/resources?type=vm`. Its power status lags ~10 s behind
    (pvestatd's broadcast): `vm_status` is authoritative, this one only says that nothing
    seems to have changed (a periodic check of an idle object)."""

    vmid: int
    node: str
    tags: tuple[str, ...]
    lock: str | None
    # running | stopped | unknown, as pvestatd last broadcast it: up to ~10 s old.
    status: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> VmResource:
        return cls(
            vmid=int(data["vmid"]),
            node=str(data["node"]),
            tags=parse_tags(data.get("tags")),
            lock=_optional_str(data.get("lock")),
            status=_optional_str(data.get("status")),
        )


@dataclass(frozen=True)
class VmStatus:
    """`status/current`, the authoritative power state. Paused shows status=running."""

    status: str  # running | stopped
    qmpstatus: str | None  # running, paused, prelaunch, suspended, ...
    ha_managed: bool

    @property
    def running(self) -> bool:
        return self.status == "running"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> VmStatus:
        ha = data.get("ha") or {}
        return cls(
            status=str(data["status"]),
            qmpstatus=_optional_str(data.get("qmpstatus")),
            ha_managed=_flag(ha.get("managed")),
        )


@dataclass(frozen=True)
class VmConfig:
    """The config with pending changes merged in, and the digest to send back with writes."""

    digest: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def protected(self) -> bool:
        return _flag(self.values.get("protection"))

    @property
    def lock(self) -> str | None:
        return _optional_str(self.values.get("lock"))

    @property
    def tags(self) -> tuple[str, ...]:
        return parse_tags(self.values.get("tags"))

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> VmConfig:
        values = {key: value for key, value in data.items() if key != "digest"}
        return cls(digest=str(data["digest"]), values=values)


@dataclass(frozen=True)
class TaskStatus:
    """`GET /nodes/{node}/tasks/{upid}/status`."""

    status: str  # running | stopped
    exitstatus: str | None  # set once stopped: OK, "WARNINGS: N" or the error text

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ok(self) -> bool:
        return self.exitstatus is not None and (
            self.exitstatus == "OK" or self.exitstatus.startswith("WARNINGS")
        )

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> TaskStatus:
        return cls(status=str(data["status"]), exitstatus=_optional_str(data.get("exitstatus")))
