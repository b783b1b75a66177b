"""The per-node task budget's counting (controller/budget.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.controller import budget as budget_module
from proxmox_vm_operator.controller.budget import TaskBudget

NODE = "https://pve:8006/pve1"
UPID = "UPID:pve1:00000001:00000001:6B000000:qmcreate:100:root@pam!op:"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(budget_module.time, "monotonic", fake)
    return fake


def test_a_listing_asked_while_the_call_was_in_flight_does_not_end_its_task(
    clock: Clock,
) -> None:
    """The listing may be served before Proxmox starts the task: it cannot show it yet."""
    budget = TaskBudget(per_node=1)
    reservation = budget.reserve(NODE)
    assert reservation is not None
    clock.now = 101.0
    listing_asked = clock.now  # another pass lists the node; our call is still in flight
    clock.now = 102.0
    budget.started(reservation, UPID)  # the call returns after the listing was asked
    budget.observe(NODE, [], asked_at=listing_asked)  # ... and the listing lacks the task
    assert budget.in_flight(NODE) == 1
    assert budget.reserve(NODE) is None  # still full


def test_a_listing_asked_after_the_call_returned_is_trusted(clock: Clock) -> None:
    budget = TaskBudget(per_node=1)
    reservation = budget.reserve(NODE)
    assert reservation is not None
    budget.started(reservation, UPID)
    clock.now = 105.0
    budget.observe(NODE, [], asked_at=clock.now)  # not listed: it ended
    assert budget.in_flight(NODE) == 0
    assert budget.reserve(NODE) is not None


def test_a_reserved_call_counts_until_it_returns_whatever_the_listings_say(clock: Clock) -> None:
    budget = TaskBudget(per_node=2)
    first = budget.reserve(NODE)
    clock.now = 110.0
    budget.observe(NODE, [], asked_at=clock.now)
    assert first is not None and budget.in_flight(NODE) == 1
    budget.finished(first)  # the call failed: the slot is free again
    assert budget.in_flight(NODE) == 0
