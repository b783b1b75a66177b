"""Step 7 for HA-managed VMs: stopped through HA (no overrule-shutdown), polled, then purged."""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .conftest import MakeDriver
from .driver import Driver, calls, ownership_tag, proxmox_vm

VMID = 107


def _ha_managed(sim: Simulator, vmid: int) -> bool:
    return sim.call(lambda: vmid in sim.cluster.ha)


async def test_an_ha_managed_vm_is_stopped_through_ha_polled_and_deleted_with_purge(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(
        VMID,
        tags=[ownership_tag()],
        running=True,
        ha_state="started",
        guest=GuestBehaviour(obeys_acpi=False),
    )

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)
    assert not _ha_managed(sim, VMID)
    requests = sim.requests
    (stop,) = calls(requests, "stop", VMID)
    assert "overrule-shutdown" not in stop.params
    assert calls(requests, "shutdown") == []
    (delete,) = calls(requests, "delete", VMID)
    assert delete.params.get("purge") == "1"
    # HA took ~10 s to act; the destroy polled meanwhile instead of asking again.
    stop_at = next(p.at for p in destroy.passes if p.action == "stop")
    delete_at = next(p.at for p in destroy.passes if p.action == "delete")
    assert delete_at - stop_at >= 10, destroy.describe()
    polls = [p for p in destroy.passes if stop_at < p.at < delete_at]
    assert len(polls) >= 2
    assert all(p.action == "wait" and p.stalled is None for p in polls)
    hastops = [t for t in sim.tasks() if t["type"] == "hastop"]
    assert len(hastops) == 1


async def test_a_lookup_error_while_ha_stops_the_vm_does_not_send_a_second_stop(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, ha_state="started")
    destroy = driver.add(proxmox_vm(VMID))
    await driver.run(max_passes=2)  # HA stop requested, its task ended OK, polling
    assert destroy.actions() == ["stop", "wait"], destroy.describe()
    sim.fail_next(r"^/cluster/resources$", method="GET", status=500)

    await driver.run(max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "stop", VMID)) == 1, destroy.describe()


async def test_purge_false_on_an_ha_managed_vm_is_not_reported_as_proxmox_unreachable(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(stall_after=30)
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, ha_state="started")

    destroy = await driver.destroy(proxmox_vm(VMID, destroy={"purge": False}), max_passes=12)

    assert destroy.outcome is None  # never released: the VM is still there
    assert sim.vm_exists(VMID)
    refused = [p for p in destroy.passes if p.stalled is not None]
    assert refused, destroy.describe()
    assert all(p.stalled is not StallReason.PROXMOX_UNREACHABLE for p in refused), (
        destroy.describe()
    )
