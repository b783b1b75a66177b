"""The drift timer's pass of an idle object stops at the shared cluster listing when it shows
nothing changed: no per-VM call. A full comparison runs every ``full_check_after`` seconds,
and at once when the listing shows a change (a VM stopped or deleted behind our back)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxmox_vm_operator.controller.connections import ClientPool
from proxmox_vm_operator.controller.pace import Pace
from proxmox_vm_operator.controller.reconciler import Reconciler
from proxmox_vm_operator.proxmox import ProxmoxClient
from proxmox_vm_operator.simulator import Simulator

from .driver import Driver
from .test_drift import finish

IDLE = Pace(full_check_after=3600.0, periodic_listing_max_age=0.0)


def vm_calls(sim: Simulator, since: int) -> list[str]:
    """Requests about one VM (config, status, pending...), not listings."""
    return [r.path for r in sim.requests[since:] if "/qemu/" in r.path]


async def listing_shows(admin: ProxmoxClient, vmid: int, power: str) -> None:
    """pvestatd's broadcast lags: wait until the listing shows the VM's new power state."""
    for _ in range(500):
        found = await admin.find_vm(vmid)
        if found is not None and found.status == power:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the listing never showed VM {vmid} {power}")


async def test_an_idle_objects_periodic_pass_makes_no_call_of_its_own(
    sim: Simulator, pool: ClientPool, admin: ProxmoxClient, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver()
    driver.reconciler = Reconciler(pool, pace=IDLE)
    await driver.settle()
    await listing_shows(admin, driver.vmid, "running")
    before = len(sim.requests)

    driver.periodic = True
    record = await driver.step()

    assert vm_calls(sim, before) == []
    assert record.result.status.to_merge_patch(driver.status) == {}


async def test_a_vm_stopped_behind_our_back_is_noticed_by_the_listing_and_started(
    sim: Simulator, pool: ClientPool, admin: ProxmoxClient, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver()
    driver.reconciler = Reconciler(pool, pace=IDLE)
    await driver.settle()
    vmid = driver.vmid
    await finish(sim, await admin.stop_vm("pve1", vmid))
    await listing_shows(admin, vmid, "stopped")

    driver.periodic = True
    noticed = await driver.step()

    assert [(w.method, w.path) for w in noticed.writes] == [
        ("POST", f"/nodes/pve1/qemu/{vmid}/status/start")
    ]


async def test_without_a_full_check_yet_the_periodic_pass_compares_in_full(
    sim: Simulator, pool: ClientPool, admin: ProxmoxClient, make_driver: Callable[..., Driver]
) -> None:
    """A restarted operator has compared nothing yet: its first periodic pass is a full one."""
    driver = make_driver()
    await driver.settle()  # by another Reconciler: this one has no full check on record
    await listing_shows(admin, driver.vmid, "running")
    driver.reconciler = Reconciler(pool, pace=IDLE)
    before = len(sim.requests)

    driver.periodic = True
    await driver.step()

    assert any(path.endswith("/config") for path in vm_calls(sim, before))
