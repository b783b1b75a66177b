"""`proxmox-vm-operator simulator` as a user runs it: a separate process on a fixed port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proxmoxer import ProxmoxAPI

from .helpers import play_hung_guest_story


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
    """Guests of VMs created through the API ignore ACPI: the whole story, via the CLI."""
    with simulator_process("--guest-acpi", "ignore", "--time-scale", "20") as (port, banner):
        assert banner[4] == "guests: ignore ACPI shutdown requests"
        play_hung_guest_story(_client(port, banner), lambda vmid: None)
