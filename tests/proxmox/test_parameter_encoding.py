"""Parameters reach PVE as it accepts them: booleans as 1/0, dashed names, never skiplock."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.proxmox import ProxmoxClient, RejectedError, encode_params

from .pve_wire import UPID, FakePve, Reply, in_turn


def test_booleans_become_1_and_0_and_none_is_dropped() -> None:
    encoded = encode_params({"full": True, "onboot": False, "cores": 2, "name": "a", "pool": None})
    assert encoded == {"full": 1, "onboot": 0, "cores": 2, "name": "a"}
    assert all(type(value) is not bool for value in encoded.values())


def test_skiplock_is_never_sent() -> None:
    with pytest.raises(RejectedError, match="skiplock"):
        encode_params({"skiplock": True})


async def test_a_clone_sends_full_as_1_in_the_form_body(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("POST", "/nodes/pve1/qemu/9000/clone", Reply(data=UPID))
    await client.clone_vm("pve1", 9000, 1201, name="web-1", full=True, storage="local-lvm")
    [request] = fake_pve.requests
    assert request.form == {
        "newid": ["1201"],
        "name": ["web-1"],
        "full": ["1"],
        "storage": ["local-lvm"],
    }


def _version(fake_pve: FakePve, version: str) -> None:
    release = ".".join(version.split(".")[:2])
    fake_pve.reply("GET", "/version", Reply(data={"version": version, "release": release}))


async def test_a_forced_stop_sends_overrule_shutdown_1(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    _version(fake_pve, "8.2.2")
    fake_pve.reply("POST", "/nodes/pve1/qemu/100/status/stop", Reply(data=UPID))
    await client.stop_vm("pve1", 100, overrule_shutdown=True)
    stop = [r for r in fake_pve.requests if r.method == "POST"]
    assert stop[0].form == {"overrule-shutdown": ["1"]}


@pytest.mark.parametrize("version", ["7.4.17", "8.0.4", "8.1.10"])
async def test_before_pve_8_2_a_forced_stop_is_a_plain_stop(
    fake_pve: FakePve, client: ProxmoxClient, version: str
) -> None:
    """qemu-server knows overrule-shutdown since 8.1.2 (PVE 8.2); older ones refuse it."""
    _version(fake_pve, version)
    fake_pve.reply("POST", "/nodes/pve1/qemu/100/status/stop", Reply(data=UPID))
    await client.stop_vm("pve1", 100, overrule_shutdown=True)
    await client.stop_vm("pve1", 100, overrule_shutdown=True)
    stops = [r for r in fake_pve.requests if r.method == "POST"]
    assert [s.form for s in stops] == [{}, {}]
    # The version is read once per connection, not per call.
    assert len([r for r in fake_pve.requests if r.path.endswith("/version")]) == 1


async def test_a_400_naming_overrule_shutdown_rereads_the_version_and_sends_a_plain_stop(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    """The cluster was downgraded (or the version was read from a newer node) since the
    version was read: the refusal is not final, the stop goes out without the parameter."""
    _version(fake_pve, "8.3.0")
    assert await client.knows_overrule_shutdown()
    _version(fake_pve, "8.1.4")
    refusal = Reply(
        400,
        reason="Parameter verification failed.",
        errors={
            "overrule-shutdown": "property is not defined in schema and the schema does not "
            "allow additional properties"
        },
    )
    fake_pve.reply("POST", "/nodes/pve1/qemu/100/status/stop", in_turn(refusal, Reply(data=UPID)))
    upid = await client.stop_vm("pve1", 100, overrule_shutdown=True)
    assert str(upid) == UPID
    stops = [r for r in fake_pve.requests if r.method == "POST"]
    assert [s.form for s in stops] == [{"overrule-shutdown": ["1"]}, {}]


async def test_a_plain_stop_does_not_send_overrule_shutdown(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("POST", "/nodes/pve1/qemu/100/status/stop", Reply(data=UPID))
    await client.stop_vm("pve1", 100)
    assert fake_pve.requests[0].form == {}


async def test_a_shutdown_sends_timeout_and_force_stop(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("POST", "/nodes/pve1/qemu/100/status/shutdown", Reply(data=UPID))
    await client.shutdown_vm("pve1", 100, timeout=120, force_stop=False)
    assert fake_pve.requests[0].form == {"timeout": ["120"], "forceStop": ["0"]}


async def test_a_delete_sends_its_flags_as_1_and_0_in_the_query(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("DELETE", "/nodes/pve1/qemu/100", Reply(data=UPID))
    await client.delete_vm("pve1", 100, purge=True, destroy_unreferenced_disks=False)
    [request] = fake_pve.requests
    assert request.query == {"purge": ["1"], "destroy-unreferenced-disks": ["0"]}
    assert request.form == {}


async def test_a_config_update_sends_booleans_delete_list_and_digest(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("PUT", "/nodes/pve1/qemu/100/config", Reply(data=None))
    await client.update_config(
        "pve1",
        100,
        {"onboot": True, "agent": False, "cores": 4},
        delete=["ide2", "net1"],
        digest="0f3a",
    )
    assert fake_pve.requests[0].form == {
        "onboot": ["1"],
        "agent": ["0"],
        "cores": ["4"],
        "delete": ["ide2,net1"],
        "digest": ["0f3a"],
    }


async def test_a_create_refuses_skiplock_before_anything_is_sent(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    with pytest.raises(RejectedError):
        await client.create_vm("pve1", 100, {"skiplock": True, "cores": 1})
    assert fake_pve.requests == []
