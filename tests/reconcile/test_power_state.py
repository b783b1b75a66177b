"""spec.powerState: Stopped shuts the VM down (forced after a timeout); Running starts it."""

from __future__ import annotations

from collections.abc import Callable

from proxmox_vm_operator.simulator import Simulator

from .driver import Driver, vm_state


async def test_stopped_shuts_a_running_vm_down_then_running_starts_it_again(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.settle()
    vmid = driver.vmid
    assert vm_state(driver.sim, vmid)["running"] is True
    count = len(driver.writes())

    driver.update_spec(powerState="Stopped")
    await driver.settle()

    [shutdown] = driver.writes()[count:]
    assert (shutdown.method, shutdown.path) == ("POST", f"/nodes/pve1/qemu/{vmid}/status/shutdown")
    assert shutdown.params["forceStop"] == "1"
    assert int(shutdown.params["timeout"]) > 0
    assert vm_state(driver.sim, vmid)["running"] is False
    assert (driver.status["phase"], driver.status["powerState"]) == ("Stopped", "Stopped")
    assert (driver.ready["status"], driver.ready["reason"]) == ("True", "Reconciled")
    assert driver.events[-1].reason == "Stopping"
    count = len(driver.writes())

    driver.update_spec(powerState="Running")
    await driver.settle()

    [start] = driver.writes()[count:]
    assert (start.method, start.path) == ("POST", f"/nodes/pve1/qemu/{vmid}/status/start")
    assert vm_state(driver.sim, vmid)["running"] is True
    assert (driver.status["phase"], driver.status["powerState"]) == ("Running", "Running")
    assert driver.events[-1].reason == "Starting"


async def test_a_vm_created_with_power_state_stopped_is_never_started(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(powerState="Stopped")
    await driver.settle()

    assert not [r for r in driver.writes() if "/status/" in r.path]
    assert vm_state(driver.sim, driver.vmid)["running"] is False
    assert (driver.status["phase"], driver.status["powerState"]) == ("Stopped", "Stopped")
    assert driver.ready["status"] == "True"


async def test_a_paused_vm_is_not_reported_ready_while_running_is_wanted(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    driver = make_driver()
    await driver.settle()
    sim.pause(driver.vmid)

    await driver.run_passes(3)

    resumed = not vm_state(sim, driver.vmid)["paused"]
    assert resumed or driver.ready["status"] != "True", driver.status
