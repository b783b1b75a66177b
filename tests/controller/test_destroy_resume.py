"""A restarted operator resumes from status.destroy alone: no second destructive call.

Each restart replaces the Destroyer, its client pool and its task budget; the only thing that
survives is the object's persisted status (vmid and destroy), as in a real restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .driver import Destroy, Driver, calls, ownership_tag, proxmox_vm, run_until

VMID = 108
FROZEN_GUEST = GuestBehaviour(obeys_acpi=False)
SHUTDOWN = {"mode": "Shutdown", "shutdownTimeoutSeconds": 30}


def _task_of(destroy: Destroy, kind: str) -> bool:
    record = destroy.record or {}
    return f":{kind}:" in (record.get("taskUpid") or "")


def _in_shutdown_wait(destroy: Destroy) -> bool:
    record = destroy.record or {}
    return record.get("step") == "WaitingForShutdown" and destroy.passes[-1].at >= 10


Case = tuple[dict[str, Any] | None, Callable[[Destroy], bool], dict[str, int]]
CASES: dict[str, Case] = {
    "stop-task-in-flight": (None, lambda d: _task_of(d, "qmstop"), {"stop": 1, "delete": 1}),
    "shutdown-wait": (SHUTDOWN, _in_shutdown_wait, {"shutdown": 1, "stop": 1, "delete": 1}),
    "forced-stop-in-flight": (
        SHUTDOWN,
        lambda d: _task_of(d, "qmstop"),
        {"shutdown": 1, "stop": 1, "delete": 1},
    ),
    "delete-task-in-flight": (None, lambda d: _task_of(d, "qmdestroy"), {"stop": 1, "delete": 1}),
}


def _assert_calls(sim: Simulator, expected: dict[str, int]) -> None:
    requests = sim.requests
    for name in ("shutdown", "stop", "delete"):
        assert len(calls(requests, name, VMID)) == expected.get(name, 0), name


@pytest.mark.parametrize("case", list(CASES))
async def test_a_restart_resumes_the_destroy_without_repeating_a_call(
    sim: Simulator, driver: Driver, case: str
) -> None:
    policy, restart_when, expected = CASES[case]
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=FROZEN_GUEST)
    destroy = driver.add(proxmox_vm(VMID, destroy=policy))
    await run_until(driver, lambda d: d.passes != [] and restart_when(d))
    before = driver.operator.destroyer

    driver.operator.restart()
    assert driver.operator.destroyer is not before
    await driver.run(max_passes=40)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
    _assert_calls(sim, expected)
    if policy is not None:
        # The deadline came from the persisted status: the forced stop came at startedAt + 30
        # seconds, not 30 seconds after the restart.
        stop_at = next(p.at for p in destroy.passes if p.action == "stop")
        assert 30 <= stop_at < 35, destroy.describe()


@pytest.mark.parametrize(
    ("policy", "ha", "expected"),
    [
        pytest.param(None, False, {"stop": 1, "delete": 1}, id="stop"),
        pytest.param(SHUTDOWN, False, {"shutdown": 1, "stop": 1, "delete": 1}, id="shutdown"),
        pytest.param(None, True, {"stop": 1, "delete": 1}, id="ha"),
    ],
)
async def test_a_restart_before_every_pass_still_makes_each_call_once(
    sim: Simulator,
    driver: Driver,
    policy: dict[str, Any] | None,
    ha: bool,
    expected: dict[str, int],
) -> None:
    sim.add_vm(
        VMID,
        tags=[ownership_tag()],
        running=True,
        guest=FROZEN_GUEST,
        ha_state="started" if ha else None,
    )

    destroy = await driver.destroy(
        proxmox_vm(VMID, destroy=policy), max_passes=80, restart_every_pass=True
    )

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert driver.operator.restarts == len(destroy.passes)
    _assert_calls(sim, expected)
