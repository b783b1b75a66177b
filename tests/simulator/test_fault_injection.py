"""Fault injection: unreachable APIs, offline nodes, injected errors, quorum, latency, records."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from proxmoxer import ProxmoxAPI, ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import TOKEN_SECRET, client_for, eventually, raw, wait_for_task

NO_QUORUM = (500, "cluster not ready - no quorum?")


def http_error(call: Any) -> tuple[int, str]:
    with pytest.raises(ResourceException) as failed:
        call()
    return failed.value.status_code, failed.value.content


def test_refused_connections_then_restore_on_the_same_port(sim: Simulator, px: Any) -> None:
    port = sim.port
    assert px.version.get()["version"] == "9.1.1"  # a keep-alive connection is open now
    sim.make_unreachable("refuse")
    with pytest.raises(requests.exceptions.ConnectionError) as refused:
        px.version.get()
    assert "refused" in str(refused.value).lower()
    sim.restore()
    assert sim.port == port
    assert px.version.get()["version"] == "9.1.1"


def test_reset_connections(sim: Simulator, px: Any) -> None:
    sim.make_unreachable("reset")
    for _ in range(2):
        with pytest.raises(requests.exceptions.ConnectionError) as reset:
            px.version.get()
        assert "reset" in repr(reset.value).lower() or "aborted" in repr(reset.value).lower()
    sim.restore()
    assert px.version.get()["version"] == "9.1.1"


def test_a_hanging_api_times_the_client_out(sim: Simulator) -> None:
    impatient = client_for(sim, timeout=0.3)
    sim.make_unreachable("hang")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient.version.get()
    assert 0.25 <= time.monotonic() - started < 2
    sim.restore()
    assert impatient.version.get()["version"] == "9.1.1"


def test_unreachable_for_some_seconds_comes_back_by_itself(sim: Simulator, px: Any) -> None:
    sim.make_unreachable("refuse", for_seconds=10)  # 0.2 real seconds at scale 50
    with pytest.raises(requests.exceptions.ConnectionError):
        px.version.get()

    def answers() -> bool:
        try:
            return bool(px.version.get())
        except requests.exceptions.ConnectionError:
            return False

    eventually(answers, 5, "the API to come back")


def test_an_offline_node_answers_595_with_an_empty_body(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, node="pve2", running=True)
    sim.set_node_online("pve2", False)
    with pytest.raises(ResourceException) as offline:
        px.nodes("pve2").qemu(100).status.current.get()
    assert offline.value.status_code == 595
    assert offline.value.status_message == "Errors during connection establishment, proxy handshake"
    assert offline.value.content == "No route to host"
    assert offline.value.errors == {"errors": b""}
    assert http_error(lambda: px.nodes("pve2").qemu(100).status.stop.post())[0] == 595
    assert px.nodes("pve1").qemu.get() == []  # other nodes and cluster calls still answer
    assert len(px.cluster.resources.get(type="vm")) == 1
    sim.set_node_online("pve2", True)
    assert px.nodes("pve2").qemu(100).status.current.get()["status"] == "running"


def test_fail_next_fails_n_matching_calls_then_succeeds(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    sim.fail_next(r"/status/current$", times=2, status=500, message="VM is locked (backup)")
    status = px.nodes("pve1").qemu(100).status.current
    assert http_error(status.get) == (500, "VM is locked (backup)")
    assert px.nodes("pve1").qemu.get()[0]["vmid"] == 100  # other paths are untouched
    assert http_error(status.get) == (500, "VM is locked (backup)")
    assert status.get()["status"] == "stopped"


def test_fail_next_by_method_with_errors_or_proxy_codes(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    config = px.nodes("pve1").qemu(100).config
    sim.fail_next(
        r"/config$",
        method="PUT",
        status=400,
        message="Parameter verification failed.",
        errors={"memory": "hotplug problem - out of memory"},
    )
    assert config.get()["name"] == "vm100"  # a GET does not match
    with pytest.raises(ResourceException) as refused:
        config.put(memory="4096")
    assert refused.value.errors == {"memory": "hotplug problem - out of memory"}
    assert "memory" in config.get() and config.get()["memory"] == "2048"

    sim.fail_next(r"^/version$", status=596, message="Connection timed out")
    reply = raw(sim, "GET", "/version")
    assert (reply.status_code, reply.reason, reply.content) == (596, "Connection timed out", b"")
    assert px.version.get()["version"] == "9.1.1"


def test_fail_task_ends_the_next_task_with_an_error(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    message = "start failed: QEMU exited with code 1"
    sim.fail_task("qmstart", vmid=100, message=message)
    start = px.nodes("pve1").qemu(100).status.start
    assert wait_for_task(px, start.post())["exitstatus"] == message
    assert px.nodes("pve1").qemu(100).status.current.get()["status"] == "stopped"
    assert wait_for_task(px, start.post())["exitstatus"] == "OK"


def test_set_lock_like_a_backup(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True)
    sim.set_lock(100, "backup")
    vm = px.nodes("pve1").qemu(100)
    assert vm.status.current.get()["lock"] == "backup"
    assert wait_for_task(px, vm.status.stop.post())["exitstatus"] == "VM is locked (backup)"
    sim.set_lock(100, None)
    assert "lock" not in vm.status.current.get()
    assert wait_for_task(px, vm.status.stop.post())["exitstatus"] == "OK"
    with pytest.raises(ValueError, match="unknown lock"):
        sim.set_lock(100, "bogus")


def test_lost_quorum_refuses_writes(sim: Simulator, px: Any) -> None:
    """(Destroy checks no quorum before its fork: see test_delete.)"""
    sim.add_vm(100)
    sim.set_quorum(False)
    vm = px.nodes("pve1").qemu(100)
    assert http_error(lambda: px.nodes("pve1").qemu.post(vmid=101)) == NO_QUORUM
    assert http_error(lambda: vm.config.put(description="x")) == NO_QUORUM
    assert http_error(vm.status.start.post) == NO_QUORUM
    assert http_error(lambda: vm.clone.post(newid=101)) == NO_QUORUM
    assert http_error(lambda: px.cluster.ha.resources.post(sid="vm:100")) == NO_QUORUM
    assert vm.status.current.get()["status"] == "stopped"  # reads still work
    assert sim.tasks() == []
    sim.set_quorum(True)
    assert wait_for_task(px, vm.status.start.post())["exitstatus"] == "OK"


def test_latency_slows_replies(sim: Simulator, px: Any) -> None:
    sim.set_latency(25, path=r"^/version$")  # 0.5 real seconds at scale 50
    started = time.monotonic()
    px.nodes.get()
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    px.version.get()
    assert time.monotonic() - started >= 0.49
    sim.clear_faults()
    started = time.monotonic()
    px.version.get()
    assert time.monotonic() - started < 0.3


def test_requests_are_recorded_without_secrets(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    sim.clear_requests()
    px.nodes("pve1").qemu(100).config.put(description="hi", onboot=1)
    px.cluster.resources.get(type="vm")
    with pytest.raises(ResourceException):
        client_for(sim, token_value="wrong").version.get()
    records = sim.requests
    assert [(r.method, r.path, r.params, r.user, r.status) for r in records] == [
        (
            "PUT",
            "/nodes/pve1/qemu/100/config",
            {"description": "hi", "onboot": "1"},
            "root@pam!ci",
            200,
        ),
        ("GET", "/cluster/resources", {"type": "vm"}, "root@pam!ci", 200),
        ("GET", "/version", {}, None, 401),
    ]
    assert records[-1].reason == "Authentication failed!"
    assert [r.path for r in sim.requests_to(r"/config$", method="PUT")] == [
        "/nodes/pve1/qemu/100/config"
    ]
    assert TOKEN_SECRET not in repr(records)
    assert "wrong" not in repr(records)


def test_ticket_logins_are_recorded_without_the_password() -> None:
    with Simulator(users={"root@pam": "hunter2"}, time_scale=50) as sim:
        ProxmoxAPI(
            sim.host,
            port=sim.port,
            user="root@pam",
            password="hunter2",
            verify_ssl=str(sim.ca_file),
        ).version.get()
        (login, version) = sim.requests
        assert (login.path, login.params, login.user) == (
            "/access/ticket",
            {"username": "root@pam"},
            None,
        )
        assert version.user == "root@pam"
        assert "hunter2" not in repr(sim.requests)
