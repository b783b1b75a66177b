"""ACLs, pools and token privilege separation: each route checks what the real one checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import TOKEN_ID, TOKEN_SECRET, client_for, task_log, vm_state, wait_for_task

ALICE = "alice@pve"
ALICE_TOKEN = "alice@pve!ci"
ALICE_SECRET = "alice-s3cret"  # a test credential for the simulator only


def denied(call: Callable[[], Any]) -> str:
    """The 403's message (PVE: ``Permission check failed (PATH, PRIV)``)."""
    with pytest.raises(ResourceException) as failed:
        call()
    assert failed.value.status_code == 403, failed.value
    message: str = failed.value.content
    return message


@pytest.fixture
def acl_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(
        tokens={TOKEN_ID: TOKEN_SECRET, ALICE_TOKEN: ALICE_SECRET},
        users={ALICE: "alice-pw", "bob@pve": "bob-pw"},
    )


def alice_token(sim: Simulator) -> Any:
    return ProxmoxAPI(
        sim.host,
        port=sim.port,
        user=ALICE,
        token_name="ci",
        token_value=ALICE_SECRET,
        verify_ssl=str(sim.ca_file),
    )


def login(sim: Simulator, user: str, password: str) -> Any:
    return ProxmoxAPI(
        sim.host, port=sim.port, user=user, password=password, verify_ssl=str(sim.ca_file)
    )


def vm_ids(rows: list[dict[str, Any]]) -> list[int]:
    return sorted(int(row["vmid"]) for row in rows if "vmid" in row)


def test_a_user_without_acls_is_refused_with_the_path_and_privilege(acl_sim: Simulator) -> None:
    acl_sim.add_vm(100, running=True)
    alice = alice_token(acl_sim)
    vm = alice.nodes("pve1").qemu(100)
    assert denied(vm.status.current.get) == "Permission check failed (/vms/100, VM.Audit)"
    assert denied(vm.config.get) == "Permission check failed (/vms/100, VM.Audit)"
    assert denied(vm.status.stop.post) == "Permission check failed (/vms/100, VM.PowerMgmt)"
    assert denied(vm.delete) == "Permission check failed (/vms/100, VM.Allocate)"
    assert denied(lambda: vm.config.put(name="x")) == (
        "Permission check failed (/vms/100, VM.Config.Disk|VM.Config.CDROM|VM.Config.CPU|"
        "VM.Config.Memory|VM.Config.Network|VM.Config.HWType|VM.Config.Options|"
        "VM.Config.Cloudinit)"
    )
    # The route check comes before the call goes to its node or the parameters are checked.
    assert denied(alice.nodes("pve9").qemu(100).status.current.get).endswith("VM.Audit)")
    assert denied(lambda: vm.status.stop.post(bogus=1)).endswith("VM.PowerMgmt)")
    assert acl_sim.tasks() == []

    acl_sim.grant(ALICE, "/vms/100", ["VM.Audit", "VM.PowerMgmt"])
    assert vm.status.current.get()["status"] == "running"
    assert wait_for_task(alice, vm.status.stop.post())["exitstatus"] == "OK"


def test_lists_leave_out_what_the_caller_may_not_audit(acl_sim: Simulator) -> None:
    """Cluster.pm resources and Qemu.pm vmlist filter silently: 200, never 403."""
    acl_sim.add_vm(100)
    acl_sim.add_vm(200)
    acl_sim.add_container(300)
    alice = alice_token(acl_sim)
    assert vm_ids(alice.cluster.resources.get(type="vm")) == []
    assert alice.nodes("pve1").qemu.get() == []
    # Nodes are listed, their figures only with Sys.Audit; storages need Datastore.Audit.
    nodes = alice.cluster.resources.get(type="node")
    assert [n["node"] for n in nodes] == ["pve1", "pve2"] and "maxmem" not in nodes[0]
    assert alice.cluster.resources.get(type="storage") == []

    acl_sim.grant(ALICE, "/vms/100", ["VM.Audit"])
    acl_sim.grant(ALICE, "/nodes/pve1", ["Sys.Audit"])
    acl_sim.grant(ALICE, "/storage/local-lvm", ["Datastore.Audit"])
    assert vm_ids(alice.cluster.resources.get(type="vm")) == [100]
    assert vm_ids(alice.nodes("pve1").qemu.get()) == [100]
    assert "maxmem" in alice.nodes.get()[0] and "maxmem" not in alice.nodes.get()[1]
    assert {s["storage"] for s in alice.cluster.resources.get(type="storage")} == {"local-lvm"}
    everything = client_for(acl_sim).cluster.resources.get(type="vm")
    assert vm_ids(everything) == [100, 200, 300]


