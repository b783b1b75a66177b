"""The guest gets at least shutdownTimeoutSeconds, counted from when Proxmox accepted the
shutdown, to the microsecond."""

from __future__ import annotations

import datetime

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.domain.model import parse_time
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .driver import T0, Driver, calls, ownership_tag, proxmox_vm

VMID = 141
TIMEOUT = 3


async def test_a_guest_that_ignores_acpi_gets_the_whole_timeout_before_the_forced_stop(
    sim: Simulator, driver: Driver
) -> None:
    """The deadline was cut to whole seconds and counted from before the call: a destroy
    that began 0.7 s into a second gave the guest 2.3 s of 3."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=GuestBehaviour(obeys_acpi=False))
    driver.advance(0.7)
    destroy = driver.add(
        proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": TIMEOUT})
    )

    await driver.run(max_passes=30)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    shutdown_at = next(p.at for p in destroy.passes if p.action == "shutdown")
    stop_at = next(p.at for p in destroy.passes if p.action == "stop")
    assert stop_at - shutdown_at >= TIMEOUT, destroy.describe()
    assert destroy.record is not None
    deadline = parse_time(destroy.record["shutdownDeadline"])
    assert deadline == T0 + datetime.timedelta(seconds=0.7 + TIMEOUT)
    assert len(calls(sim.requests, "stop", VMID)) == 1
