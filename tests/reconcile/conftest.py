"""Fixtures: a simulator over TLS, the real client pool reading a fake Secret, a driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from proxmox_vm_operator.controller.connections import ClientPool
from proxmox_vm_operator.controller.reconciler import Reconciler
from proxmox_vm_operator.proxmox import ConnectionSettings, ProxmoxClient
from proxmox_vm_operator.simulator import Simulator

from .driver import TOKEN_ID, TOKEN_SECRET, Driver, FakeSecrets, base_spec, fake_secrets, pool_for


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(
        nodes=["pve1", "pve2"], tokens={TOKEN_ID: TOKEN_SECRET}, time_scale=50, seed=7
    ) as simulator:
        yield simulator


@pytest.fixture
def secrets(sim: Simulator) -> FakeSecrets:
    return fake_secrets(sim)


@pytest.fixture
def pool(secrets: FakeSecrets) -> Iterator[ClientPool]:
    clients = pool_for(secrets)
    yield clients
    clients.close()


@pytest.fixture
def make_driver(sim: Simulator, pool: ClientPool) -> Callable[..., Driver]:
    """``make_driver(cores=2, ...)``: an object with ``base_spec(**fields)`` as its spec."""
    reconciler = Reconciler(pool)

    def make(**spec: Any) -> Driver:
        return Driver(sim, reconciler, base_spec(**spec))

    return make


@pytest.fixture
async def admin(sim: Simulator, secrets: FakeSecrets) -> AsyncIterator[ProxmoxClient]:
    """The real client, for changes made in Proxmox behind the operator's back."""
    assert secrets.data is not None
    client = ProxmoxClient(ConnectionSettings.from_secret_data(secrets.data), read_timeout=10)
    yield client
    client.close()