def test_acls_propagate_down_and_a_deeper_entry_replaces_a_higher_one(
    acl_sim: Simulator,
) -> None:
    """AccessControl.pm roles: walking the path, each entry that applies replaces the roles
    found above it; a non-propagating entry applies to its own path only."""
    acl_sim.add_vm(100)
    acl_sim.add_vm(200)
    alice = alice_token(acl_sim)
    acl_sim.grant(ALICE, "/", ["VM.Audit"], propagate=False)
    assert vm_ids(alice.cluster.resources.get(type="vm")) == []
    acl_sim.grant(ALICE, "/vms", ["VM.Audit"])
    assert vm_ids(alice.cluster.resources.get(type="vm")) == [100, 200]
    acl_sim.grant(ALICE, "/vms/100", ["VM.PowerMgmt"])  # replaces VM.Audit on /vms/100
    assert vm_ids(alice.cluster.resources.get(type="vm")) == [200]
    assert denied(alice.nodes("pve1").qemu(100).status.current.get).endswith("VM.Audit)")
    acl_sim.revoke(ALICE, "/vms/100")
    assert vm_ids(alice.cluster.resources.get(type="vm")) == [100, 200]
    acl_sim.grant(ALICE, "/vms/100", ["NoAccess"])
    assert vm_ids(alice.cluster.resources.get(type="vm")) == [200]


def test_pool_acls_reach_the_pools_vms(acl_sim: Simulator) -> None:
    acl_sim.add_vm(100)
    acl_sim.add_vm(200)
    acl_sim.set_pool(100, "team")
    alice = alice_token(acl_sim)
    acl_sim.grant(ALICE, "/pool/team", ["PVEVMUser"])
    assert vm_ids(alice.cluster.resources.get(type="vm")) == [100]
    assert "pool" not in alice.cluster.resources.get(type="vm")[0]  # needs Pool.Audit
    pools = [r.get("pool") for r in client_for(acl_sim).cluster.resources.get(type="vm")]
    assert pools == ["team", None]
    assert wait_for_task(alice, alice.nodes("pve1").qemu(100).status.start.post())[
        "exitstatus"
    ] == ("OK")
    assert denied(alice.nodes("pve1").qemu(200).status.start.post).endswith("VM.PowerMgmt)")
    acl_sim.set_pool(100, None)
    assert vm_ids(alice.cluster.resources.get(type="vm")) == []


def test_a_privilege_separated_token_gets_what_both_it_and_its_user_hold(
    acl_sim: Simulator,
) -> None:
    """RPCEnvironment.pm permissions/compile_acl_path: privsep tokens intersect."""
    acl_sim.add_vm(100, running=True)
    alice = alice_token(acl_sim)
    vm = alice.nodes("pve1").qemu(100)
    acl_sim.grant(ALICE, "/vms/100", ["VM.Audit", "VM.PowerMgmt"])
    assert vm.status.current.get()["status"] == "running"  # no privsep: the user's privileges

    acl_sim.set_privsep(ALICE_TOKEN, True)
    assert denied(vm.status.current.get).endswith("VM.Audit)")
    acl_sim.grant(ALICE_TOKEN, "/vms/100", ["VM.Audit", "VM.Allocate"])
    assert vm.status.current.get()["status"] == "running"
    assert denied(vm.status.stop.post).endswith("VM.PowerMgmt)")  # the token lacks it
    assert denied(vm.delete).endswith("VM.Allocate)")  # the user lacks it

    acl_sim.set_privsep(ALICE_TOKEN, False)
    assert wait_for_task(alice, vm.status.stop.post())["exitstatus"] == "OK"


