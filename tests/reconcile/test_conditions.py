"""The Ready condition: lastTransitionTime moves only when its status changes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from .driver import Driver


def transitions(driver: Driver) -> list[tuple[str, str, str]]:
    """(status, reason, lastTransitionTime) of Ready after each pass."""
    result = []
    for record in driver.passes:
        [ready] = [c for c in record.status["conditions"] if c["type"] == "Ready"]
        result.append((ready["status"], ready["reason"], ready["lastTransitionTime"]))
    return result


def stamp(driver: Driver, number: int) -> str:
    return driver.passes[number - 1].now.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_last_transition_time_changes_only_when_the_status_changes(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.settle()
    await driver.run_passes(2)  # steady: True stays True
    driver.update_spec(cores=2)  # back to False (Updating), then True again
    await driver.settle()

    seen = transitions(driver)
    reasons = [reason for _, reason, _ in seen]
    assert "Provisioning" in reasons and "Starting" in reasons and "Updating" in reasons
    previous_status, previous_time = None, None
    for number, (status, reason, moved_at) in enumerate(seen, start=1):
        if status != previous_status:
            assert moved_at == stamp(driver, number), (number, status, reason)
        else:
            assert moved_at == previous_time, (number, status, reason)
        previous_status, previous_time = status, moved_at
    # Sanity: the walk above saw each kind of step.
    statuses = [status for status, _, _ in seen]
    assert statuses[0] == "False" and statuses[-1] == "True"
    assert any(a == b == "False" for a, b in itertools.pairwise(statuses))
    assert any(a == b == "True" for a, b in itertools.pairwise(statuses))
    assert ("True", "False") in itertools.pairwise(statuses)


async def test_each_condition_appears_once_with_the_observed_generation(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.settle()
    driver.update_spec(memoryMiB=1024)
    await driver.settle()

    conditions = driver.status["conditions"]
    assert [c["type"] for c in conditions] == ["Ready", "Reconciling", "Stalled"]
    assert [c["observedGeneration"] for c in conditions] == [2, 2, 2]
    assert driver.status["observedGeneration"] == 2
