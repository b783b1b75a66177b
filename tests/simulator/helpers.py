"""Shared helpers for the simulator's behaviour tests: clients, bounded polling, raw HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

from proxmox_vm_operator.simulator import Simulator

T = TypeVar("T")

TOKEN_ID = "root@pam!ci"
TOKEN_SECRET = "s3cret"  # a test credential for the simulator only
TOKEN_HEADER = f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"


def client_for(sim: Simulator, token_value: str = TOKEN_SECRET, **kwargs: Any) -> Any:
    """proxmoxer over TLS with the simulator's CA pinned, authenticated by the CI token."""
    return ProxmoxAPI(
        sim.host,
        port=sim.port,
        user="root@pam",
        token_name="ci",
        token_value=token_value,
        verify_ssl=str(sim.ca_file),
        **kwargs,
    )


def wait_for_task(px: Any, upid: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll a task (on the node its UPID names) until it stops; bounded."""
    node = Tasks.decode_upid(upid)["node"]
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = px.nodes(node).tasks(upid).status.get()
        if status["status"] == "stopped":
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"task {upid} still running after {timeout}s")
        time.sleep(0.01)


def task_log(px: Any, upid: str) -> list[str]:
    node = Tasks.decode_upid(upid)["node"]
    return [line["t"] for line in px.nodes(node).tasks(upid).log.get(limit=1000)]


def eventually(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """Call ``probe`` until it returns something truthy, for at most ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(0.005)


def url(sim: Simulator, path: str) -> str:
    return f"{sim.endpoint}/api2/json{path}"


def raw(
    sim: Simulator,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    auth: bool = True,
    **kwargs: Any,
) -> requests.Response:
    """One plain ``requests`` call, TLS verified with the simulator's CA."""
    sent = {"Authorization": TOKEN_HEADER} if auth else {}
    sent.update(headers or {})
    return requests.request(
        method, url(sim, path), headers=sent, verify=str(sim.ca_file), timeout=10, **kwargs
    )


def vm_state(sim: Simulator, vmid: int) -> dict[str, Any]:
    """The simulator's own view of a VM (config, pending, running, lock); it must exist."""
    state = sim.vm(vmid)
    assert state is not None, f"VM {vmid} does not exist"
    return state
