"""Task status, task log and wait_task: real outcomes, deadlines, and a loop that keeps running."""

from __future__ import annotations

import asyncio
import threading

import pytest

from proxmox_vm_operator.proxmox import (
    ErrorKind,
    ProxmoxClient,
    RejectedError,
    TaskFailedError,
    TaskLogLine,
    TaskTimeoutError,
    UnreachableError,
    parse_upid,
)

from .pve_wire import UPID, FakePve, Recorded, Reply, in_turn

STATUS_PATH = f"/nodes/pve1/tasks/{UPID}/status"


def task_reply(exitstatus: str | None) -> Reply:
    data = {"upid": UPID, "node": "pve1", "type": "qmstop", "id": "100", "user": "root@pam"}
    if exitstatus is None:
        return Reply(data={**data, "status": "running"})
    return Reply(data={**data, "status": "stopped", "exitstatus": exitstatus})


async def test_task_status_is_read_from_the_node_in_the_upid(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", STATUS_PATH, task_reply("OK"))
    status = await client.task_status(UPID)
    assert (status.upid, status.type, status.running, status.exitstatus) == (
        UPID,
        "qmstop",
        False,
        "OK",
    )
    assert status.ok


async def test_wait_task_polls_until_the_task_stops(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply(
        "GET", STATUS_PATH, in_turn(task_reply(None), task_reply(None), task_reply("OK"))
    )
    status = await client.wait_task(parse_upid(UPID), timeout=10, poll_interval=0.01)
    assert status.ok and not status.running
    assert len(fake_pve.requests) == 3


@pytest.mark.parametrize("exitstatus", ["WARNINGS: 2", "OK"])
async def test_warnings_count_as_success(
    fake_pve: FakePve, client: ProxmoxClient, exitstatus: str
) -> None:
    fake_pve.reply("GET", STATUS_PATH, task_reply(exitstatus))
    status = await client.wait_task(UPID, timeout=10)
    assert status.ok
    status.raise_if_failed()


async def test_wait_task_returns_a_failure_instead_of_pretending_success(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply(
        "GET", STATUS_PATH, in_turn(task_reply(None), task_reply("VM is locked (backup)"))
    )
    status = await client.wait_task(UPID, timeout=10, poll_interval=0.01)
    assert not status.ok and status.exitstatus == "VM is locked (backup)"
    with pytest.raises(TaskFailedError) as raised:
        status.raise_if_failed()
    assert raised.value.failed_on_lock and raised.value.lock == "backup"


async def test_wait_task_gives_up_at_its_deadline(fake_pve: FakePve, client: ProxmoxClient) -> None:
    fake_pve.reply("GET", STATUS_PATH, task_reply(None))
    with pytest.raises(TaskTimeoutError) as raised:
        await client.wait_task(UPID, timeout=0.05, poll_interval=0.01)
    assert raised.value.kind is ErrorKind.TASK_TIMEOUT
    assert raised.value.upid == UPID
    assert raised.value.waited_seconds >= 0.05


async def test_a_zero_timeout_checks_exactly_once(fake_pve: FakePve, client: ProxmoxClient) -> None:
    fake_pve.reply("GET", STATUS_PATH, task_reply(None))
    with pytest.raises(TaskTimeoutError):
        await client.wait_task(UPID, timeout=0)
    assert len(fake_pve.requests) == 1


async def test_an_error_while_polling_is_raised_not_swallowed(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", STATUS_PATH, Reply(595, reason="No route to host", raw_body=b""))
    with pytest.raises(UnreachableError):
        await client.wait_task(UPID, timeout=10)


async def test_an_unparsable_upid_is_rejected_without_a_request(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    with pytest.raises(RejectedError, match="UPID"):
        await client.wait_task("UPID:pve1:bogus", timeout=1)
    assert fake_pve.requests == []


async def test_task_log_returns_numbered_lines(fake_pve: FakePve, client: ProxmoxClient) -> None:
    lines = [{"n": 1, "t": "trying to acquire lock..."}, {"n": 2, "t": "TASK OK"}]
    fake_pve.reply("GET", f"/nodes/pve1/tasks/{UPID}/log", Reply(data=lines))
    assert await client.task_log(UPID, limit=10) == [
        TaskLogLine(1, "trying to acquire lock..."),
        TaskLogLine(2, "TASK OK"),
    ]
    assert fake_pve.requests[0].query == {"start": ["0"], "limit": ["10"]}


async def test_a_call_in_flight_leaves_the_event_loop_free(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    """The server holds the request until a coroutine on the loop releases it. If the call
    blocked the loop, that coroutine could not run, and the server would answer 503."""
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    release = threading.Event()
    fake_pve.on_request = lambda _: loop.call_soon_threadsafe(arrived.set)

    def respond(request: Recorded) -> Reply:
        if release.wait(timeout=5):
            return task_reply("OK")
        return Reply(503, reason="loop was blocked")

    fake_pve.reply("GET", STATUS_PATH, respond)

    async def release_when_arrived() -> None:
        await arrived.wait()
        release.set()

    status, _ = await asyncio.gather(client.wait_task(UPID, timeout=10), release_when_arrived())
    assert status.ok
