"""Fixtures for driving the simulator through the real proxmoxer client over TLS."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI

from proxmox_vm_operator.simulator import Simulator

TOKEN_ID = "root@pam!ci"
TOKEN_SECRET = "s3cret"  # a test credential for the simulator only


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(nodes=["pve1", "pve2"], tokens={TOKEN_ID: TOKEN_SECRET}, time_scale=50) as s:
        yield s


def client_for(sim: Simulator, token_value: str = TOKEN_SECRET, **kwargs: Any) -> Any:
    return ProxmoxAPI(
        sim.host,
        port=sim.port,
        user="root@pam",
        token_name="ci",
        token_value=token_value,
        verify_ssl=str(sim.ca_file),
        **kwargs,
    )


@pytest.fixture
def px(sim: Simulator) -> Any:
    return client_for(sim)


@pytest.fixture
def wait_task(px: Any) -> Callable[..., dict[str, Any]]:
    """Poll a task until it stops (bounded) and return its final status."""

    def wait(upid: str, node: str = "pve1", timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = px.nodes(node).tasks(upid).status.get()
            if status["status"] == "stopped":
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"task {upid} still running after {timeout}s")
            time.sleep(0.02)

    return wait
