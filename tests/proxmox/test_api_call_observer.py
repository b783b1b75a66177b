"""The metrics hook sees every HTTP exchange with a templated endpoint, code and duration."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.proxmox import (
    ApiCall,
    ConnectionSettings,
    LockedError,
    ProxmoxClient,
    UnreachableError,
)

from .pve_wire import UPID, FakePve, Reply, closed_port


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def observed(secret_data: dict[str, str], calls: list[ApiCall]) -> ProxmoxClient:
    settings = ConnectionSettings.from_secret_data(secret_data)
    return ProxmoxClient(settings, observer=calls.append)


async def test_endpoints_are_templates_without_ids(
    fake_pve: FakePve, observed: ProxmoxClient, calls: list[ApiCall]
) -> None:
    fake_pve.reply("GET", "/version", Reply(data={"version": "9.1.1", "release": "9.1"}))
    fake_pve.reply("POST", "/nodes/pve1/qemu/1201/status/stop", Reply(data=UPID))
    fake_pve.reply(
        "GET",
        f"/nodes/pve1/tasks/{UPID}/status",
        Reply(data={"upid": UPID, "type": "qmstop", "status": "stopped", "exitstatus": "OK"}),
    )
    async with observed:
        upid = await observed.stop_vm("pve1", 1201, overrule_shutdown=True)
        await observed.task_status(str(upid))
    assert [(c.method, c.endpoint, c.status_code) for c in calls] == [
        ("GET", "/version", 200),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/stop", 200),
        ("GET", "/nodes/{node}/tasks/{upid}/status", 200),
    ]
    assert all(c.duration_seconds > 0 for c in calls)


async def test_an_error_answer_is_observed_with_its_code(
    fake_pve: FakePve, observed: ProxmoxClient, calls: list[ApiCall]
) -> None:
    fake_pve.reply("DELETE", "/nodes/pve1/qemu/100", Reply(500, reason="VM is locked (backup)"))
    async with observed:
        with pytest.raises(LockedError):
            await observed.delete_vm("pve1", 100)
    assert [(c.endpoint, c.status_code) for c in calls] == [("/nodes/{node}/qemu/{vmid}", 500)]


async def test_no_answer_at_all_is_observed_without_a_code(
    secret_data: dict[str, str], calls: list[ApiCall]
) -> None:
    settings = ConnectionSettings.from_secret_data(
        {**secret_data, "endpoint": f"https://127.0.0.1:{closed_port()}"}
    )
    async with ProxmoxClient(settings, observer=calls.append) as proxmox:
        with pytest.raises(UnreachableError):
            await proxmox.list_vms()
    assert [(c.endpoint, c.status_code) for c in calls] == [("/cluster/resources", None)]


async def test_a_failing_observer_does_not_break_the_call(
    fake_pve: FakePve, secret_data: dict[str, str]
) -> None:
    def broken(call: ApiCall) -> None:
        raise RuntimeError("metrics backend down")

    fake_pve.reply("GET", "/cluster/nextid", Reply(data="101"))
    settings = ConnectionSettings.from_secret_data(secret_data)
    async with ProxmoxClient(settings, observer=broken) as proxmox:
        assert await proxmox.next_vmid() == 101
