"""Each typed call hits the right method and path and turns PVE's answer into a typed value."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.proxmox import (
    AbsentError,
    ConflictError,
    ConnectionSettings,
    LockedError,
    ProxmoxClient,
    ProxmoxError,
    RejectedError,
    UnauthorizedError,
    UnreachableError,
    Upid,
    VmResource,
)

from .pve_wire import UPID, FakePve, Reply, closed_port

RESOURCES = [
    {
        "id": "qemu/100",
        "type": "qemu",
        "vmid": 100,
        "node": "pve1",
        "status": "running",
        "name": "web-1",
        "template": 0,
        "tags": "vmop-1234;web",
        "hastate": "started",
        "maxmem": 2147483648,
    },
    {"id": "lxc/101", "type": "lxc", "vmid": 101, "node": "pve1", "status": "running"},
    {"id": "qemu/9000", "type": "qemu", "vmid": 9000, "node": "pve2", "status": "stopped",
     "name": "tmpl", "template": 1, "lock": "clone"},
    {"id": "qemu/102", "type": "qemu", "vmid": 102, "node": "pve2", "status": "unknown"},
]  # fmt: skip


async def test_list_vms_keeps_qemu_entries_and_parses_them(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", "/cluster/resources", Reply(data=RESOURCES))
    vms = await client.list_vms()
    assert fake_pve.requests[0].query == {"type": ["vm"]}
    assert vms == [
        VmResource(100, "pve1", ("vmop-1234", "web"), None, "running"),
        VmResource(9000, "pve2", (), "clone", "stopped"),
        VmResource(102, "pve2", (), None, "unknown"),
    ]


async def test_find_vm_returns_the_vm_wherever_it_lives(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", "/cluster/resources", Reply(data=RESOURCES))
    found = await client.find_vm(9000)
    assert found is not None and found.node == "pve2"


@pytest.mark.parametrize("vmid", [555, 101], ids=["missing", "taken-by-a-container"])
async def test_find_vm_returns_none_when_a_successful_answer_lacks_it(
    fake_pve: FakePve, client: ProxmoxClient, vmid: int
) -> None:
    fake_pve.reply("GET", "/cluster/resources", Reply(data=RESOURCES))
    assert await client.find_vm(vmid) is None


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(500, reason="cluster not ready - no quorum?"), UnreachableError),
        (Reply(596, reason="Connection timed out", raw_body=b""), UnreachableError),
        (Reply(401, reason="Authentication failed!", raw_body=b""), UnauthorizedError),
        (Reply(403, reason="Permission check failed (/, Sys.Audit)"), UnauthorizedError),
        (Reply(200, raw_body=b"<html>maintenance</html>"), UnreachableError),
        (Reply(200, data={"unexpected": "shape"}), UnreachableError),
        (Reply(200, data=[{"type": "qemu", "node": "pve1"}]), UnreachableError),
    ],
    ids=["500", "596", "401", "403", "html-200", "object-200", "entry-without-vmid"],
)
async def test_find_vm_never_turns_a_failure_into_absent(
    fake_pve: FakePve, client: ProxmoxClient, reply: Reply, error: type[ProxmoxError]
) -> None:
    fake_pve.reply("GET", "/cluster/resources", reply)
    with pytest.raises(error):
        await client.find_vm(100)


async def test_find_vm_on_a_closed_port_is_unreachable(secret_data: dict[str, str]) -> None:
    settings = ConnectionSettings.from_secret_data(
        {**secret_data, "endpoint": f"https://127.0.0.1:{closed_port()}"}
    )
    async with ProxmoxClient(settings) as proxmox:
        with pytest.raises(UnreachableError, match="connection failed"):
            await proxmox.find_vm(100)


@pytest.mark.parametrize("answer", ["101", 101])
async def test_next_vmid_accepts_a_string_or_a_number(
    fake_pve: FakePve, client: ProxmoxClient, answer: object
) -> None:
    fake_pve.reply("GET", "/cluster/nextid", Reply(data=answer))
    assert await client.next_vmid() == 101


async def test_vm_status_reads_power_pause_and_ha(fake_pve: FakePve, client: ProxmoxClient) -> None:
    fake_pve.reply(
        "GET",
        "/nodes/pve1/qemu/100/status/current",
        Reply(
            data={
                "vmid": 100,
                "status": "running",
                "qmpstatus": "paused",
                "lock": "backup",
                "name": "web-1",
                "tags": "web vmop-1234",
                "uptime": 42,
                "ha": {"managed": 1, "state": "started"},
            }
        ),
    )
    status = await client.vm_status("pve1", 100)
    assert status.running and status.qmpstatus == "paused" and status.ha_managed


async def test_vm_status_of_an_unmanaged_vm(fake_pve: FakePve, client: ProxmoxClient) -> None:
    fake_pve.reply(
        "GET",
        "/nodes/pve1/qemu/100/status/current",
        Reply(data={"status": "stopped", "qmpstatus": "stopped", "ha": {"managed": 0}}),
    )
    status = await client.vm_status("pve1", 100)
    assert not status.running and not status.ha_managed


async def test_vm_status_on_the_wrong_node_is_absent_there(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply(
        "GET",
        "/nodes/pve1/qemu/100/status/current",
        Reply(500, reason="Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"),
    )
    with pytest.raises(AbsentError) as raised:
        await client.vm_status("pve1", 100)
    assert (raised.value.node, raised.value.vmid) == ("pve1", 100)


async def test_vm_config_separates_the_digest(fake_pve: FakePve, client: ProxmoxClient) -> None:
    fake_pve.reply(
        "GET",
        "/nodes/pve1/qemu/100/config",
        Reply(data={"cores": 2, "memory": "2048", "protection": 1, "digest": "ab12", "tags": "a"}),
    )
    config = await client.vm_config("pve1", 100)
    assert config.digest == "ab12"
    assert config.values == {"cores": 2, "memory": "2048", "protection": 1, "tags": "a"}
    assert config.protected and config.tags == ("a",) and config.lock is None


@pytest.mark.parametrize(
    ("call", "method", "path"),
    [
        (lambda c: c.create_vm("pve1", 100, {"cores": 2}), "POST", "/nodes/pve1/qemu"),
        (lambda c: c.start_vm("pve1", 100), "POST", "/nodes/pve1/qemu/100/status/start"),
        (lambda c: c.stop_vm("pve1", 100), "POST", "/nodes/pve1/qemu/100/status/stop"),
        (lambda c: c.shutdown_vm("pve1", 100), "POST", "/nodes/pve1/qemu/100/status/shutdown"),
        (lambda c: c.clone_vm("pve1", 100, 101), "POST", "/nodes/pve1/qemu/100/clone"),
        (lambda c: c.delete_vm("pve1", 100), "DELETE", "/nodes/pve1/qemu/100"),
    ],
    ids=["create", "start", "stop", "shutdown", "clone", "delete"],
)  # fmt: skip
async def test_asynchronous_actions_return_their_task_id(
    fake_pve: FakePve, client: ProxmoxClient, call, method: str, path: str
) -> None:
    fake_pve.reply(method, path, Reply(data=UPID))
    upid = await call(client)
    assert isinstance(upid, Upid) and str(upid) == UPID
    assert [(r.method, r.path) for r in fake_pve.requests] == [(method, path)]


async def test_create_sends_the_vmid_with_the_config(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("POST", "/nodes/pve1/qemu", Reply(data=UPID))
    await client.create_vm("pve1", 100, {"name": "web-1", "memory": 2048})
    assert fake_pve.requests[0].form == {"name": ["web-1"], "memory": ["2048"], "vmid": ["100"]}


async def test_an_action_answered_without_a_task_id_is_an_unusable_reply(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("POST", "/nodes/pve1/qemu/100/status/start", Reply(data=None))
    with pytest.raises(UnreachableError, match="unexpected reply"):
        await client.start_vm("pve1", 100)


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("VM 100 is running - destroy failed", ConflictError),
        ("VM is locked (backup)", LockedError),
    ],
)
async def test_a_synchronous_refusal_raises_its_kind(
    fake_pve: FakePve, client: ProxmoxClient, reason: str, error: type[ProxmoxError]
) -> None:
    fake_pve.reply("DELETE", "/nodes/pve1/qemu/100", Reply(500, reason=reason))
    with pytest.raises(error, match="DELETE /nodes/pve1/qemu/100: 500"):
        await client.delete_vm("pve1", 100, purge=True)


@pytest.mark.parametrize(
    ("node", "vmid"),
    [("pve1/../../access", 100), ("", 100), ("pve1", 99), ("pve1", True), ("pve1", 10**9)],
)
async def test_bad_path_parts_are_rejected_before_anything_is_sent(
    fake_pve: FakePve, client: ProxmoxClient, node: str, vmid: int
) -> None:
    with pytest.raises(RejectedError):
        await client.vm_status(node, vmid)
    assert fake_pve.requests == []
