"""HA-managed VMs: hastart/hastop end at once, the CRM acts after its delay, purge rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ResourceException

from proxmox_vm_operator.simulator import GuestBehaviour, Simulator

from .helpers import client_for, eventually, task_log, wait_for_task

FROZEN = 1e-6  # the clock only moves when a test advances it


@pytest.fixture
def frozen(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(time_scale=FROZEN)


def current(px: Any, vmid: int = 100) -> dict[str, Any]:
    status: dict[str, Any] = px.nodes("pve1").qemu(vmid).status.current.get()
    return status


def ha_view(px: Any, vmid: int = 100) -> tuple[str, str]:
    status = current(px, vmid)
    return status["status"], status["ha"].get("state", "")


def test_hastart_ends_ok_at_once_and_the_crm_starts_the_vm_later(frozen: Simulator) -> None:
    px = client_for(frozen)
    frozen.add_vm(100, ha_state="stopped")
    upid = px.nodes("pve1").qemu(100).status.start.post()
    status = wait_for_task(px, upid)  # no simulated time passes
    assert (status["type"], status["exitstatus"]) == ("hastart", "OK")
    assert task_log(px, upid) == ["Requesting HA start for VM 100", "TASK OK"]
    assert px.cluster.ha.resources("vm:100").get()["state"] == "started"
    assert ha_view(px) == ("stopped", "stopped")

    frozen.advance(5)  # half the CRM delay: the request is seen
    eventually(lambda: ha_view(px) == ("stopped", "request_start"), 5, "request_start")
    frozen.advance(5)
    frozen.advance(2)  # the LRM's start
    eventually(lambda: ha_view(px) == ("running", "started"), 5, "started")


def test_hastop_ends_ok_at_once_and_passes_request_stop(frozen: Simulator) -> None:
    px = client_for(frozen)
    frozen.add_vm(100, ha_state="started", running=True)
    upid = px.nodes("pve1").qemu(100).status.stop.post()
    status = wait_for_task(px, upid)
    assert (status["type"], status["exitstatus"]) == ("hastop", "OK")
    assert task_log(px, upid) == ["Requesting HA stop for VM 100", "TASK OK"]
    assert ha_view(px) == ("running", "started")

    frozen.advance(5)
    eventually(lambda: ha_view(px) == ("running", "request_stop"), 5, "request_stop")
    assert px.cluster.ha.resources("vm:100").get()["state"] == "stopped"
    entry = next(e for e in px.cluster.resources.get(type="vm") if e["vmid"] == 100)
    assert entry["hastate"] == "request_stop"
    frozen.advance(5)
    frozen.advance(1)  # the LRM's hard stop
    eventually(lambda: ha_view(px) == ("stopped", "stopped"), 5, "stopped")


def test_overrule_shutdown_is_refused_for_ha_vms(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, ha_state="started", running=True)
    with pytest.raises(ResourceException) as refused:
        px.nodes("pve1").qemu(100).status.stop.post(**{"overrule-shutdown": 1})
    assert refused.value.status_code == 400
    assert refused.value.errors == {"overrule-shutdown": "Not applicable for HA resources."}
    assert sim.tasks() == []


def test_an_ha_shutdown_of_a_guest_ignoring_acpi_still_ends_stopped(
    sim: Simulator, px: Any
) -> None:
    sim.add_vm(100, ha_state="started", running=True, guest=GuestBehaviour(obeys_acpi=False))
    upid = px.nodes("pve1").qemu(100).status.shutdown.post(timeout=10)
    status = wait_for_task(px, upid)
    assert (status["type"], status["exitstatus"]) == ("hastop", "OK")
    # The LRM shuts down with forceStop=1: 10 s of HA delay, 10 s timeout, then the kill.
    eventually(lambda: ha_view(px) == ("stopped", "stopped"), 5, "the forced HA shutdown")


def test_reboot_is_not_ha_aware(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, ha_state="started", running=True)
    upid = px.nodes("pve1").qemu(100).status.reboot.post()
    status = wait_for_task(px, upid)
    assert (status["type"], status["exitstatus"]) == ("qmreboot", "OK")


def test_removing_the_ha_resource_makes_the_vm_plain_again(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, ha_state="started", running=True)
    assert [r["sid"] for r in px.cluster.ha.resources.get()] == ["vm:100"]
    assert px.cluster.ha.resources("vm:100").delete() is None
    assert px.cluster.ha.resources.get() == []
    assert current(px)["ha"] == {"managed": 0}
    entry = next(e for e in px.cluster.resources.get(type="vm") if e["vmid"] == 100)
    assert "hastate" not in entry
    upid = px.nodes("pve1").qemu(100).status.stop.post()
    assert wait_for_task(px, upid)["type"] == "qmstop"
    assert current(px)["status"] == "stopped"
    assert wait_for_task(px, px.nodes("pve1").qemu(100).delete())["exitstatus"] == "OK"


def test_removing_a_resource_that_is_not_ha_managed(sim: Simulator, px: Any) -> None:
    sim.add_vm(101)
    with pytest.raises(ResourceException) as refused:
        px.cluster.ha.resources("vm:101").delete()
    assert (refused.value.status_code, refused.value.content) == (
        500,
        "cannot delete service 'vm:101', not HA managed!",
    )


def test_adding_a_resource_lets_the_crm_start_it(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    assert px.cluster.ha.resources.post(sid="vm:100", state="started") is None
    assert current(px)["ha"]["managed"] == 1
    eventually(lambda: ha_view(px) == ("running", "started"), 5, "the CRM start")


def test_an_ignored_resource_behaves_as_unmanaged(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, ha_state="ignored")
    assert current(px)["ha"] == {"managed": 0}
    status = wait_for_task(px, px.nodes("pve1").qemu(100).status.start.post())
    assert (status["type"], status["exitstatus"]) == ("qmstart", "OK")
    # Still configured, so a delete without purge is refused.
    wait_for_task(px, px.nodes("pve1").qemu(100).status.stop.post())
    with pytest.raises(ResourceException) as refused:
        px.nodes("pve1").qemu(100).delete()
    assert refused.value.content == (
        "unable to remove VM 100 - used in HA resources and purge parameter not set."
    )
