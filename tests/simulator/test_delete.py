"""Delete: the synchronous refusals, the ones inside the task, purge, and what is left after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import client_for, task_log, vm_state, wait_for_task

MISSING = "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"


def http_error(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ResourceException) as failed:
        call()
    return failed.value.status_code, failed.value.content


def test_delete_removes_the_vm_everywhere(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, config={"scsi0": "local-lvm:vm-100-disk-0,size=8G"})
    upid = px.nodes("pve1").qemu(100).delete()
    assert ":qmdestroy:100:" in upid
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert not sim.vm_exists(100)
    assert all(e["vmid"] != 100 for e in px.cluster.resources.get(type="vm"))
    assert all(vm["vmid"] != 100 for vm in px.nodes("pve1").qemu.get())
    assert http_error(lambda: px.nodes("pve1").qemu(100).status.current.get()) == (500, MISSING)
    assert http_error(lambda: px.nodes("pve1").qemu(100).delete()) == (500, MISSING)
    assert px.cluster.nextid.get() == "100"


def test_a_running_vm_is_refused(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True)
    assert http_error(lambda: px.nodes("pve1").qemu(100).delete()) == (
        500,
        "VM 100 is running - destroy failed",
    )
    assert sim.tasks() == []
    assert sim.vm_exists(100)


def test_protection_is_checked_first(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, protection=True, ha_state="started")
    assert http_error(lambda: px.nodes("pve1").qemu(100).delete(purge=1)) == (
        500,
        "can't remove VM 100 - protection mode enabled",
    )
    px.nodes("pve1").qemu(100).config.put(protection=0)
    assert http_error(lambda: px.nodes("pve1").qemu(100).delete()) == (
        500,
        "unable to remove VM 100 - used in HA resources and purge parameter not set.",
    )
    assert http_error(lambda: px.nodes("pve1").qemu(100).delete(purge=1)) == (
        500,
        "VM 100 is running - destroy failed",
    )


def test_a_config_lock_fails_inside_the_task(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, lock="backup")
    upid = px.nodes("pve1").qemu(100).delete()
    assert upid.startswith("UPID:")
    assert wait_for_task(px, upid)["exitstatus"] == "VM is locked (backup)"
    assert task_log(px, upid)[-1] == "TASK ERROR: VM is locked (backup)"
    assert vm_state(sim, 100)["lock"] == "backup"


def test_a_suspended_lock_does_not_block(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, lock="suspended")
    assert wait_for_task(px, px.nodes("pve1").qemu(100).delete())["exitstatus"] == "OK"
    assert not sim.vm_exists(100)


def test_root_may_skip_the_lock(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(users={"root@pam": "pw"})
    sim.add_vm(100, lock="backup")
    root = ProxmoxAPI(
        sim.host, port=sim.port, user="root@pam", password="pw", verify_ssl=str(sim.ca_file)
    )
    assert (
        wait_for_task(root, root.nodes("pve1").qemu(100).delete(skiplock=1))["exitstatus"] == "OK"
    )
    assert not sim.vm_exists(100)


def test_a_held_flock_fails_the_task(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    sim.hold_flock(100, 60)
    upid = px.nodes("pve1").qemu(100).delete()
    assert wait_for_task(px, upid)["exitstatus"] == (
        "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"
    )
    assert sim.vm_exists(100)


def test_purge_removes_the_ha_resource(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, ha_state="stopped")
    upid = px.nodes("pve1").qemu(100).delete(purge=1, **{"destroy-unreferenced-disks": 1})
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    log = task_log(px, upid)
    assert "purging VM 100 from related configurations.." in log
    assert "NOTE: removed VM 100 from HA resource configuration." in log
    assert px.cluster.ha.resources.get() == []
    assert not sim.vm_exists(100)


def test_destroy_runs_in_three_phases_a_poller_can_see(
    make_sim: Callable[..., Simulator],
) -> None:
    """QemuServer.pm destroy_vm, called by the qmdestroy worker under the config flock:
    (a) the volumes are freed while the config is still whole; (b) the config is rewritten to
    only "lock: destroyed"; (c) ACLs, pool membership and (purge) HA go, then the config."""
    sim = make_sim(time_scale=1e-6)  # frozen: the clock moves when the test says so
    px = client_for(sim)
    sim.add_vm(100, tags=["owned"], ha_state="stopped", config={"scsi0": "local-lvm:vm-100-disk-0"})
    sim.grant("alice@pve", "/vms/100", ["VM.Audit"])
    sim.set_pool(100, "team")
    vm = px.nodes("pve1").qemu(100)
    upid = vm.delete(purge=1)

    sim.advance(1)  # phase (a), 80 % of Timings.destroy (2 s): freeing the volumes
    config = vm.config.get()
    assert (config["name"], config["tags"]) == ("vm100", "owned")
    assert "lock" not in config and "lock" not in vm.status.current.get()
    assert px.nodes("pve1").tasks(upid).status.get()["status"] == "running"

    sim.advance(0.7)  # phase (b): the replacement config holds only the lock
    config = vm.config.get()
    del config["digest"]
    assert config == {"lock": "destroyed"}
    current = vm.status.current.get()
    assert current["lock"] == "destroyed" and "tags" not in current and current["name"] == "VM 100"
    assert px.cluster.ha.resources.get() != []  # purge comes in phase (c)
    assert vm_state(sim, 100)["pool"] == "team"

    sim.advance(0.2)  # phase (c): access, pool and HA cleaned up; the config not yet removed
    assert px.cluster.ha.resources.get() == []
    assert vm_state(sim, 100)["pool"] is None
    assert vm_state(sim, 100)["config"] == {"lock": "destroyed"}

    sim.advance(0.2)
    assert wait_for_task(px, upid, timeout=5)["exitstatus"] == "OK"
    assert not sim.vm_exists(100)


def test_the_early_checks_are_repeated_under_the_flock(make_sim: Callable[..., Simulator]) -> None:
    """Qemu.pm destroy_vm realcmd repeats $early_checks once it holds the lock: the config
    may have changed (or gone) while it waited."""
    sim = make_sim(time_scale=1e-6)
    px = client_for(sim)
    sim.add_vm(100)
    sim.add_vm(101)
    sim.hold_flock(100, 5)
    sim.hold_flock(101, 5)
    protected = px.nodes("pve1").qemu(100).delete()
    first, second = px.nodes("pve1").qemu(101).delete(), px.nodes("pve1").qemu(101).delete()
    sim.set_protection(100)
    sim.advance(5)  # the holders let go
    for _ in range(6):  # the first 101 destroy runs through its phases, then the second
        sim.advance(0.5)
    assert wait_for_task(px, protected, timeout=5)["exitstatus"] == (
        "can't remove VM 100 - protection mode enabled"
    )
    assert sim.vm_exists(100)
    statuses = sorted(wait_for_task(px, upid, timeout=5)["exitstatus"] for upid in (first, second))
    assert statuses == ["Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist", "OK"]


def test_without_quorum_the_task_fails_writing_the_config(sim: Simulator, px: Any) -> None:
    """destroy_vm has no quorum check before the fork: the worker frees the volumes, then
    cannot write the replacement config to the read-only /etc/pve."""
    sim.add_vm(100, tags=["owned"])
    sim.set_quorum(False)
    upid = px.nodes("pve1").qemu(100).delete()
    pid = int(upid.split(":")[2], 16)
    assert wait_for_task(px, upid)["exitstatus"] == (
        f"unable to open file '/etc/pve/nodes/pve1/qemu-server/100.conf.tmp.{pid}' - "
        "Permission denied"
    )
    assert vm_state(sim, 100)["config"]["tags"] == "owned"


def test_the_wrong_node_and_an_unknown_node(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, node="pve1")
    assert http_error(lambda: px.nodes("pve2").qemu(100).delete()) == (
        500,
        "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist",
    )
    assert http_error(lambda: px.nodes("pve9").qemu(100).delete()) == (
        500,
        "hostname lookup 'pve9' failed - failed to get address info for: pve9: "
        "Name or service not known",
    )
    assert sim.vm_exists(100)
