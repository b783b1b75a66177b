"""Power actions: start, stop, shutdown and reboot, with guests that obey ACPI or do not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ResourceException

from proxmox_vm_operator.simulator import GuestBehaviour, Simulator

from .helpers import task_log, wait_for_task

HUNG = GuestBehaviour(obeys_acpi=False)
FLOCK_TIMEOUT = "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"


def http_error(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ResourceException) as failed:
        call()
    return failed.value.status_code, failed.value.content


def status(px: Any, vmid: int = 100) -> str:
    current: str = px.nodes("pve1").qemu(vmid).status.current.get()["status"]
    return current


def test_start_and_start_again(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    upid = vm.status.start.post()
    assert ":qmstart:100:" in upid
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert status(px) == "running"
    again = wait_for_task(px, vm.status.start.post())
    assert again["exitstatus"] == "VM 100 already running"


def test_start_failures_happen_inside_the_task(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, lock="backup")
    sim.add_vm(101, template=True)
    sim.add_vm(102, lock="suspended")
    starts = {vmid: px.nodes("pve1").qemu(vmid).status.start.post() for vmid in (100, 101, 102)}
    missing = px.nodes("pve1").qemu(103).status.start.post()
    assert wait_for_task(px, starts[100])["exitstatus"] == "VM is locked (backup)"
    assert wait_for_task(px, starts[101])["exitstatus"] == "you can't start a vm if it's a template"
    assert wait_for_task(px, starts[102])["exitstatus"] == "OK"  # 'suspended' does not block
    assert wait_for_task(px, missing)["exitstatus"] == (
        "Configuration file 'nodes/pve1/qemu-server/103.conf' does not exist"
    )
    assert [status(px, v) for v in (100, 101, 102)] == ["stopped", "stopped", "running"]


@pytest.mark.parametrize("action", ["stop", "shutdown"])
def test_stop_and_shutdown_of_a_stopped_vm_end_ok(sim: Simulator, px: Any, action: str) -> None:
    sim.add_vm(100)
    upid = px.nodes("pve1").qemu(100).status(action).post()
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert status(px) == "stopped"


def test_an_obeying_guest_shuts_down(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=GuestBehaviour(shutdown_seconds=20))
    upid = px.nodes("pve1").qemu(100).status.shutdown.post(timeout=30)
    assert status(px) == "running"  # powering off takes 20 simulated seconds
    result = wait_for_task(px, upid)
    assert (result["type"], result["exitstatus"]) == ("qmshutdown", "OK")
    assert status(px) == "stopped"
    (listed,) = px.nodes("pve1").tasks.get(typefilter="qmshutdown")
    assert listed["endtime"] - listed["starttime"] >= 19  # simulated seconds


def test_a_guest_ignoring_acpi_times_out_and_keeps_running(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=HUNG)
    upid = px.nodes("pve1").qemu(100).status.shutdown.post(timeout=10)
    assert wait_for_task(px, upid)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert task_log(px, upid)[-1] == "TASK ERROR: VM quit/powerdown failed - got timeout"
    assert status(px) == "running"


def test_the_shutdown_timeout_defaults_to_the_startup_down_value(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=HUNG, config={"startup": "order=1,down=5"})
    upid = px.nodes("pve1").qemu(100).status.shutdown.post()
    assert wait_for_task(px, upid)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    (listed,) = px.nodes("pve1").tasks.get(typefilter="qmshutdown")
    assert listed["endtime"] - listed["starttime"] in (5, 6)  # not the default 60 s


def test_force_stop_terminates_a_guest_ignoring_acpi(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=HUNG)
    upid = px.nodes("pve1").qemu(100).status.shutdown.post(timeout=10, forceStop=1)
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert "VM still running - terminating now with SIGTERM" in task_log(px, upid)
    assert status(px) == "stopped"


def test_a_plain_stop_during_a_hung_shutdown_fails_in_its_task(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=HUNG)
    vm = px.nodes("pve1").qemu(100)
    shutdown = vm.status.shutdown.post(timeout=30)  # holds the flock for 30 s
    stop = vm.status.stop.post()
    assert stop.startswith("UPID:")  # no HTTP error: the stop task fails
    assert wait_for_task(px, stop)["exitstatus"] == FLOCK_TIMEOUT
    assert status(px) == "running"
    assert wait_for_task(px, shutdown)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert status(px) == "running"


def test_overrule_shutdown_kills_the_shutdown_task_and_stops(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=HUNG)
    vm = px.nodes("pve1").qemu(100)
    shutdown = vm.status.shutdown.post(timeout=600)
    stop = vm.status.stop.post(**{"overrule-shutdown": 1})
    assert wait_for_task(px, stop)["exitstatus"] == "OK"
    killed = wait_for_task(px, shutdown)
    assert killed["exitstatus"] == "received interrupt"
    assert task_log(px, shutdown)[-1] == "TASK ERROR: received interrupt"
    assert f"overruled qmshutdown tasks: {shutdown}" in task_log(px, stop)
    assert status(px) == "stopped"


def test_overrule_shutdown_without_a_shutdown_running_is_a_plain_stop(
    sim: Simulator, px: Any
) -> None:
    sim.add_vm(100, running=True)
    stop = px.nodes("pve1").qemu(100).status.stop.post(**{"overrule-shutdown": 1})
    assert wait_for_task(px, stop)["exitstatus"] == "OK"
    assert not any("overruled" in line for line in task_log(px, stop))
    assert status(px) == "stopped"


def test_a_paused_vm_cannot_shut_down_but_can_be_force_stopped(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True)
    sim.pause(100)
    vm = px.nodes("pve1").qemu(100)
    assert http_error(lambda: vm.status.shutdown.post()) == (500, "VM is paused - cannot shutdown")
    assert http_error(lambda: vm.status.reboot.post()) == (500, "VM is paused - cannot shutdown")
    assert wait_for_task(px, vm.status.shutdown.post(forceStop=1))["exitstatus"] == "OK"
    assert status(px) == "stopped"


def test_reboot(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    sim.add_vm(101, running=True, guest=HUNG)
    assert http_error(lambda: px.nodes("pve1").qemu(100).status.reboot.post()) == (
        500,
        "VM 100 not running",
    )
    sim.set_guest(100, GuestBehaviour())
    assert wait_for_task(px, px.nodes("pve1").qemu(100).status.start.post())["exitstatus"] == "OK"
    upid = px.nodes("pve1").qemu(100).status.reboot.post()
    assert ":qmreboot:100:" in upid
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert status(px) == "running"
    hung = px.nodes("pve1").qemu(101).status.reboot.post(timeout=5)
    assert wait_for_task(px, hung)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert status(px, 101) == "running"


@pytest.mark.parametrize("action", ["stop", "shutdown", "reboot"])
def test_a_locked_vm_fails_inside_the_task(sim: Simulator, px: Any, action: str) -> None:
    sim.add_vm(100, running=True)
    sim.set_lock(100, "backup")
    upid = px.nodes("pve1").qemu(100).status(action).post()
    assert wait_for_task(px, upid)["exitstatus"] == "VM is locked (backup)"
    assert status(px) == "running"


def test_stop_timeout_parameter_and_status_after_stop(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=HUNG)
    upid = px.nodes("pve1").qemu(100).status.stop.post(timeout=5)
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    current = px.nodes("pve1").qemu(100).status.current.get()
    assert (current["status"], current["qmpstatus"], current["uptime"]) == ("stopped", "stopped", 0)
    assert "pid" not in current
