"""`proxmox-vm-operator simulator` as a user runs it: a separate process on a fixed port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def simulator_process(*extra: str) -> Iterator[tuple[int, list[str]]]:
    """Run the command line; yield its port and the lines it printed on start-up."""
    port = _free_port()
    command = Path(sys.executable).with_name("proxmox-vm-operator")
    process = subprocess.Popen(
        [str(command), "simulator", "--port", str(port), "--token", "root@pam!ci=s3cret", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline().strip() for _ in range(5)]
        yield port, banner
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "s3cret" not in stdout + stderr


def _client(port: int, banner: list[str]) -> Any:
    ca_path = banner[1].removeprefix("ca-file: ")
    return ProxmoxAPI(
        "127.0.0.1",
        port=port,
        user="root@pam",
        token_name="ci",
        token_value="s3cret",
        verify_ssl=ca_path,
    )


def _waiter(px: Any) -> Callable[[str], dict[str, Any]]:
    def wait(upid: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status: dict[str, Any] = px.nodes("pve1").tasks(upid).status.get()
            if status["status"] == "stopped":
                return status
            time.sleep(0.05)
        raise AssertionError(f"task {upid} did not end")

    return wait


def test_the_command_line_prints_where_it_serves_and_stops_on_sigterm() -> None:
    with simulator_process() as (port, banner):
        assert banner[0] == f"endpoint: https://127.0.0.1:{port}"
        assert Path(banner[1].removeprefix("ca-file: ")).is_file()
        assert banner[2] == "nodes: pve1"
        assert banner[3] == "tokens: root@pam!ci"  # the token id, never its secret
        px = _client(port, banner)
        assert px.version.get()["release"] == "9.1"
        assert [node["node"] for node in px.nodes.get()] == ["pve1"]


def test_hung_guest_story_through_the_command_line() -> None:
    """The issue's acceptance scenario, step by step, with the real proxmoxer client."""
    with simulator_process("--guest-acpi", "ignore", "--time-scale", "20") as (port, banner):
        assert banner[4] == "guests: ignore ACPI shutdown requests"
        px = _client(port, banner)
        wait = _waiter(px)
        vmid = int(px.cluster.nextid.get())
        vm = px.nodes("pve1").qemu(vmid)

        assert (
            wait(px.nodes("pve1").qemu.post(vmid=vmid, name="hung", memory=512))["exitstatus"]
            == "OK"
        )
        assert wait(vm.status.start.post())["exitstatus"] == "OK"

        shutdown = wait(vm.status.shutdown.post(timeout=20))
        assert shutdown["exitstatus"] == "VM quit/powerdown failed - got timeout"
        assert vm.status.current.get()["status"] == "running"

        with pytest.raises(ResourceException) as refused:
            vm.delete()
        assert refused.value.status_code == 500
        assert refused.value.content == f"VM {vmid} is running - destroy failed"

        assert wait(vm.status.stop.post(**{"overrule-shutdown": 1}))["exitstatus"] == "OK"
        assert vm.status.current.get()["status"] == "stopped"
        assert wait(vm.delete())["exitstatus"] == "OK"
        with pytest.raises(ResourceException) as gone:
            vm.status.current.get()
        assert "does not exist" in gone.value.content
