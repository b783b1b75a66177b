"""A token that may not see or touch the VM: a 403 is PermissionDenied, never "VM gone".

Proxmox VE leaves every VM the token may not audit out of /cluster/resources (200, no
error), while per-VM calls answer 403 `Permission check failed (/vms/ID, PRIV)`. A destroy
that took the listing for proof released the object with the VM still running.
"""

from __future__ import annotations

import pytest

from proxmox_vm_operator.domain.destroy import Outcome, StallReason
from proxmox_vm_operator.simulator.server import Simulator

from .driver import TOKEN_ID, Driver, calls, ownership_tag, proxmox_vm

VMID = 171
DESTROY_PRIVILEGES = {"VM.Audit", "VM.PowerMgmt", "VM.Allocate"}


def token_without(sim: Simulator, privilege: str) -> None:
    sim.set_privsep(TOKEN_ID, True)
    sim.grant(TOKEN_ID, "/vms", sorted(DESTROY_PRIVILEGES - {privilege}))


@pytest.mark.parametrize(
    ("missing", "refused_call"),
    [("VM.Audit", None), ("VM.PowerMgmt", "stop"), ("VM.Allocate", "delete")],
)
async def test_a_missing_privilege_stalls_the_destroy_until_it_is_granted(
    sim: Simulator, driver: Driver, missing: str, refused_call: str | None
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=missing != "VM.Allocate")
    token_without(sim, missing)

    destroy = driver.add(proxmox_vm(VMID))
    await driver.run(max_passes=6)

    assert destroy.outcome is None, destroy.describe()
    assert sim.vm_exists(VMID)
    denied = [p for p in destroy.passes if p.stalled is StallReason.PERMISSION_DENIED]
    assert denied, destroy.describe()
    assert f"(/vms/{VMID}, {missing})" in denied[0].message
    if refused_call is not None:
        assert {r.status for r in calls(sim.requests, refused_call, VMID)} == {403}

    sim.set_privsep(TOKEN_ID, False)  # granted: the destroy goes on by itself
    await driver.run(max_passes=20)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert not sim.vm_exists(VMID)


async def test_a_vm_hidden_from_the_listing_is_not_taken_for_absent(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    token_without(sim, "VM.Audit")

    destroy = driver.add(proxmox_vm(VMID))
    await driver.step()

    listing = [r for r in sim.requests if r.path == "/cluster/resources"]
    assert listing and listing[-1].status == 200  # no error: the VM is simply left out
    assert destroy.outcome is None
    assert destroy.passes[0].stalled is StallReason.PERMISSION_DENIED
