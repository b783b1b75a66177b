"""Task status: real outcomes, classified errors, and a loop that keeps running."""

from __future__ import annotations

import asyncio
import threading

import pytest

from proxmox_vm_operator.proxmox import ProxmoxClient, RejectedError, UnreachableError

from .pve_wire import UPID, FakePve, Recorded, Reply

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
    assert (status.running, status.exitstatus, status.ok) == (False, "OK", True)
    assert [(r.method, r.path) for r in fake_pve.requests] == [("GET", STATUS_PATH)]


async def test_a_running_task_is_neither_ok_nor_failed_yet(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", STATUS_PATH, task_reply(None))
    status = await client.task_status(UPID)
    assert status.running and not status.ok and status.exitstatus is None


@pytest.mark.parametrize("exitstatus", ["WARNINGS: 2", "OK"])
async def test_warnings_count_as_success(
    fake_pve: FakePve, client: ProxmoxClient, exitstatus: str
) -> None:
    fake_pve.reply("GET", STATUS_PATH, task_reply(exitstatus))
    assert (await client.task_status(UPID)).ok


async def test_a_failed_task_is_returned_with_its_exit_status(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", STATUS_PATH, task_reply("VM is locked (backup)"))
    status = await client.task_status(UPID)
    assert not status.running and not status.ok
    assert status.exitstatus == "VM is locked (backup)"


async def test_an_error_reading_the_status_is_raised_not_swallowed(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", STATUS_PATH, Reply(595, reason="No route to host", raw_body=b""))
    with pytest.raises(UnreachableError):
        await client.task_status(UPID)


async def test_an_unparsable_upid_is_rejected_without_a_request(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    with pytest.raises(RejectedError, match="UPID"):
        await client.task_status("UPID:pve1:bogus")
    assert fake_pve.requests == []


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

    status, _ = await asyncio.gather(client.task_status(UPID), release_when_arrived())
    assert status.ok
