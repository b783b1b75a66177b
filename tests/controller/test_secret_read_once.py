"""The credentials Secret is read once per `reread_after`, not on every pass of every object."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxmox_vm_operator.controller.connections import ClientPool, ConnectionUnavailable
from proxmox_vm_operator.kube import SecretData, SecretUnavailable
from proxmox_vm_operator.proxmox import ProxmoxClient

from ..proxmox.pve_wire import make_pki

NAMESPACE, NAME = "lab", "pve"
REREAD_AFTER = 60.0


class ManualClock:
    """The pool's monotonic clock, moved only by the test."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingSecrets:
    """An async Secret reader that counts reads. Each read takes the Secret as it is when
    asked; with `hold` set it then waits until the test releases it (`release`)."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data: dict[str, str] | None = dict(data)
        self.resource_version = 1
        self.reads = 0
        self.hold = False
        self.held: list[asyncio.Event] = []
        self.read_started = asyncio.Event()

    def update(self, **changes: str) -> None:
        self.data = {**(self.data or {}), **changes}
        self.resource_version += 1

    def remove(self) -> None:
        self.data = None
        self.resource_version += 1

    async def next_read_started(self) -> None:
        await self.read_started.wait()
        self.read_started.clear()

    def release(self, index: int) -> None:
        self.held[index].set()

    async def __call__(self, namespace: str, name: str) -> SecretData:
        self.reads += 1
        data, version = self.data, str(self.resource_version)
        self.read_started.set()
        if self.hold:
            released = asyncio.Event()
            self.held.append(released)
            await released.wait()
        if data is None or (namespace, name) != (NAMESPACE, NAME):
            raise SecretUnavailable(f"Secret {namespace}/{name} not found")
        return SecretData(version, dict(data))


@pytest.fixture
def secret_data(tmp_path: Path) -> dict[str, str]:
    # With a CA the client writes it to a file that `close()` removes: a visible close.
    return {
        "endpoint": "https://pve.example:8006",
        "tokenId": "root@pam!ci",
        "tokenSecret": "9d2f3c1e-7b4a-4e8c-a1d5-0f6e2b7c9a13",
        "caCert": make_pki(tmp_path).cert_pem,
    }


@pytest.fixture
def secrets(secret_data: dict[str, str]) -> CountingSecrets:
    return CountingSecrets(secret_data)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def pool(secrets: CountingSecrets, clock: ManualClock) -> Iterator[ClientPool]:
    clients = ClientPool(secret_reader=secrets, reread_after=REREAD_AFTER, monotonic=clock)
    yield clients
    clients.close()


def is_open(client: ProxmoxClient) -> bool:
    return client.ca_file is not None and os.path.exists(client.ca_file)


async def test_a_read_secret_is_reused_within_reread_after(
    pool: ClientPool, secrets: CountingSecrets, clock: ManualClock
) -> None:
    first = await pool.client(NAMESPACE, NAME)
    clock.now += REREAD_AFTER - 0.1
    assert await pool.client(NAMESPACE, NAME) is first
    assert secrets.reads == 1


async def test_after_reread_after_the_secret_is_read_again_and_an_unchanged_one_keeps_the_client(
    pool: ClientPool, secrets: CountingSecrets, clock: ManualClock
) -> None:
    first = await pool.client(NAMESPACE, NAME)
    clock.now += REREAD_AFTER
    assert await pool.client(NAMESPACE, NAME) is first
    assert secrets.reads == 2 and is_open(first)
    # The re-read counts from its own time.
    clock.now += REREAD_AFTER - 0.1
    await pool.client(NAMESPACE, NAME)
    assert secrets.reads == 2


async def test_a_new_resource_version_rebuilds_the_client_and_closes_the_old_one(
    pool: ClientPool, secrets: CountingSecrets, clock: ManualClock
) -> None:
    first = await pool.client(NAMESPACE, NAME)
    secrets.update(tokenSecret="0f6e2b7c-9a13-4e8c-a1d5-9d2f3c1e7b4a")
    clock.now += REREAD_AFTER
    rebuilt = await pool.client(NAMESPACE, NAME)
    assert rebuilt is not first
    assert rebuilt.settings.token_secret.get_secret_value() == (
        "0f6e2b7c-9a13-4e8c-a1d5-9d2f3c1e7b4a"
    )
    assert not is_open(first) and is_open(rebuilt)


async def test_a_failed_read_is_not_kept_and_clears_once_the_secret_is_back(
    pool: ClientPool, secrets: CountingSecrets, clock: ManualClock, secret_data: dict[str, str]
) -> None:
    await pool.client(NAMESPACE, NAME)
    secrets.remove()
    clock.now += REREAD_AFTER
    for reads in (2, 3):
        with pytest.raises(ConnectionUnavailable, match="not found"):
            await pool.client(NAMESPACE, NAME)
        assert secrets.reads == reads
    secrets.update(**secret_data)
    await pool.client(NAMESPACE, NAME)
    assert secrets.reads == 4


async def test_invalid_settings_are_not_kept(
    pool: ClientPool, secrets: CountingSecrets, secret_data: dict[str, str]
) -> None:
    secrets.update(tokenId="not-a-token-id")
    for reads in (1, 2):
        with pytest.raises(ConnectionUnavailable, match="tokenId"):
            await pool.client(NAMESPACE, NAME)
        assert secrets.reads == reads
    secrets.update(tokenId=secret_data["tokenId"])
    await pool.client(NAMESPACE, NAME)
    assert secrets.reads == 3


async def test_forget_makes_the_next_call_read_the_secret_and_leaves_the_client_open(
    pool: ClientPool, secrets: CountingSecrets
) -> None:
    first = await pool.client(NAMESPACE, NAME)
    pool.forget(NAMESPACE, NAME)
    assert is_open(first)
    assert await pool.client(NAMESPACE, NAME) is first
    assert secrets.reads == 2
    # The read after forget() counts as a fresh one.
    await pool.client(NAMESPACE, NAME)
    assert secrets.reads == 2


async def test_forget_after_a_rotation_gives_the_new_token_at_once(
    pool: ClientPool, secrets: CountingSecrets
) -> None:
    first = await pool.client(NAMESPACE, NAME)
    secrets.update(tokenSecret="0f6e2b7c-9a13-4e8c-a1d5-9d2f3c1e7b4a")
    pool.forget(NAMESPACE, NAME)
    rotated = await pool.client(NAMESPACE, NAME)
    assert rotated is not first
    assert rotated.settings.token_secret.get_secret_value() == (
        "0f6e2b7c-9a13-4e8c-a1d5-9d2f3c1e7b4a"
    )


async def test_concurrent_callers_share_one_read(
    pool: ClientPool, secrets: CountingSecrets
) -> None:
    secrets.hold = True
    callers = [asyncio.create_task(pool.client(NAMESPACE, NAME)) for _ in range(5)]
    await secrets.next_read_started()
    secrets.release(0)
    clients = await asyncio.gather(*callers)
    assert secrets.reads == 1
    assert all(client is clients[0] for client in clients)


async def test_a_failed_shared_read_is_raised_to_every_caller(
    pool: ClientPool, secrets: CountingSecrets
) -> None:
    secrets.remove()
    secrets.hold = True
    callers = [asyncio.create_task(pool.client(NAMESPACE, NAME)) for _ in range(3)]
    await secrets.next_read_started()
    secrets.release(0)
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert secrets.reads == 1
    assert all(isinstance(outcome, ConnectionUnavailable) for outcome in outcomes), outcomes


async def test_a_cancelled_caller_leaves_the_shared_read_to_the_others(
    pool: ClientPool, secrets: CountingSecrets
) -> None:
    secrets.hold = True
    cancelled = asyncio.create_task(pool.client(NAMESPACE, NAME))
    joined = asyncio.create_task(pool.client(NAMESPACE, NAME))
    await secrets.next_read_started()
    cancelled.cancel()
    secrets.release(0)
    assert is_open(await joined)
    assert secrets.reads == 1


async def test_a_read_asked_before_forget_is_not_joined_nor_overrides_a_later_one(
    pool: ClientPool, secrets: CountingSecrets
) -> None:
    secrets.hold = True
    before_forget = asyncio.create_task(pool.client(NAMESPACE, NAME))
    await secrets.next_read_started()
    pool.forget(NAMESPACE, NAME)
    secrets.update(tokenSecret="0f6e2b7c-9a13-4e8c-a1d5-9d2f3c1e7b4a")
    after_forget = asyncio.create_task(pool.client(NAMESPACE, NAME))
    await secrets.next_read_started()
    assert secrets.reads == 2

    # The later read ends first; the earlier one, with the old token, must not replace it.
    secrets.release(1)
    rotated = await after_forget
    secrets.release(0)
    assert await before_forget is rotated
    assert is_open(rotated)
    assert await pool.client(NAMESPACE, NAME) is rotated
    assert secrets.reads == 2


async def test_reread_after_zero_reads_on_every_call(
    secrets: CountingSecrets, clock: ManualClock
) -> None:
    pool = ClientPool(secret_reader=secrets, reread_after=0, monotonic=clock)
    try:
        for _ in range(3):
            await pool.client(NAMESPACE, NAME)
        assert secrets.reads == 3
    finally:
        pool.close()
