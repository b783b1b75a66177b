"""Fixtures: a simulator per test, its credentials Secret, and a driver playing kopf."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from proxmox_vm_operator.controller.pace import Pace
from proxmox_vm_operator.simulator.server import Simulator

from .driver import Driver, FakeSecrets, Operator, fake_secrets, new_simulator

MakeDriver = Callable[..., Driver]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = new_simulator()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def secrets(sim: Simulator) -> FakeSecrets:
    return fake_secrets(sim)


@pytest.fixture
def make_driver(sim: Simulator, secrets: FakeSecrets) -> Iterator[MakeDriver]:
    """``make_driver(stall_after=..., per_node=..., pace=...)``: a driver with its own
    operator (by default one step per pass, as the tests of single steps want)."""
    operators: list[Operator] = []

    def make(*, stall_after: float = 600.0, per_node: int = 4, pace: Pace | None = None) -> Driver:
        operator = Operator(secrets, stall_after=stall_after, per_node=per_node, pace=pace)
        operators.append(operator)
        return Driver(sim, operator)

    yield make
    for operator in operators:
        operator.close()


@pytest.fixture
def driver(make_driver: MakeDriver) -> Driver:
    return make_driver()
