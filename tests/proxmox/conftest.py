from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxmox_vm_operator.proxmox import ConnectionSettings, ProxmoxClient

from .pve_wire import TOKEN_ID, TOKEN_SECRET, FakePve, Pki, make_pki, serve


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fake_pve(pki: Pki) -> Iterator[FakePve]:
    with serve(pki) as fake:
        yield fake


@pytest.fixture
def secret_data(fake_pve: FakePve, pki: Pki) -> dict[str, str]:
    return {
        "endpoint": fake_pve.endpoint,
        "tokenId": TOKEN_ID,
        "tokenSecret": TOKEN_SECRET,
        "caCert": pki.cert_pem,
    }


@pytest.fixture
def client(secret_data: dict[str, str]) -> Iterator[ProxmoxClient]:
    proxmox = ProxmoxClient(ConnectionSettings.from_secret_data(secret_data), read_timeout=10)
    yield proxmox
    proxmox.close()
