"""Fixtures for driving the simulator through the real proxmoxer client over TLS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from proxmox_vm_operator.simulator import Simulator

from .helpers import TOKEN_ID, TOKEN_SECRET, client_for, wait_for_task


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(nodes=["pve1", "pve2"], tokens={TOKEN_ID: TOKEN_SECRET}, time_scale=50) as s:
        yield s


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """Start extra simulators with other settings (timings, users, clock); stopped afterwards."""
    started: list[Simulator] = []

    def make(**kwargs: Any) -> Simulator:
        settings: dict[str, Any] = {
            "nodes": ["pve1", "pve2"],
            "tokens": {TOKEN_ID: TOKEN_SECRET},
            "time_scale": 50,
        }
        settings.update(kwargs)
        simulator = Simulator(**settings).start()
        started.append(simulator)
        return simulator

    yield make
    for simulator in started:
        simulator.stop()


@pytest.fixture
def px(sim: Simulator) -> Any:
    return client_for(sim)


@pytest.fixture
def wait_task(px: Any) -> Callable[..., dict[str, Any]]:
    """Poll a task until it stops (bounded) and return its final status."""

    def wait(upid: str, node: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
        status = wait_for_task(px, upid, timeout)
        if node is not None:
            assert status["node"] == node
        return status

    return wait
