"""``pve_version``: what GET /version reports, and parameters older releases do not know."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import client_for, wait_for_task

# pve-common JSONSchema.pm check_object, for a parameter the method's schema lacks.
UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"


def refusal(call: Callable[[], Any]) -> tuple[int, str, dict[str, str] | None]:
    with pytest.raises(ResourceException) as failed:
        call()
    return failed.value.status_code, failed.value.content, failed.value.errors


@pytest.mark.parametrize(
    ("configured", "version", "release"),
    [
        ("7.4-17", "7.4-17", "7.4"),
        ("7.4.3", "7.4-3", "7.4"),
        ("8.0.4", "8.0.4", "8.0"),
        ("8.1.4", "8.1.4", "8.1"),
        ("8.2.2", "8.2.2", "8.2"),
        ("8.4.1", "8.4.1", "8.4"),
        ("9.0.3", "9.0.3", "9.0"),
    ],
)
def test_version_reports_the_configured_release(
    make_sim: Callable[..., Simulator], configured: str, version: str, release: str
) -> None:
    sim = make_sim(pve_version=configured)
    reply = client_for(sim).version.get()
    assert (reply["version"], reply["release"]) == (version, release)
    assert len(reply["repoid"]) == 8
    assert sim.pve_version == version


def test_the_default_is_9_1_1(px: Any) -> None:
    assert px.version.get()["version"] == "9.1.1"


@pytest.mark.parametrize("unsupported", ["7.3-6", "6.4-13", "10.0.1", "nine"])
def test_releases_outside_7_4_to_9_x_are_refused(unsupported: str) -> None:
    with pytest.raises(ValueError, match=r"7\.4"):
        Simulator(pve_version=unsupported)


def test_the_command_line_refuses_an_unsupported_release() -> None:
    command = [sys.executable, "-m", "proxmox_vm_operator", "simulator", "--pve-version", "6.4"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert "--pve-version: Proxmox VE 6.4 is not simulated" in refused.stderr


@pytest.mark.parametrize("version", ["7.4-17", "8.0.4", "8.1.4"])
def test_before_8_2_stop_does_not_know_overrule_shutdown(
    make_sim: Callable[..., Simulator], version: str
) -> None:
    """qemu-server added overrule-shutdown in 8.1.2 (commit 50b5893b), shipped with PVE 8.2."""
    sim = make_sim(pve_version=version)
    px = client_for(sim)
    sim.add_vm(100, running=True)
    vm = px.nodes("pve1").qemu(100)
    assert refusal(lambda: vm.status.stop.post(**{"overrule-shutdown": 1})) == (
        400,
        "Parameter verification failed.",
        {"overrule-shutdown": UNKNOWN},
    )
    assert sim.tasks() == []
    assert wait_for_task(px, vm.status.stop.post())["exitstatus"] == "OK"


@pytest.mark.parametrize("version", ["8.2.2", "8.4.1", "9.0.3", "9.1.1"])
def test_from_8_2_on_stop_takes_overrule_shutdown(
    make_sim: Callable[..., Simulator], version: str
) -> None:
    sim = make_sim(pve_version=version)
    px = client_for(sim)
    sim.add_vm(100, running=True)
    stop = px.nodes("pve1").qemu(100).status.stop.post(**{"overrule-shutdown": 1})
    assert wait_for_task(px, stop)["exitstatus"] == "OK"


def test_cloud_init_upgrade_came_with_8_0_and_ha_managed_create_with_9_1(
    make_sim: Callable[..., Simulator],
) -> None:
    old = make_sim(pve_version="7.4-17")
    old.add_vm(100)
    old_px = client_for(old)
    assert refusal(lambda: old_px.nodes("pve1").qemu(100).config.put(ciupgrade=0))[2] == {
        "ciupgrade": UNKNOWN
    }
    nine_zero = client_for(make_sim(pve_version="9.0.3"))
    assert refusal(lambda: nine_zero.nodes("pve1").qemu.post(vmid=101, **{"ha-managed": 1}))[2] == {
        "ha-managed": UNKNOWN
    }
    current = client_for(make_sim(pve_version="9.1.1"))
    assert current.nodes("pve1").qemu.post(vmid=101, **{"ha-managed": 1}).startswith("UPID:")


def test_running_qemu_follows_the_release(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(pve_version="8.1.4")
    sim.add_vm(100, running=True)
    current = client_for(sim).nodes("pve1").qemu(100).status.current.get()
    assert (current["running-qemu"], current["running-machine"]) == (
        "8.1.2",
        "pc-i440fx-8.1+pve0",
    )