def test_root_tokens_have_everything_unless_privilege_separated(
    make_sim: Callable[..., Simulator],
) -> None:
    sim = make_sim()
    px = client_for(sim)
    sim.add_vm(100)
    assert px.nodes("pve1").qemu(100).status.current.get()["status"] == "stopped"
    sim.set_privsep(TOKEN_ID, True)
    assert denied(px.nodes("pve1").qemu(100).status.current.get).endswith("VM.Audit)")
    assert px.cluster.resources.get(type="vm") == []
    sim.grant(TOKEN_ID, "/", ["PVEAuditor"])  # root's own privileges need no intersecting
    assert vm_ids(px.cluster.resources.get(type="vm")) == [100]


def test_create_checks_allocate_storage_and_each_option(acl_sim: Simulator) -> None:
    """Qemu.pm create_vm: pool exists, VM.Allocate on the vmid or the pool, space on each
    new disk's storage, then each option's privilege."""
    alice = alice_token(acl_sim)
    qemu = alice.nodes("pve1").qemu
    assert denied(lambda: qemu.post(vmid=150, pool="nope")) == (
        "Permission check failed (pool 'nope' does not exist)"
    )
    acl_sim.add_pool("team")
    assert denied(lambda: qemu.post(vmid=150, pool="team")) == "Permission check failed"
    acl_sim.grant(ALICE, "/pool/team", ["VM.Allocate", "VM.Config.CPU"])
    assert denied(lambda: qemu.post(vmid=150, pool="team", scsi0="local-lvm:8")) == (
        "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)"
    )
    acl_sim.grant(ALICE, "/storage", ["Datastore.AllocateSpace"])
    assert denied(lambda: qemu.post(vmid=150, pool="team", memory=1024)) == (
        "Permission check failed (/vms/150, VM.Config.Memory)"
    )
    assert denied(lambda: qemu.post(vmid=150, pool="team", start=1)) == (
        "Permission check failed (/vms/150, VM.PowerMgmt)"
    )
    upid = qemu.post(vmid=150, pool="team", cores=2, scsi0="local-lvm:8")
    assert wait_for_task(alice, upid)["exitstatus"] == "OK"
    assert vm_state(acl_sim, 150)["pool"] == "team"


def test_config_updates_check_each_options_privilege(acl_sim: Simulator) -> None:
    acl_sim.add_vm(100, tags=["a"])
    alice = alice_token(acl_sim)
    vm = alice.nodes("pve1").qemu(100)
    acl_sim.grant(ALICE, "/vms/100", ["VM.Config.Memory", "VM.Audit"])
    vm.config.put(memory=4096)
    assert denied(lambda: vm.config.put(name="renamed")) == (
        "Permission check failed (/vms/100, VM.Config.Options)"
    )
    assert denied(lambda: vm.config.put(delete="cores")) == (
        "Permission check failed (/vms/100, VM.Config.CPU)"
    )
    # Tags are checked under the config lock (GuestHelpers.pm assert_tag_permissions):
    # inside the task for POST, a synchronous 403 for PUT.
    upid = vm.config.post(tags="b")
    assert wait_for_task(alice, upid)["exitstatus"] == (
        "Permission check failed (/vms/100, VM.Config.Options)"
    )
    assert denied(lambda: vm.config.put(tags="b")).endswith("VM.Config.Options)")
    acl_sim.grant(ALICE, "/vms/100", ["VM.Config.Options"])
    assert denied(lambda: vm.config.put(startup="order=1")) == (
        "Permission check failed (/, Sys.Modify)"
    )
    vm.config.put(tags="b", name="renamed")
    assert vm.config.get()["tags"] == "b"


def test_clone_needs_clone_on_the_source_and_allocate_on_the_new_id(acl_sim: Simulator) -> None:
    acl_sim.add_vm(100, template=True, config={"scsi0": "local-lvm:base-100-disk-0,size=8G"})
    alice = alice_token(acl_sim)
    clone = alice.nodes("pve1").qemu(100).clone
    assert denied(lambda: clone.post(newid=101)) == "Permission check failed (/vms/100, VM.Clone)"
    acl_sim.grant(ALICE, "/vms/100", ["VM.Clone"])
    assert denied(lambda: clone.post(newid=101)) == "Permission check failed"
    acl_sim.grant(ALICE, "/vms/101", ["VM.Allocate"])
    assert denied(lambda: clone.post(newid=101)) == (
        "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)"
    )
    acl_sim.grant(ALICE, "/storage/local-lvm", ["Datastore.AllocateSpace"])
    assert wait_for_task(alice, clone.post(newid=101))["exitstatus"] == "OK"


