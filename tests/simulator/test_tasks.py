"""Tasks: UPIDs, status, logs, lists, killing, concurrency, and the simulated clock."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ResourceException
from proxmoxer.tools import Tasks

from proxmox_vm_operator.simulator import GuestBehaviour, Simulator, Timings

from .helpers import client_for, eventually, raw, task_log, wait_for_task

# pve-common src/PVE/UPID.pm
PVE_UPID = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
)
FROZEN = 1e-6


@pytest.fixture
def frozen(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(time_scale=FROZEN)


def param_error(call: Callable[[], Any]) -> dict[str, str]:
    with pytest.raises(ResourceException) as failed:
        call()
    assert (failed.value.status_code, failed.value.content) == (
        400,
        "Parameter verification failed.",
    )
    errors: dict[str, str] = failed.value.errors
    return errors


def test_upids_have_pves_format(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    upid = px.nodes("pve1").qemu(100).status.start.post()
    match = PVE_UPID.match(upid)
    assert match is not None and upid.endswith(":")
    assert (match[1], match[6], match[7], match[8]) == ("pve1", "qmstart", "100", "root@pam!ci")
    decoded = Tasks.decode_upid(upid)
    assert (decoded["node"], decoded["type"], decoded["id"], decoded["user"]) == (
        "pve1",
        "qmstart",
        "100",
        "root@pam",
    )
    assert decoded["comment"] == ""
    status = wait_for_task(px, upid)
    assert (status["pid"], status["pstart"], status["starttime"]) == (
        decoded["pid"],
        decoded["pstart"],
        decoded["starttime"],
    )
    assert abs(status["starttime"] - time.time()) < 120
    # Every task has its own UPID.
    again = px.nodes("pve1").qemu(100).status.stop.post()
    assert again != upid and PVE_UPID.match(again)


def test_task_status_fields_while_running_and_after(frozen: Simulator) -> None:
    px = client_for(frozen)
    frozen.add_vm(100)
    upid = px.nodes("pve1").qemu(100).status.start.post()
    running = px.nodes("pve1").tasks(upid).status.get()
    assert running == {
        "upid": upid,
        "node": "pve1",
        "pid": Tasks.decode_upid(upid)["pid"],
        "pstart": Tasks.decode_upid(upid)["pstart"],
        "starttime": Tasks.decode_upid(upid)["starttime"],
        "type": "qmstart",
        "id": "100",
        "user": "root@pam",
        "tokenid": "ci",
        "status": "running",
    }
    assert px.nodes("pve1").tasks(upid).log.get() == [{"n": 1, "t": "no content"}]
    frozen.advance(2)
    stopped = wait_for_task(px, upid)
    assert (stopped["status"], stopped["exitstatus"]) == ("stopped", "OK")


def test_logs_end_with_task_ok_or_task_error_and_page(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, guest=GuestBehaviour(obeys_acpi=False))
    ok = px.nodes("pve1").qemu(100).status.shutdown.post(timeout=5, forceStop=1)
    wait_for_task(px, ok)
    assert task_log(px, ok) == ["VM still running - terminating now with SIGTERM", "TASK OK"]
    bad = px.nodes("pve1").qemu(101).status.start.post()
    wait_for_task(px, bad)
    missing = "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist"
    assert task_log(px, bad) == [f"TASK ERROR: {missing}"]

    page = raw(sim, "GET", f"/nodes/pve1/tasks/{ok}/log", params={"start": 1, "limit": 5})
    assert page.json() == {"data": [{"n": 2, "t": "TASK OK"}], "total": 2}
    everything = px.nodes("pve1").tasks(ok).log.get(limit=0)  # 0 reads to the end
    assert [line["n"] for line in everything] == [1, 2]


def test_unknown_and_unparsable_upids_are_400(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    upid = px.nodes("pve1").qemu(100).status.start.post()
    unknown = upid.replace(":qmstart:", ":qmstop:")
    assert param_error(lambda: px.nodes("pve1").tasks(unknown).status.get()) == {
        "upid": "no such task"
    }
    assert param_error(lambda: px.nodes("pve2").tasks(upid).status.get()) == {
        "upid": "no such task"
    }
    for garbage in ("nonsense", upid.rstrip(":"), "UPID:pve1:1:2:3:qmstart:100:root@pam:"):
        assert param_error(px.nodes("pve1").tasks(garbage).status.get) == {
            "upid": "unable to parse worker upid"
        }
    assert param_error(lambda: px.nodes("pve1").tasks("nonsense").log.get()) == {
        "upid": "unable to parse worker upid"
    }
    assert param_error(lambda: px.nodes("pve1").tasks(unknown).delete()) == {"upid": "no such task"}


def test_task_list_filters(frozen: Simulator) -> None:
    px = client_for(frozen)
    frozen.add_vm(100)
    frozen.add_vm(101)
    frozen.add_vm(102, running=True)
    ok = px.nodes("pve1").qemu(100).status.stop.post()
    failed = px.nodes("pve1").qemu(102).status.start.post()  # already running
    eventually(lambda: len(px.nodes("pve1").tasks.get()) == 2, 5, "two finished tasks")
    running = px.nodes("pve1").qemu(101).status.start.post()

    tasks = px.nodes("pve1").tasks
    assert {t["upid"] for t in tasks.get()} == {ok, failed}  # archive: finished only
    (active,) = tasks.get(source="active")
    assert (active["upid"], active["status"], active["user"]) == (running, "RUNNING", "root@pam!ci")
    assert {t["upid"] for t in tasks.get(source="all")} == {ok, failed, running}
    assert [t["upid"] for t in tasks.get(vmid=102)] == [failed]
    assert [t["upid"] for t in tasks.get(typefilter="qmstop")] == [ok]
    assert [t["upid"] for t in tasks.get(errors=1)] == [failed]
    assert [t["upid"] for t in tasks.get(statusfilter="ok")] == [ok]
    assert tasks.get(userfilter="nobody") == []
    finished = {t["upid"]: t for t in tasks.get()}
    assert finished[failed]["status"] == "VM 102 already running"
    assert finished[ok]["status"] == "OK"
    assert (finished[ok]["user"], finished[ok]["tokenid"]) == ("root@pam", "ci")
    assert finished[ok]["endtime"] >= finished[ok]["starttime"]
    assert "exitstatus" not in finished[ok]
    assert len(tasks.get(source="all", limit=1)) == 1
    assert tasks.get(limit=1, start=5) == []
    listing = raw(frozen, "GET", "/nodes/pve1/tasks", params={"source": "all", "limit": "1"})
    assert listing.json()["total"] == 3
    assert px.nodes("pve2").tasks.get(source="all") == []


def test_deleting_a_task_interrupts_it(frozen: Simulator) -> None:
    px = client_for(frozen)
    frozen.add_vm(100)
    upid = px.nodes("pve1").qemu(100).status.start.post()
    assert px.nodes("pve1").tasks(upid).delete() is None
    status = wait_for_task(px, upid)
    assert status["exitstatus"] == "received interrupt"
    assert task_log(px, upid) == ["TASK ERROR: received interrupt"]
    frozen.advance(10)
    assert px.nodes("pve1").qemu(100).status.current.get()["status"] == "stopped"
    assert px.nodes("pve1").tasks(upid).delete() is None  # a finished task: nothing to do


def test_max_tasks_running_counts_concurrent_tasks_per_node(frozen: Simulator) -> None:
    px = client_for(frozen)
    for vmid in (100, 101, 102):
        frozen.add_vm(vmid)
    frozen.add_vm(200, node="pve2")
    upids = [px.nodes("pve1").qemu(v).status.start.post() for v in (100, 101, 102)]
    assert frozen.max_tasks_running() == {"pve1": 3, "pve2": 0}
    frozen.advance(2)
    for upid in upids:
        assert wait_for_task(px, upid)["exitstatus"] == "OK"
    other = px.nodes("pve2").qemu(200).status.start.post()
    frozen.advance(2)
    assert wait_for_task(px, other, timeout=5)["exitstatus"] == "OK"
    assert frozen.max_tasks_running() == {"pve1": 3, "pve2": 1}


def test_the_time_scale_speeds_durations_up(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(time_scale=200, timings=Timings(start=40))  # 0.2 real seconds
    px = client_for(sim)
    sim.add_vm(100)
    started = time.monotonic()
    upid = px.nodes("pve1").qemu(100).status.start.post()
    wait_for_task(px, upid)
    elapsed = time.monotonic() - started
    assert 0.18 <= elapsed < 2
    (listed,) = px.nodes("pve1").tasks.get(typefilter="qmstart")
    assert listed["endtime"] - listed["starttime"] >= 39  # simulated seconds


def test_advance_steps_a_waiting_task(frozen: Simulator) -> None:
    px = client_for(frozen)
    frozen.add_vm(100, running=True, guest=GuestBehaviour(shutdown_seconds=30))
    upid = px.nodes("pve1").qemu(100).status.shutdown.post(timeout=60)
    frozen.advance(29)
    time.sleep(0.05)
    assert px.nodes("pve1").tasks(upid).status.get()["status"] == "running"
    frozen.advance(1)
    assert wait_for_task(px, upid, timeout=5)["exitstatus"] == "OK"
    assert px.nodes("pve1").qemu(100).status.current.get()["status"] == "stopped"


def test_an_instant_clock_finishes_tasks_at_once(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(time_scale=0)
    px = client_for(sim)
    sim.add_vm(100, running=True, guest=GuestBehaviour(obeys_acpi=False))
    started = time.monotonic()
    upid = px.nodes("pve1").qemu(100).status.shutdown.post(timeout=3600)
    assert wait_for_task(px, upid)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert time.monotonic() - started < 1
    (listed,) = px.nodes("pve1").tasks.get()
    assert listed["endtime"] - listed["starttime"] == 3600  # the clock jumped, exactly
    # Without work the instant clock stands still: pvestatd's loop does not drive it.
    before = sim.clock.now()
    time.sleep(0.05)
    assert sim.clock.now() == before


def test_the_time_scale_can_change_while_a_task_waits(frozen: Simulator) -> None:
    px = client_for(frozen)
    frozen.add_vm(100)
    upid = px.nodes("pve1").qemu(100).status.start.post()
    time.sleep(0.05)
    assert px.nodes("pve1").tasks(upid).status.get()["status"] == "running"
    frozen.set_time_scale(100)
    assert wait_for_task(px, upid, timeout=5)["exitstatus"] == "OK"
