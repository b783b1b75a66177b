"""Shared helpers for the simulator's behaviour tests: clients, bounded polling, raw HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import requests
from proxmoxer import ProxmoxAPI, ResourceException
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


def play_hung_guest_story(px: Any, make_hung: Callable[[int], None]) -> int:
    """Create and start a VM whose guest ignores ACPI, prove a shutdown cannot power it off
    and a DELETE is refused while it runs, then stop it with overrule-shutdown and delete it.
    Returns the vmid, which is gone at the end."""
    vmid = int(px.cluster.nextid.get())
    vm = px.nodes("pve1").qemu(vmid)
    upid = px.nodes("pve1").qemu.post(vmid=vmid, name="hung", memory=1024, scsi0="local-lvm:8")
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    make_hung(vmid)
    assert wait_for_task(px, vm.status.start.post())["exitstatus"] == "OK"

    shutdown = wait_for_task(px, vm.status.shutdown.post(timeout=20))
    assert shutdown["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert vm.status.current.get()["status"] == "running"

    with pytest.raises(ResourceException) as refused:
        vm.delete()
    assert refused.value.status_code == 500
    assert refused.value.content == f"VM {vmid} is running - destroy failed"

    stop = wait_for_task(px, vm.status.stop.post(**{"overrule-shutdown": 1}))
    assert stop["exitstatus"] == "OK"
    assert vm.status.current.get()["status"] == "stopped"
    assert wait_for_task(px, vm.delete(purge=1))["exitstatus"] == "OK"
    with pytest.raises(ResourceException) as gone:
        vm.status.current.get()
    assert (
        gone.value.content
        == f"Configuration file 'nodes/pve1/qemu-server/{vmid}.conf' does not exist"
    )
    return vmid
