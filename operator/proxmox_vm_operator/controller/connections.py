"""One Proxmox client per credentials Secret, rebuilt when the Secret changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..kube import SecretData, SecretUnavailable, read_secret
from ..proxmox import ApiCallObserver, ConnectionSettings, InvalidConnectionSettings, ProxmoxClient


class ConnectionUnavailable(Exception):
    """No client can be built: the Secret is missing, unreadable or invalid."""


@dataclass
class _Entry:
    resource_version: str
    client: ProxmoxClient


SecretReader = Callable[[str, str], Awaitable[SecretData]]


class ClientPool:
    def __init__(
        self,
        *,
        observer: ApiCallObserver | None = None,
        secret_reader: SecretReader = read_secret,
    ) -> None:
        self._observer = observer
        self._read_secret = secret_reader
        self._clients: dict[tuple[str, str], _Entry] = {}
        self._lock = asyncio.Lock()

    async def client(self, namespace: str, secret_name: str) -> ProxmoxClient:
        try:
            secret = await self._read_secret(namespace, secret_name)
        except SecretUnavailable as exc:
            raise ConnectionUnavailable(str(exc)) from None
        key = (namespace, secret_name)
        async with self._lock:
            entry = self._clients.get(key)
            if entry is not None and entry.resource_version == secret.resource_version:
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
                settings, observer=self._observer, connect_timeout=5.0, read_timeout=20.0
            )
            self._clients[key] = _Entry(secret.resource_version, client)
            return client

    def close(self) -> None:
        for entry in self._clients.values():
            entry.client.close()
        self._clients.clear()
