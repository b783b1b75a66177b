"""Shutdown mode: a graceful shutdown with a deadline, then a forced stop; the annotation cuts it.

The deadline is startedAt + shutdownTimeoutSeconds. A guest that ignores ACPI gets exactly one
shutdown request and, once the deadline has passed, one stop with overrule-shutdown=1.
"""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.domain.model import DESTROY_MODE_ANNOTATION
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .driver import Destroy, Driver, calls, ownership_tag, proxmox_vm, run_until

VMID = 102
FROZEN_GUEST = GuestBehaviour(obeys_acpi=False)


def _first_pass_with(destroy: Destroy, action: str) -> float:
    return next(p.at for p in destroy.passes if action in p.action.split("+"))


async def test_shutdown_times_out_and_a_forced_stop_follows_after_the_deadline(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=FROZEN_GUEST)

    destroy = await driver.destroy(
        proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 3})
    )

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
    requests = sim.requests
    shutdowns = calls(requests, "shutdown", VMID)
    assert len(shutdowns) == 1
    assert shutdowns[0].params.get("timeout") == "3"
    assert "forceStop" not in shutdowns[0].params
    stops = calls(requests, "stop", VMID)
    assert len(stops) == 1
    assert stops[0].params.get("overrule-shutdown") == "1"
    # Not before the deadline: startedAt (t=0) + 3 s.
    assert _first_pass_with(destroy, "stop") >= 3
    assert len(calls(requests, "delete", VMID)) == 1
    assert destroy.record is not None
    assert destroy.record["fallbackUsed"] is True
    assert destroy.record["shutdownDeadline"] == "2026-03-01T12:00:03.000000Z"
    assert "ShutdownTimedOut" in destroy.warnings()
    assert sum(p.action == "stop" for p in destroy.passes) == 1
    fallback_passes = [
        p for p in destroy.passes if any(e.reason == "ShutdownTimedOut" for e in p.events)
    ]
    assert [p.action for p in fallback_passes] == ["stop"]


async def test_a_guest_that_obeys_shutdown_is_never_force_stopped(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(
        VMID,
        tags=[ownership_tag()],
        running=True,
        guest=GuestBehaviour(obeys_acpi=True, shutdown_seconds=4),
    )

    destroy = await driver.destroy(
        proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 30})
    )

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    requests = sim.requests
    assert len(calls(requests, "shutdown", VMID)) == 1
    assert calls(requests, "stop") == []
    assert destroy.record is not None
    assert destroy.record.get("fallbackUsed", False) is False
    assert destroy.warnings() == []
    # Deleted soon after the guest went down, long before the deadline.
    assert destroy.passes[-1].at < 30


async def test_destroy_mode_annotation_stop_cuts_a_long_graceful_wait_short(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=FROZEN_GUEST)
    destroy = driver.add(
        proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 3600})
    )
    # Wait gracefully for a minute of simulated time.
    await run_until(driver, lambda d: d.passes[-1].at >= 60 if d.passes else False)
    assert len(calls(sim.requests, "shutdown", VMID)) == 1
    assert calls(sim.requests, "stop") == []
    assert destroy.record is not None
    assert destroy.record["step"] == "WaitingForShutdown"
    cut_at = driver.elapsed

    destroy.annotations[DESTROY_MODE_ANNOTATION] = "Stop"
    await driver.run(max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    stops = calls(sim.requests, "stop", VMID)
    assert len(stops) == 1
    assert stops[0].params.get("overrule-shutdown") == "1"
    assert len(calls(sim.requests, "shutdown", VMID)) == 1
    # Minutes, not the hour the shutdown timeout allowed.
    assert destroy.passes[-1].at - cut_at < 60, destroy.describe()
    # Asked for, not a timeout: no fallback reported.
    assert destroy.record is not None
    assert destroy.record.get("fallbackUsed", False) is False
    assert "ShutdownTimedOut" not in destroy.warnings()
    # The overruled shutdown task was killed, not left to run for an hour.
    shutdown_task = next(t for t in sim.tasks() if t["type"] == "qmshutdown")
    assert shutdown_task["status"] == "stopped"


async def test_a_long_graceful_wait_polls_without_sending_anything(
    sim: Simulator, driver: Driver
) -> None:
    """Waiting out the deadline means looking, with bounded intervals, never another call."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=FROZEN_GUEST)
    destroy = driver.add(
        proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 300})
    )

    await driver.run(max_passes=200)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    stop_at = _first_pass_with(destroy, "stop")
    assert 300 <= stop_at < 300 + 15, destroy.describe()
    waits = [p for p in destroy.passes if p.at < stop_at]
    assert all(p.action in ("shutdown", "wait") for p in waits)
    assert max(p.retry_after for p in waits) <= 15
    assert len(calls(sim.requests, "shutdown", VMID)) == 1
