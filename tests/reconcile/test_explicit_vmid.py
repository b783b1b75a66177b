"""A VMID given in the spec is used as it is: /cluster/nextid is never asked."""

from __future__ import annotations

from collections.abc import Callable

from .driver import OWNER_TAG, Driver, tag_set, vm_state


async def test_spec_vmid_is_used_as_is(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(vmid=4242)
    first = await driver.step()

    assert first.requests == []  # nothing to ask: the VMID is the user's
    assert first.status["vmid"] == 4242
    await driver.settle()

    assert not [r for r in driver.requests() if r.path == "/cluster/nextid"]
    [create] = [r for r in driver.writes() if r.path == "/nodes/pve1/qemu"]
    assert create.params["vmid"] == "4242"
    assert driver.status["vmid"] == 4242
    assert driver.ready["status"] == "True"
    assert tag_set(vm_state(driver.sim, 4242)["config"]["tags"]) == {OWNER_TAG}
    assert driver.sim.vm(100) is None
