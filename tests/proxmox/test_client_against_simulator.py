"""The client against the independent Proxmox VE simulator, over real TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from proxmox_vm_operator.proxmox import (
    AbsentError,
    ConflictError,
    ConnectionSettings,
    LockedError,
    ProxmoxClient,
    RejectedError,
    TaskStatus,
    UnauthorizedError,
    UnreachableError,
    Upid,
)
from proxmox_vm_operator.simulator import GuestBehaviour, Simulator

SECRET = "5b0c7e2a-3f41-4d6b-9e8a-2c1d0f9b7a64"
POLL = 0.02  # real seconds; the simulator runs 20 times faster than real time


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(nodes=["pve1", "pve2"], tokens={"root@pam!ci": SECRET}, time_scale=20) as sim:
        yield sim


def secret_for(sim: Simulator, **overrides: str) -> dict[str, str]:
    return {
        "endpoint": sim.endpoint,
        "tokenId": "root@pam!ci",
        "tokenSecret": SECRET,
        "caCert": sim.ca_file.read_text(),
        **overrides,
    }


@pytest.fixture
async def proxmox(simulator: Simulator) -> AsyncIterator[ProxmoxClient]:
    async with ProxmoxClient(ConnectionSettings.from_secret_data(secret_for(simulator))) as client:
        yield client


async def ended(proxmox: ProxmoxClient, upid: Upid) -> TaskStatus:
    """Poll the task's status, as the operator's passes do, until it has stopped."""
    for _ in range(int(30 / POLL)):
        status = await proxmox.task_status(str(upid))
        if not status.running:
            return status
        await asyncio.sleep(POLL)
    raise AssertionError(f"task {upid} still running")


async def test_create_start_stop_delete_with_task_waiting(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    vmid = await proxmox.next_vmid()
    config = {"name": "web-1", "cores": 2, "memory": 2048, "onboot": True, "tags": "vmop-u1"}
    created = await ended(proxmox, await proxmox.create_vm("pve1", vmid, config))
    assert created.ok, created.exitstatus
    assert (await proxmox.vm_config("pve1", vmid)).values["onboot"] == 1

    started = await ended(proxmox, await proxmox.start_vm("pve1", vmid))
    assert started.ok and (await proxmox.vm_status("pve1", vmid)).running

    with pytest.raises(ConflictError, match="is running - destroy failed"):
        await proxmox.delete_vm("pve1", vmid, purge=True)

    stop = await proxmox.stop_vm("pve1", vmid, overrule_shutdown=True)
    assert (await ended(proxmox, stop)).ok
    assert not (await proxmox.vm_status("pve1", vmid)).running

    delete = await proxmox.delete_vm("pve1", vmid, purge=True, destroy_unreferenced_disks=True)
    assert (await ended(proxmox, delete)).ok
    simulator.refresh_cluster_resources()
    assert await proxmox.find_vm(vmid) is None
    with pytest.raises(AbsentError):
        await proxmox.vm_status("pve1", vmid)

    sent = simulator.requests_to(r"/status/stop$", method="POST")[0]
    assert str(sent.params["overrule-shutdown"]) == "1"


async def test_a_shutdown_the_guest_ignores_ends_as_a_failed_task(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(vmid=300, node="pve1", running=True, guest=GuestBehaviour(obeys_acpi=False))
    upid = await proxmox.shutdown_vm("pve1", 300, timeout=2)
    status = await ended(proxmox, upid)
    assert not status.ok
    assert status.exitstatus is not None and "got timeout" in status.exitstatus
    assert (await proxmox.vm_status("pve1", 300)).running


async def test_find_vm_reports_the_node_a_vm_lives_on(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(vmid=400, node="pve2", tags=["vmop-u2"])
    simulator.add_container(vmid=401, node="pve1")
    found = await proxmox.find_vm(400)
    assert found is not None and (found.node, found.tags) == ("pve2", ("vmop-u2",))
    assert await proxmox.find_vm(401) is None
    with pytest.raises(AbsentError) as raised:
        await proxmox.vm_status("pve1", 400)
    assert raised.value.node == "pve1"


async def test_a_backup_lock_refuses_a_config_change(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(vmid=500, node="pve1")
    simulator.set_lock(500, "backup")
    with pytest.raises(LockedError) as raised:
        await proxmox.update_config("pve1", 500, {"description": "x"})
    assert raised.value.lock == "backup"


async def test_a_clone_with_full_true_is_accepted(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(vmid=9000, node="pve1", template=True)
    upid = await proxmox.clone_vm("pve1", 9000, 601, name="clone-1", full=True)
    assert (await ended(proxmox, upid)).ok
    assert simulator.vm_exists(601)


async def test_a_parameter_the_simulator_refuses_is_rejected(proxmox: ProxmoxClient) -> None:
    with pytest.raises(RejectedError) as raised:
        await proxmox.create_vm("pve1", 700, {"bogus-key": 1})
    assert "bogus-key" in raised.value.errors


async def test_a_wrong_token_is_unauthorized(simulator: Simulator) -> None:
    settings = ConnectionSettings.from_secret_data(
        secret_for(simulator, tokenSecret="00000000-0000-0000-0000-000000000000")
    )
    async with ProxmoxClient(settings) as client:
        with pytest.raises(UnauthorizedError):
            await client.list_vms()


async def test_an_unreachable_api_is_never_absent(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(vmid=800, node="pve1")
    simulator.make_unreachable()
    with pytest.raises(UnreachableError):
        await proxmox.find_vm(800)
    simulator.restore()
    assert await proxmox.find_vm(800) is not None
