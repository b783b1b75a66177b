"""Config writes: PUT is synchronous, POST a task; digest, locks, flock, pending changes."""

from __future__ import annotations

from typing import Any

import pytest
from proxmoxer import ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import task_log, vm_state, wait_for_task

FLOCK_TIMEOUT = "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"


def http_error(call: Any) -> tuple[int, str]:
    with pytest.raises(ResourceException) as failed:
        call()
    return failed.value.status_code, failed.value.content


def test_put_is_synchronous_and_returns_null(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    assert px.nodes("pve1").qemu(100).config.put(cores=2, description="hello") is None
    config = vm_state(sim, 100)["config"]
    assert (config["cores"], config["description"]) == (2, "hello")
    assert sim.tasks() == []


def test_post_is_a_qmconfig_task(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    upid = px.nodes("pve1").qemu(100).config.post(cores=3)
    assert upid.startswith("UPID:pve1:") and ":qmconfig:100:root@pam!ci:" in upid
    status = wait_for_task(px, upid)
    assert (status["type"], status["id"], status["exitstatus"]) == ("qmconfig", "100", "OK")
    assert task_log(px, upid)[-1] == "TASK OK"
    assert px.nodes("pve1").qemu(100).config.get()["cores"] == 3


def test_post_with_background_delay(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    # The task ends within the delay: the reply is null, as for PUT.
    assert vm.config.post(cores=2, background_delay=5) is None
    assert vm.config.get()["cores"] == 2
    # It fails within the delay: a synchronous 500 carrying the task's error.
    sim.hold_flock(100, 60)
    assert http_error(lambda: vm.config.post(cores=4, background_delay=30)) == (
        500,
        f"failed to update VM 100: {FLOCK_TIMEOUT}",
    )


def test_no_options_specified(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    assert http_error(lambda: px.nodes("pve1").qemu(100).config.put()) == (
        500,
        "no options specified",
    )


def test_digest_mismatch_is_refused_synchronously(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    stale = vm.config.get()["digest"]
    assert vm.config.put(description="first", digest=stale) is None
    mismatch = (500, "checksum mismatch (file change by other user?)")
    assert http_error(lambda: vm.config.put(description="second", digest=stale)) == mismatch
    assert http_error(lambda: vm.config.post(description="second", digest=stale)) == mismatch
    assert sim.tasks() == []  # the POST was refused before any task
    assert vm.config.get()["description"] == "first"
    fresh = vm.config.get()["digest"]
    assert vm.config.put(description="third", digest=fresh) is None


@pytest.mark.parametrize("method", ["put", "post"])
def test_a_config_lock_refuses_writes_synchronously(sim: Simulator, px: Any, method: str) -> None:
    sim.add_vm(100)
    sim.set_lock(100, "backup")
    write = getattr(px.nodes("pve1").qemu(100).config, method)
    assert http_error(lambda: write(description="x")) == (500, "VM is locked (backup)")
    sim.set_lock(100, None)
    result = write(description="x")
    if method == "post":
        assert wait_for_task(px, result)["exitstatus"] == "OK"
    assert vm_state(sim, 100)["config"]["description"] == "x"


def test_a_held_flock_fails_put_synchronously_and_post_inside_its_task(
    sim: Simulator, px: Any
) -> None:
    sim.add_vm(100)
    sim.hold_flock(100, 60)  # someone else's long task holds the file lock
    vm = px.nodes("pve1").qemu(100)
    assert http_error(lambda: vm.config.put(description="x")) == (500, FLOCK_TIMEOUT)

    upid = vm.config.post(description="y")
    assert upid.startswith("UPID:")
    assert wait_for_task(px, upid)["exitstatus"] == FLOCK_TIMEOUT
    (listed,) = px.nodes("pve1").tasks.get(typefilter="qmconfig")
    assert listed["endtime"] - listed["starttime"] in (10, 11)  # the 10 s flock wait
    assert task_log(px, upid)[-1] == f"TASK ERROR: {FLOCK_TIMEOUT}"
    assert "description" not in vm_state(sim, 100)["config"]


def test_on_a_running_vm_fast_plug_keys_apply_now_and_the_rest_waits_for_a_start(
    sim: Simulator, px: Any
) -> None:
    sim.add_vm(100, running=True, config={"memory": "2048", "cores": 1})
    vm = px.nodes("pve1").qemu(100)
    vm.config.put(
        name="renamed",
        description="now",
        tags="live",
        onboot=1,
        protection=0,
        cores=4,
        memory="4096",
        sockets=1,
    )
    current = vm.config.get(current=1)
    assert (current["name"], current["description"], current["tags"]) == (
        "renamed",
        "now",
        "live",
    )
    assert (current["onboot"], current["protection"]) == (1, 0)
    assert (current["cores"], current["memory"]) == (1, "2048")
    pending = {row["key"]: row.get("pending") for row in vm.pending.get() if "pending" in row}
    assert pending == {"cores": 4, "memory": "4096", "sockets": 1}
    assert vm.status.current.get()["maxmem"] == 2048 * 2**20

    assert wait_for_task(px, vm.status.stop.post())["exitstatus"] == "OK"
    assert vm.config.get(current=1)["cores"] == 1  # a stop alone applies nothing
    assert wait_for_task(px, vm.status.start.post())["exitstatus"] == "OK"
    applied = vm.config.get(current=1)
    assert (applied["cores"], applied["memory"]) == (4, "4096")
    assert all("pending" not in row for row in vm.pending.get())
    assert vm.status.current.get()["maxmem"] == 4096 * 2**20


def test_a_reboot_applies_pending_changes(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True)
    vm = px.nodes("pve1").qemu(100)
    vm.config.put(cores=2)
    assert vm.config.get(current=1)["cores"] == 1
    assert wait_for_task(px, vm.status.reboot.post())["exitstatus"] == "OK"
    assert vm.config.get(current=1)["cores"] == 2
    assert vm.status.current.get()["status"] == "running"


def test_a_change_back_to_the_current_value_leaves_nothing_pending(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, config={"cores": 2})
    vm = px.nodes("pve1").qemu(100)
    vm.config.put(cores=4)
    vm.config.put(cores=2)
    assert all("pending" not in row for row in vm.pending.get())


def test_delete(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, config={"description": "d", "cpu": "host", "onboot": 1})
    vm = px.nodes("pve1").qemu(100)
    vm.config.put(delete="description,onboot")
    config = vm.config.get()
    assert "description" not in config and "onboot" not in config

    # Running: a live key goes at once, another waits as a pending delete.
    assert wait_for_task(px, vm.status.start.post())["exitstatus"] == "OK"
    vm.config.put(delete="cpu;name")
    assert "name" not in vm.config.get(current=1)
    assert vm.config.get(current=1)["cpu"] == "host"
    assert "cpu" not in vm.config.get()
    assert [row for row in vm.pending.get() if row.get("delete")] == [
        {"key": "cpu", "value": "host", "delete": 1}
    ]
    # Deleting an unset key only warns, in the task log.
    upid = vm.config.post(delete="hotplug")
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert "cannot delete 'hotplug' - not set in current configuration!" in task_log(px, upid)


def test_options_of_no_privilege_group_are_for_root_at_pam_alone(sim: Simulator, px: Any) -> None:
    """Qemu.pm $check_vm_modify_config_perm: hookscript or vmgenid belong to no privilege
    group; only root@pam itself may set or delete them, not even its tokens."""
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    assert http_error(lambda: vm.config.post(delete="hookscript")) == (
        500,
        "only root can set 'hookscript' config",
    )
    assert http_error(lambda: vm.config.put(vmgenid="1")) == (
        500,
        "only root can set 'vmgenid' config",
    )
    assert sim.tasks() == []


def test_delete_parameter_errors(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    with pytest.raises(ResourceException) as unknown:
        vm.config.put(delete="bogus")
    assert (unknown.value.status_code, unknown.value.errors) == (
        400,
        {"delete": "unknown option 'bogus'"},
    )
    with pytest.raises(ResourceException) as both:
        vm.config.put(delete="cores", cores=2)
    assert both.value.errors == {
        "delete": "you can't use '-cores' and -delete cores' at the same time"
    }


def test_new_disks_are_allocated_on_existing_storage_only(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    vm.config.put(scsi1="local-lvm:4,discard=on")
    assert vm.config.get()["scsi1"] == "local-lvm:vm-100-disk-0,discard=on,size=4G"
    assert http_error(lambda: vm.config.post(scsi2="nope:4")) == (
        500,
        "storage 'nope' does not exist",
    )
    assert sim.tasks() == []
