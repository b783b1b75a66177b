"""The Proxmox VE release the simulator pretends to be, and what differs between releases.

Only differences on the paths the simulator serves are modelled: a parameter a release does
not know is refused as unknown, exactly as that release's JSON schema would refuse it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# The oldest and the newest releases whose differences are modelled here.
OLDEST = (7, 4)
NEWEST_MAJOR = 9


@dataclass(frozen=True, order=True)
class PveVersion:
    """A pve-manager version such as ``9.1.1`` (``GET /version`` ``version``)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> PveVersion:
        """``9.1.1``; the 7.x style ``7.4-17`` is accepted too. Outside 7.4 .. 9.x is refused."""
        match = re.fullmatch(r"(\d+)\.(\d+)(?:[.-](\d+))?", text.strip())
        if match is None:
            raise ValueError(
                f"not a Proxmox VE version: {text!r} (supported: 7.4 up to {NEWEST_MAJOR}.x, "
                "such as 9.1.1)"
            )
        version = cls(int(match[1]), int(match[2]), int(match[3] or 0))
        if (version.major, version.minor) < OLDEST or version.major > NEWEST_MAJOR:
            raise ValueError(
                f"Proxmox VE {text} is not simulated: supported are 7.4 up to {NEWEST_MAJOR}.x"
            )
        return version

    def __str__(self) -> str:
        # pve-manager 7.x versions read "7.4-17"; from 8.0 on "8.0.4".
        separator = "-" if self.major < 8 else "."
        return f"{self.major}.{self.minor}{separator}{self.patch}"

    @property
    def release(self) -> str:
        """The point release ``x.y`` (pve-manager PVE/API2.pm version: ``release``)."""
        return f"{self.major}.{self.minor}"

    @property
    def repoid(self) -> str:
        """A stable stand-in for the short git revision of the pve-manager build."""
        known = KNOWN_REPOIDS.get(str(self))
        if known is not None:
            return known
        return hashlib.sha1(str(self).encode(), usedforsecurity=False).hexdigest()[:8]

    def at_least(self, release: tuple[int, int]) -> bool:
        return (self.major, self.minor) >= release

    @property
    def qemu(self) -> str:
        """The pve-qemu-kvm version the release ships (``running-qemu``, ``creation-qemu``)."""
        for release, qemu in QEMU_BY_RELEASE:
            if self.at_least(release):
                return qemu
        return QEMU_BY_RELEASE[-1][1]


# The QEMU each point release shipped with, newest first.
QEMU_BY_RELEASE: tuple[tuple[tuple[int, int], str], ...] = (
    ((9, 1), "10.1.2"),
    ((9, 0), "10.0.2"),
    ((8, 4), "9.2.0"),
    ((8, 3), "9.0.2"),
    ((8, 2), "8.1.5"),
    ((8, 1), "8.1.2"),
    ((8, 0), "8.0.2"),
    ((7, 4), "7.2.0"),
)

DEFAULT_VERSION = "9.1.1"
# Kept from before versions were configurable, so the default's answer does not change.
KNOWN_REPOIDS = {DEFAULT_VERSION: "4e4f7a1c"}

# Parameters of the served paths that older releases do not know, by the release that added
# them (the first pve-manager point release shipping the qemu-server version that did).
# qemu-server commit 50b5893b "fix #4474: qemu api: add overrule-shutdown parameter to stop
# endpoint", released in qemu-server 8.1.2, shipped with PVE 8.2.
OVERRULE_SHUTDOWN = (8, 2)
# qemu-server efa3355d "fix #3428: cloudinit: add parameter for upgrade on boot", 8.0.2.
CIUPGRADE = (8, 0)
# qemu-server 14823177 "api: create/store: allow adding VM as HA resource after creation",
# released in qemu-server 9.0.24, shipped with PVE 9.1.
HA_MANAGED = (9, 1)
