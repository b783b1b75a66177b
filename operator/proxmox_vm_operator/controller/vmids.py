"""VMIDs for objects without ``spec.vmid``, handed out inside the operator.

Proxmox's ``/cluster/nextid`` reserves nothing: objects created together all get the same id,
the first create wins it and every other object retries on the next one, one backed-off pass
per lost race. So the operator serialises allocation per Proxmox cluster and remembers what it
handed out until the create has had time to land; the next object gets the next free id at
once. The memory is bounded: an id is held for ``hold_seconds``, by when its VM exists (and
``nextid`` skips it) or its object has moved on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..proxmox import ProxmoxClient

# Long enough for a create to land after its VMID was recorded, whatever the queue.
HOLD_SECONDS = 600.0


class VmidAllocator:
    def __init__(
        self,
        hold_seconds: float = HOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hold_seconds = hold_seconds
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: dict[str, dict[int, float]] = {}  # cluster -> vmid -> held until

    def held(self, client: ProxmoxClient) -> set[int]:
        """The ids handed out on the client's cluster and still held."""
        return set(self._prune(client.settings.endpoint))

    async def allocate(self, client: ProxmoxClient) -> int:
        """A VMID that is free in Proxmox and not handed out to another object.

        Costs one ``nextid`` and, when that id is held, one check per id tried above it.
        Raises ProxmoxError when Proxmox cannot answer.
        """
        cluster = client.settings.endpoint
        lock = self._locks.setdefault(cluster, asyncio.Lock())
        async with lock:
            held = self._prune(cluster)
            candidate = await client.next_vmid()
            free = True  # nextid's own answer is free in Proxmox; ids above it are checked
            while candidate in held or not (free or await client.vmid_unused(candidate)):
                candidate += 1
                free = False
            held[candidate] = self.clock() + self.hold_seconds
            return candidate

    def _prune(self, cluster: str) -> dict[int, float]:
        now = self.clock()
        held = self._held.setdefault(cluster, {})
        for vmid in [v for v, until in held.items() if until <= now]:
            del held[vmid]
        return held