def test_ha_resources_need_sys_audit_and_sys_console_on_the_root(acl_sim: Simulator) -> None:
    acl_sim.add_vm(100)
    alice = alice_token(acl_sim)
    assert denied(alice.cluster.ha.resources.get) == "Permission check failed (/, Sys.Audit)"
    assert denied(lambda: alice.cluster.ha.resources.post(sid="vm:100")) == (
        "Permission check failed (/, Sys.Console)"
    )


def test_destroy_removes_the_vms_acls_and_pool_membership(acl_sim: Simulator) -> None:
    """AccessControl.pm remove_vm_access: a new VM with the old vmid inherits nothing."""
    acl_sim.add_vm(100)
    acl_sim.set_pool(100, "team")
    acl_sim.grant(ALICE, "/vms/100", ["VM.Audit"])
    px = client_for(acl_sim)
    assert wait_for_task(px, px.nodes("pve1").qemu(100).delete())["exitstatus"] == "OK"
    acl_sim.add_vm(100)
    assert vm_state(acl_sim, 100)["pool"] is None
    assert denied(alice_token(acl_sim).nodes("pve1").qemu(100).status.current.get).endswith(
        "VM.Audit)"
    )


def test_task_lists_show_only_the_callers_own_tasks_without_sys_audit(
    acl_sim: Simulator,
) -> None:
    """Tasks.pm: a token's task belongs to the token and its user; a user's task to the user;
    other tasks need Sys.Audit on the node (Sys.Modify to stop them)."""
    acl_sim.add_vm(100)
    acl_sim.add_vm(200)
    bobs = acl_sim.start_task_as("bob@pve", 200, "start")
    acl_sim.grant(ALICE, "/vms/100", ["VM.PowerMgmt"])
    token = alice_token(acl_sim)
    user = login(acl_sim, ALICE, "alice-pw")
    tokens_task = token.nodes("pve1").qemu(100).status.start.post()
    assert wait_for_task(token, tokens_task)["exitstatus"] == "OK"

    for caller in (token, user):  # the token's task is both the token's and its user's
        listed = caller.nodes("pve1").tasks.get()
        assert [t["upid"] for t in listed] == [tokens_task]
        assert caller.nodes("pve1").tasks(tokens_task).status.get()["tokenid"] == "ci"
        assert denied(caller.nodes("pve1").tasks(bobs).status.get) == (
            "Permission check failed (/nodes/pve1, Sys.Audit)"
        )
        assert denied(caller.nodes("pve1").tasks(bobs).log.get).endswith("Sys.Audit)")
        assert denied(caller.nodes("pve1").tasks(bobs).delete) == (
            "Permission check failed (/nodes/pve1, Sys.Modify)"
        )

    acl_sim.grant(ALICE, "/nodes/pve1", ["Sys.Audit"])
    assert {t["upid"] for t in user.nodes("pve1").tasks.get()} == {tokens_task, bobs}
    assert task_log(user, bobs)[-1] == "TASK OK"


def test_a_users_running_tasks_by_token_are_not_in_its_active_list(
    make_sim: Callable[..., Simulator],
) -> None:
    """Tasks.pm node_tasks compares the active list's undecoded user: while it runs, a
    token's task shows to the token only; once finished, to its user as well."""
    sim = make_sim(tokens={ALICE_TOKEN: ALICE_SECRET}, users={ALICE: "alice-pw"}, time_scale=1e-6)
    sim.add_vm(100)
    upid = sim.start_task_as(ALICE_TOKEN, 100, "start")
    token, user = alice_token(sim), login(sim, ALICE, "alice-pw")
    assert [t["upid"] for t in token.nodes("pve1").tasks.get(source="active")] == [upid]
    assert user.nodes("pve1").tasks.get(source="active") == []
    assert user.nodes("pve1").tasks(upid).status.get()["status"] == "running"
    sim.advance(5)
    assert [t["upid"] for t in user.nodes("pve1").tasks.get()] == [upid]
