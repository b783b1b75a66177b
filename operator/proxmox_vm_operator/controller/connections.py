"""One Proxmox client per credentials Secret, rebuilt when the Secret changes.

The Secret is read at most once per `reread_after` seconds, not on every pass of every object:
a change to it (a rotated token, a new endpoint) is seen within that time, or at once after
`forget` (the controller calls it when Proxmox refuses the token).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..kube import SecretData, SecretUnavailable, read_secret
from ..proxmox import (
    ApiCall,
    ApiCallObserver,
    ConnectionSettings,
    InvalidConnectionSettings,
    ProxmoxClient,
)


class ConnectionUnavailable(Exception):
    """No client can be built: the Secret is missing, unreadable or invalid."""


SecretKey = tuple[str, str]  # (namespace, name)
SecretReader = Callable[[str, str], Awaitable[SecretData]]


@dataclass
class _Entry:
    resource_version: str
    client: ProxmoxClient
    read_number: int  # of the newest read that found this resource_version
    read_at: float  # when that read was asked, on the pool's clock


class ClientPool:
    def __init__(
        self,
        *,
        observer: ApiCallObserver | None = None,
        secret_reader: SecretReader = read_secret,
        reread_after: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``reread_after``: seconds a successful read of a Secret is trusted; 0 reads it on
        every call. ``monotonic``: the clock that is measured on."""
        self._observer = observer
        self._read_secret = secret_reader
        self._reread_after = reread_after
        self._monotonic = monotonic
        self._clients: dict[SecretKey, _Entry] = {}
        # Reads are numbered in the order they are asked, so that a slow read never
        # overrides what a later one found, and `forget` can tell reads asked before it.
        self._reads_started = 0
        self._forgotten_at_read: dict[SecretKey, int] = {}
        self._reads_in_flight: dict[SecretKey, asyncio.Task[ProxmoxClient]] = {}

    async def client(self, namespace: str, secret_name: str) -> ProxmoxClient:
        """The client for the Secret's credentials. The Secret is read again once
        `reread_after` has passed since the last successful read, or after `forget`; callers
        needing a read meanwhile share one. A failed read or invalid settings are raised as
        ConnectionUnavailable (to every caller sharing the read) and never kept."""
        key = (namespace, secret_name)
        entry = self._clients.get(key)
        if entry is not None and self._trusted(key, entry):
            return entry.client
        read = self._reads_in_flight.get(key)
        if read is None or read.get_loop() is not asyncio.get_running_loop():
            read = self._start_read(key)
        # A cancelled caller must not cancel the read that others have joined.
        return await asyncio.shield(read)

    def _saw_call(self, namespace: str, secret_name: str, call: ApiCall) -> None:
        """Every answer of the Secret's client passes here: a 401 means the token may have
        been rotated, so the next pass reads the Secret again rather than wait out
        ``reread_after`` with a token Proxmox refuses."""
        if call.status_code == 401:
            self.forget(namespace, secret_name)
        if self._observer is not None:
            self._observer(call)

    def forget(self, namespace: str, secret_name: str) -> None:
        """Read the Secret again on the next `client` call (Proxmox refused the token: it may
        have been rotated). The client stays open: calls may be in flight on it."""
        key = (namespace, secret_name)
        self._forgotten_at_read[key] = self._reads_started
        # A read asked before now may return the old token: later callers must not join it.
        self._reads_in_flight.pop(key, None)

    def close(self) -> None:
        # Reads in flight are left to end (close may run outside their loop); none is joined.
        self._reads_in_flight.clear()
        for entry in self._clients.values():
            entry.client.close()
        self._clients.clear()

    def _trusted(self, key: SecretKey, entry: _Entry) -> bool:
        if entry.read_number <= self._forgotten_at_read.get(key, 0):
            return False
        return self._monotonic() - entry.read_at < self._reread_after

    def _start_read(self, key: SecretKey) -> asyncio.Task[ProxmoxClient]:
        self._reads_started += 1
        read = asyncio.create_task(self._read(key, self._reads_started, self._monotonic()))
        self._reads_in_flight[key] = read
        read.add_done_callback(_retrieve_error)
        return read

    async def _read(self, key: SecretKey, read_number: int, read_at: float) -> ProxmoxClient:
        namespace, secret_name = key
        try:
            secret = await self._read_secret(namespace, secret_name)
        except SecretUnavailable as exc:
            raise ConnectionUnavailable(str(exc)) from None
        finally:
            # Here rather than in a done callback, so that no caller joins a finished read.
            if self._reads_in_flight.get(key) is asyncio.current_task():
                del self._reads_in_flight[key]
        entry = self._clients.get(key)
        if entry is not None and entry.read_number > read_number:
            return entry.client  # a later read has already decided
        if entry is not None and entry.resource_version == secret.resource_version:
            entry.read_number, entry.read_at = read_number, read_at
            return entry.client
        try:
            settings = ConnectionSettings.from_secret_data(secret.data)
        except InvalidConnectionSettings as exc:
            raise ConnectionUnavailable(
                f"Secret {namespace}/{secret_name}: {'; '.join(exc.problems)}"
            ) from None
        if entry is not None:
            entry.client.close()
        # A hung Proxmox must not hold a destroy pass for long: fail the call, retry later.
        client = ProxmoxClient(
            settings,
            observer=functools.partial(self._saw_call, namespace, secret_name),
            connect_timeout=5.0,
            read_timeout=20.0,
        )
        self._clients[key] = _Entry(secret.resource_version, client, read_number, read_at)
        return client


def _retrieve_error(read: asyncio.Task[ProxmoxClient]) -> None:
    # Every caller of a read may have been cancelled; this keeps asyncio from logging its
    # error as never retrieved.
    if not read.cancelled():
        read.exception()
