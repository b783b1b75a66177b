"""Create and clone: what is checked before the task, what the task does, and its locks."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import client_for, eventually, task_log, wait_for_task

MAC = r"BC:24:11(:[0-9A-F]{2}){3}"
FROZEN = 1e-6  # the clock only moves when a test advances it


def http_error(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ResourceException) as failed:
        call()
    return failed.value.status_code, failed.value.content


def in_resources(px: Any, vmid: int) -> bool:
    return any(e["vmid"] == vmid for e in px.cluster.resources.get(type="vm"))


def test_create_allocates_disks_and_macs(sim: Simulator, px: Any) -> None:
    upid = px.nodes("pve1").qemu.post(
        vmid=100,
        name="web-1",
        memory="1024",
        cores=2,
        scsi0="local-lvm:8,discard=on",
        scsi1="local:2",
        ide2="none,media=cdrom",
        net0="virtio,bridge=vmbr0",
        net1="e1000=BC:24:11:AA:BB:CC,bridge=vmbr1",
    )
    assert re.fullmatch(
        r"UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:qmcreate:100:root@pam!ci:", upid
    )
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    config = px.nodes("pve1").qemu(100).config.get()
    assert config["scsi0"] == "local-lvm:vm-100-disk-0,discard=on,size=8G"
    assert config["scsi1"] == "local:vm-100-disk-1,size=2G"
    assert config["ide2"] == "none,media=cdrom"
    assert re.fullmatch(rf"virtio={MAC},bridge=vmbr0", config["net0"])
    assert config["net1"] == "e1000=BC:24:11:AA:BB:CC,bridge=vmbr1"  # a given MAC is kept
    assert (config["name"], config["memory"], config["cores"]) == ("web-1", "1024", 2)
    assert config["smbios1"].startswith("uuid=")
    assert "vmgenid" in config and config["meta"].startswith("creation-qemu=")
    assert "lock" not in config
    assert px.nodes("pve1").qemu(100).status.current.get()["status"] == "stopped"


def test_create_shows_lock_create_while_its_task_runs(
    make_sim: Callable[..., Simulator],
) -> None:
    sim = make_sim(time_scale=FROZEN)
    px = client_for(sim)
    upid = px.nodes("pve1").qemu.post(vmid=100, name="slow")
    vm = px.nodes("pve1").qemu(100)
    config = vm.config.get()
    assert config == {"lock": "create", "digest": config["digest"]}
    assert vm.status.current.get()["lock"] == "create"
    with pytest.raises(ResourceException) as locked:
        vm.config.put(description="x")
    assert locked.value.content == "VM is locked (create)"
    sim.advance(2)  # the create's work
    assert wait_for_task(px, upid, timeout=5)["exitstatus"] == "OK"
    assert "lock" not in vm.config.get()


def test_create_of_a_taken_vmid_is_refused_synchronously(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    sim.add_container(200, node="pve2")
    assert http_error(lambda: px.nodes("pve2").qemu.post(vmid=100)) == (
        500,
        "unable to create VM 100 - VM 100 already exists on node 'pve1'",
    )
    assert http_error(lambda: px.nodes("pve1").qemu.post(vmid=200)) == (
        500,
        "unable to create VM 200 - CT 200 already exists on node 'pve2'",
    )
    assert sim.tasks() == []


def test_create_on_an_unknown_storage_is_refused_before_the_task(sim: Simulator, px: Any) -> None:
    assert http_error(lambda: px.nodes("pve1").qemu.post(vmid=100, scsi0="nope:8")) == (
        500,
        "storage 'nope' does not exist",
    )
    assert not sim.vm_exists(100)
    assert sim.tasks() == []


def test_a_create_failing_inside_its_task_removes_the_config(sim: Simulator, px: Any) -> None:
    message = (
        "unable to create VM 100 - lvcreate 'pve/vm-100-disk-0' error: "
        'Volume group "pve" has insufficient free space'
    )
    sim.fail_task("qmcreate", vmid=100, message=message)
    upid = px.nodes("pve1").qemu.post(vmid=100, scsi0="local-lvm:4000")
    status = wait_for_task(px, upid)
    assert status["exitstatus"] == message
    assert task_log(px, upid)[-1] == f"TASK ERROR: {message}"
    assert not sim.vm_exists(100)
    assert not in_resources(px, 100)
    assert http_error(lambda: px.nodes("pve1").qemu(100).status.current.get()) == (
        500,
        "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist",
    )
    # The vmid is free again.
    assert wait_for_task(px, px.nodes("pve1").qemu.post(vmid=100))["exitstatus"] == "OK"


def test_a_killed_create_removes_the_config(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(time_scale=FROZEN)
    px = client_for(sim)
    upid = px.nodes("pve1").qemu.post(vmid=100)
    px.nodes("pve1").tasks(upid).delete()
    assert wait_for_task(px, upid, timeout=5)["exitstatus"] == "received interrupt"
    assert not sim.vm_exists(100)


def test_flock_waits_of_create_and_clone(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(time_scale=10)
    px = client_for(sim)
    sim.hold_flock(100, 600)  # a vmid's lock file exists with or without a config
    before = sim.clock.now()
    with pytest.raises(ResourceException) as refused:
        px.nodes("pve1").qemu.post(vmid=100)
    waited = sim.clock.now() - before
    assert (refused.value.status_code, refused.value.content) == (
        500,
        "unable to create VM 100 - can't lock file '/var/lock/qemu-server/lock-100.conf' - "
        "got timeout",
    )
    assert 5 <= waited < 8  # create_and_lock_config waits 5 s, before the fork
    assert not sim.vm_exists(100)

    sim.add_vm(101)
    sim.hold_flock(101, 600)
    upid = px.nodes("pve1").qemu(101).clone.post(newid=102)
    assert wait_for_task(px, upid)["exitstatus"] == (
        "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"
    )
    (listed,) = px.nodes("pve1").tasks.get(typefilter="qmclone")
    assert listed["endtime"] - listed["starttime"] in (1, 2)  # clone waits 1 s
    assert not sim.vm_exists(102)


def test_create_with_start_and_ha_managed(sim: Simulator, px: Any) -> None:
    upid = px.nodes("pve1").qemu.post(vmid=100, start=1)
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert "Execute autostart" in task_log(px, upid)
    assert px.nodes("pve1").qemu(100).status.current.get()["status"] == "running"

    upid = px.nodes("pve1").qemu.post(vmid=101, **{"ha-managed": 1})
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert "Add as HA resource" in task_log(px, upid)
    assert px.cluster.ha.resources("vm:101").get()["state"] == "stopped"
    assert px.nodes("pve1").qemu(101).status.current.get()["ha"]["managed"] == 1


@pytest.fixture
def template(sim: Simulator) -> int:
    sim.add_vm(
        9000,
        name="tmpl",
        template=True,
        tags=["base", "k8s"],
        config={
            "scsi0": "local-lvm:base-9000-disk-0,size=8G",
            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
            "unused0": "local-lvm:vm-9000-disk-9",
            "vmgenid": "00000000-0000-0000-0000-000000000001",
        },
    )
    return 9000


def test_a_template_clones_linked_by_default(sim: Simulator, px: Any, template: int) -> None:
    upid = px.nodes("pve1").qemu(template).clone.post(newid=101)
    status = wait_for_task(px, upid)
    assert (status["type"], status["id"], status["exitstatus"]) == ("qmclone", "9000", "OK")
    config = px.nodes("pve1").qemu(101).config.get()
    assert config["name"] == "Copy-of-VM-tmpl"
    assert config["tags"] == "base;k8s"
    assert "template" not in config and "unused0" not in config and "lock" not in config
    assert re.fullmatch(rf"virtio={MAC},bridge=vmbr0", config["net0"])
    assert config["net0"] != "virtio=BC:24:11:00:00:01,bridge=vmbr0"
    assert config["vmgenid"] != "00000000-0000-0000-0000-000000000001"
    assert config["scsi0"].startswith("local-lvm:")
    assert px.nodes("pve1").qemu(template).config.get()["template"] == 1


def test_storage_is_refused_for_linked_clones(sim: Simulator, px: Any, template: int) -> None:
    clone = px.nodes("pve1").qemu(template).clone
    assert http_error(lambda: clone.post(newid=101, storage="local")) == (
        500,
        "parameter 'storage' not allowed for linked clones",
    )
    upid = clone.post(newid=101, full=1, storage="local", name="full-copy")
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    config = px.nodes("pve1").qemu(101).config.get()
    assert config["scsi0"] == "local:vm-101-disk-0,size=8G"
    assert config["name"] == "full-copy"


def test_a_normal_vm_clones_full_and_cannot_clone_linked(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, name="src", config={"scsi0": "local-lvm:vm-100-disk-0,size=8G"})
    clone = px.nodes("pve1").qemu(100).clone
    assert http_error(lambda: clone.post(newid=101, full=0)) == (
        500,
        "Linked clone feature is not supported for drive 'scsi0'",
    )
    assert wait_for_task(px, clone.post(newid=101))["exitstatus"] == "OK"
    assert px.nodes("pve1").qemu(101).config.get()["name"] == "Copy-of-VM-src"


def test_the_new_vm_shows_lock_clone_during_the_task(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(time_scale=FROZEN)
    px = client_for(sim)
    sim.add_vm(100, config={"scsi0": "local-lvm:vm-100-disk-0,size=8G"})
    upid = px.nodes("pve1").qemu(100).clone.post(newid=101, description="copy")
    new_vm = px.nodes("pve1").qemu(101)
    locked = eventually(lambda: sim.vm_exists(101) and new_vm.config.get(), 5, "the clone")
    assert locked["lock"] == "clone"
    assert new_vm.status.current.get()["lock"] == "clone"
    with pytest.raises(ResourceException) as refused:
        new_vm.config.put(name="early")
    assert (refused.value.status_code, refused.value.content) == (500, "VM is locked (clone)")
    sim.advance(6)  # a full clone's copy
    assert wait_for_task(px, upid, timeout=5)["exitstatus"] == "OK"
    done = new_vm.config.get()
    assert "lock" not in done and done["description"] == "copy"


def test_clone_refusals(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, config={"scsi0": "local-lvm:vm-100-disk-0,size=8G"})
    sim.add_vm(102, node="pve2")
    clone = px.nodes("pve1").qemu(100).clone
    assert http_error(lambda: clone.post(newid=102)) == (
        500,
        "unable to create VM 102: config file already exists",
    )
    assert http_error(lambda: clone.post(newid=101, target="pve2")) == (
        500,
        "can't clone VM to node 'pve2' (VM uses local storage)",
    )
    assert http_error(lambda: clone.post(newid=101, target="pve9")) == (
        500,
        "no such cluster node 'pve9'",
    )
    assert http_error(lambda: clone.post(newid=101, storage="nope")) == (
        500,
        "storage 'nope' does not exist",
    )
    sim.set_lock(100, "backup")
    assert http_error(lambda: clone.post(newid=101)) == (500, "VM is locked (backup)")
    assert sim.tasks() == []
    assert not sim.vm_exists(101)


def test_clone_to_another_node_needs_shared_storage(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, name="shared", config={"scsi0": "ceph-rbd:vm-100-disk-0,size=8G"})
    upid = px.nodes("pve1").qemu(100).clone.post(newid=101, target="pve2")
    status = wait_for_task(px, upid)
    assert (status["node"], status["exitstatus"]) == ("pve1", "OK")
    assert px.nodes("pve2").qemu(101).status.current.get()["name"] == "Copy-of-VM-shared"
    assert http_error(lambda: px.nodes("pve1").qemu(101).status.current.get()) == (
        500,
        "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist",
    )
    assert http_error(
        lambda: px.nodes("pve1").qemu(100).clone.post(newid=102, target="pve2", storage="local")
    ) == (500, "can't clone to non-shared storage 'local'")


def test_clone_of_a_vm_with_pending_changes_warns(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True)
    px.nodes("pve1").qemu(100).config.put(cores=8)
    upid = px.nodes("pve1").qemu(100).clone.post(newid=101)
    assert wait_for_task(px, upid)["exitstatus"] == "WARNINGS: 1"
    assert px.nodes("pve1").qemu(101).config.get()["cores"] == 1


def test_clones_of_a_stopped_vm_run_side_by_side(sim: Simulator, px: Any, template: int) -> None:
    # A stopped source is locked shared: full clones (6 s each) overlap without waiting.
    clone = px.nodes("pve1").qemu(template).clone
    upids = [clone.post(newid=newid, full=1) for newid in (101, 102, 103)]
    assert [wait_for_task(px, upid)["exitstatus"] for upid in upids] == ["OK", "OK", "OK"]
    assert sim.max_tasks_running()["pve1"] == 3


def test_clones_of_a_running_vm_lock_it_exclusively(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, config={"scsi0": "local-lvm:vm-100-disk-0,size=8G"})
    clone = px.nodes("pve1").qemu(100).clone
    first, second = clone.post(newid=101), clone.post(newid=102)
    assert wait_for_task(px, first)["exitstatus"] == "OK"
    assert wait_for_task(px, second)["exitstatus"] == (
        "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"
    )
    assert sim.vm_exists(101) and not sim.vm_exists(102)
