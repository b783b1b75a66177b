"""The control endpoint: a simulator in its own process steered over plain HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException

from proxmox_vm_operator.simulator import (
    ControlError,
    GuestBehaviour,
    Simulator,
    SimulatorControl,
    Unreachable,
)

from .helpers import TOKEN_SECRET, client_for, task_log, wait_for_task
from .test_command_line import _free_port

ALICE_SECRET = "alice-s3cret"  # a test credential for the simulator only


@contextmanager
def simulator_process(*extra: str) -> Iterator[tuple[Any, Any, SimulatorControl]]:
    """``python -m proxmox_vm_operator simulator --control-port 0``: yield proxmoxer clients
    for root@pam!ci and alice@pve!ci, and a control client."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxmox_vm_operator",
            "simulator",
            "--port",
            str(port),
            "--token",
            f"root@pam!ci={TOKEN_SECRET}",
            "--token",
            f"alice@pve!ci={ALICE_SECRET}",
            "--time-scale",
            "50",
            "--control-port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline().strip() for _ in range(6)]
        ca_file = banner[1].removeprefix("ca-file: ")
        assert banner[5].startswith("control: http://127.0.0.1:")
        control = SimulatorControl(banner[5].removeprefix("control: "))
        clients = [
            ProxmoxAPI(
                "127.0.0.1",
                port=port,
                user=user,
                token_name="ci",
                token_value=secret,
                verify_ssl=ca_file,
            )
            for user, secret in (("root@pam", TOKEN_SECRET), ("alice@pve", ALICE_SECRET))
        ]
        yield clients[0], clients[1], control
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert TOKEN_SECRET not in stdout + stderr and ALICE_SECRET not in stdout + stderr


def test_a_separate_process_takes_faults_acls_and_guest_changes() -> None:
    with simulator_process("--pve-version", "8.1.4") as (root, alice, control):
        assert root.version.get()["version"] == "8.1.4"
        control.add_vm(100, running=True, guest=GuestBehaviour(obeys_acpi=False), tags=["x"])
        vm = root.nodes("pve1").qemu(100)
        with pytest.raises(ResourceException) as unknown:  # 8.1 has no overrule-shutdown
            vm.status.stop.post(**{"overrule-shutdown": 1})
        assert unknown.value.status_code == 400

        # A fault: the next status read fails with the injected error.
        control.fail_next(r"/status/current$", status=500, message="injected by control")
        with pytest.raises(ResourceException) as failed:
            vm.status.current.get()
        assert (failed.value.status_code, failed.value.content) == (500, "injected by control")

        # An ACL: alice's token sees nothing until granted VM.Audit on the VM.
        assert alice.cluster.resources.get(type="vm") == []
        control.grant("alice@pve", "/vms/100", ["VM.Audit"])
        assert [r["vmid"] for r in alice.cluster.resources.get(type="vm")] == [100]

        # A guest change: the hung guest times out, then obeys once changed.
        shutdown = wait_for_task(root, vm.status.shutdown.post(timeout=5))
        assert shutdown["exitstatus"] == "VM quit/powerdown failed - got timeout"
        control.set_guest(100, GuestBehaviour(obeys_acpi=True, shutdown_seconds=1))
        assert wait_for_task(root, vm.status.shutdown.post(timeout=5))["exitstatus"] == "OK"

        state = control.vm(100)
        assert state is not None and state["running"] is False
        assert state["config"]["tags"] == "x"
        assert any(t["type"] == "qmshutdown" for t in control.tasks())
        recorded = control.requests_to(r"/status/shutdown$", "POST")
        assert [r.user for r in recorded] == ["root@pam!ci", "root@pam!ci"]
        everything = json.dumps([r.__dict__ for r in control.requests])
        assert TOKEN_SECRET not in everything and ALICE_SECRET not in everything


@pytest.fixture
def controlled(make_sim: Callable[..., Simulator]) -> tuple[Simulator, SimulatorControl]:
    sim = make_sim(control_port=0)
    assert sim.control_endpoint is not None
    return sim, SimulatorControl(sim.control_endpoint)


def test_the_client_mirrors_the_simulators_control_methods(
    controlled: tuple[Simulator, SimulatorControl],
) -> None:
    sim, control = controlled
    px = client_for(sim)
    control.add_vm(100, running=True, guest=GuestBehaviour(obeys_acpi=False))
    upid = control.start_task_as("bob@pve", 100, "shutdown", timeout=600)
    assert upid.endswith(":qmshutdown:100:bob@pve:")
    stop = px.nodes("pve1").qemu(100).status.stop.post(**{"overrule-shutdown": 1})
    assert wait_for_task(px, stop)["exitstatus"] == "OK"  # root's token: Sys.Modify
    assert control.task_log(upid)[-1] == "TASK ERROR: received interrupt"
    assert f"overruled qmshutdown tasks: {upid}" in task_log(px, stop)

    control.set_protection(100)
    with pytest.raises(ResourceException, match="protection mode enabled"):
        px.nodes("pve1").qemu(100).delete()
    control.set_protection(100, False)
    control.set_lock(100, "backup")
    assert px.nodes("pve1").qemu(100).status.current.get()["lock"] == "backup"
    control.set_pool(100, "team")
    assert sim.vm(100) is not None and sim.vm(100)["pool"] == "team"  # type: ignore[index]

    control.set_privsep("root@pam!ci", True)
    assert px.cluster.resources.get(type="vm") == []
    control.grant("root@pam!ci", "/vms", ["VM.Audit"])
    assert len(px.cluster.resources.get(type="vm")) == 1
    control.revoke("root@pam!ci", "/vms")
    control.set_privsep("root@pam!ci", False)

    control.make_unreachable(Unreachable.REFUSE)
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        px.version.get()
    control.restore()
    assert px.version.get()["version"] == "9.1.1"
    control.set_quorum(False)
    with pytest.raises(ResourceException, match="no quorum"):
        px.nodes("pve1").qemu(100).status.start.post()
    control.set_quorum(True)


def test_refusals_are_4xx_with_the_reason(controlled: tuple[Simulator, SimulatorControl]) -> None:
    sim, control = controlled
    with pytest.raises(ControlError) as unknown:
        control.call("stop")  # stopping the simulator is not a control method
    assert unknown.value.status == 404
    with pytest.raises(ControlError) as missing:
        control.set_lock(999, "backup")
    assert missing.value.status == 409 and "999" in missing.value.message
    with pytest.raises(ControlError) as wrong:
        control.call("set_quorum", quorate=True, bogus=1)
    assert wrong.value.status == 400 and "bogus" in wrong.value.message
    with pytest.raises(ControlError) as bad_privilege:
        control.grant("alice@pve", "/", ["VM.Fly"])
    assert bad_privilege.value.status == 400 and "VM.Fly" in bad_privilege.value.message
    request = urllib.request.Request(
        f"{sim.control_endpoint}/control/set_quorum", data=b"[1]", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as not_an_object:
        urllib.request.urlopen(request, timeout=10)
    assert not_an_object.value.code == 400


def test_the_control_endpoint_is_off_by_default(sim: Simulator) -> None:
    assert sim.control_endpoint is None
