from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from .helpers import CRDS_URL, HTTP, manifest


@pytest.fixture
def server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(bookmark_interval=0.2) as server:
        yield server
        failures = server.call(lambda api: list(api.errors)) if server.running else []
        assert failures == [], "the emulator failed on some requests"


@pytest.fixture
def http(server: KubeAPIServer) -> HTTP:
    return HTTP(server.url)


@pytest.fixture
def crd(http: HTTP) -> dict[str, Any]:
    """The ProxmoxVM CRD, created over HTTP."""
    response = http.post(CRDS_URL, manifest("proxmoxvm-crd.yaml"))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
