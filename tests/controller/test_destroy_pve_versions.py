"""The default destroy completes on every supported Proxmox VE release.

`status/stop` knows `overrule-shutdown` only since qemu-server 8.1.2 (PVE 8.2); 8.0 and 8.1
answer `400 Parameter verification failed.` naming it, and an operator that resent the same
stop forever never finished a destroy there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .driver import Driver, Operator, calls, fake_secrets, new_simulator, ownership_tag, proxmox_vm

VMID = 181
HUNG = GuestBehaviour(obeys_acpi=False)


@pytest.fixture(params=["7.4", "8.1.4", "8.3.0", "9.1.1"])
def versioned(request: pytest.FixtureRequest) -> Iterator[tuple[Simulator, Driver]]:
    sim = new_simulator(pve_version=request.param)
    operator = Operator(fake_secrets(sim))
    try:
        yield sim, Driver(sim, operator)
    finally:
        operator.close()
        sim.stop()


async def test_a_default_stop_destroy_of_a_hung_guest_completes(
    versioned: tuple[Simulator, Driver],
) -> None:
    sim, driver = versioned
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=HUNG)

    destroy = await driver.destroy(proxmox_vm(VMID), max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    stops = calls(sim.requests, "stop", VMID)
    assert [r.status for r in stops] == [200]
    knows_overrule = sim.pve_version.split(".")[:2] >= ["8", "2"]
    assert ("overrule-shutdown" in stops[0].params) is knows_overrule
    if not knows_overrule:
        assert any("plain stop" in p.message for p in destroy.passes), destroy.describe()


async def test_a_shutdown_destroy_falls_back_to_a_forced_stop_on_every_release(
    versioned: tuple[Simulator, Driver],
) -> None:
    sim, driver = versioned
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=HUNG)

    destroy = await driver.destroy(
        proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 5}), max_passes=40
    )

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert destroy.record is not None and destroy.record["fallbackUsed"] is True
    assert not sim.vm_exists(VMID)
