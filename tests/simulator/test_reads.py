"""Reads: version, cluster resources (with RRD lag), nextid, VM lists, status and config."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ResourceException

from proxmox_vm_operator.simulator import Simulator, Timings

from .helpers import client_for, eventually, wait_for_task

NO_REFRESH = Timings(rrd_interval=1e9)  # pvestatd publishes once at start, then on demand


def vm_entry(px: Any, vmid: int) -> dict[str, Any]:
    entries = [e for e in px.cluster.resources.get(type="vm") if e["vmid"] == vmid]
    assert len(entries) == 1, entries
    entry: dict[str, Any] = entries[0]
    return entry


def test_version(px: Any) -> None:
    assert px.version.get() == {"version": "9.1.1", "release": "9.1", "repoid": "4e4f7a1c"}


def test_cluster_resources_list_qemu_and_lxc_with_config_fields(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, name="web", running=True, tags=["b", "a"], config={"cores": 2})
    sim.add_vm(101, node="pve2", lock="backup", template=True)
    sim.add_vm(102, ha_state="started", running=True)
    sim.add_container(200, node="pve2")
    entries = {e["id"]: e for e in px.cluster.resources.get(type="vm")}
    assert set(entries) == {"qemu/100", "qemu/101", "qemu/102", "lxc/200"}

    web = entries["qemu/100"]
    assert {k: web[k] for k in ("type", "vmid", "node", "name", "status", "template")} == {
        "type": "qemu",
        "vmid": 100,
        "node": "pve1",
        "name": "web",
        "status": "running",
        "template": 0,
    }
    assert (web["tags"], web["maxcpu"], web["maxmem"]) == ("a;b", 2, 2048 * 2**20)
    assert "lock" not in web and "hastate" not in web
    assert (entries["qemu/101"]["lock"], entries["qemu/101"]["template"]) == ("backup", 1)
    assert entries["qemu/102"]["hastate"] == "started"
    lxc = entries["lxc/200"]
    assert (lxc["type"], lxc["vmid"], lxc["node"]) == ("lxc", 200, "pve2")

    kinds = {e["type"] for e in px.cluster.resources.get()}
    assert kinds == {"node", "storage", "qemu", "lxc"}
    with pytest.raises(ResourceException) as bad_type:
        px.cluster.resources.get(type="qemu")
    assert bad_type.value.status_code == 400
    assert set(bad_type.value.errors) == {"type"}


def test_a_new_vm_is_unknown_until_the_next_rrd_refresh(
    make_sim: Callable[..., Simulator],
) -> None:
    sim = make_sim(timings=NO_REFRESH)
    px = client_for(sim)
    upid = px.nodes("pve1").qemu.post(vmid=100, name="fresh")
    creating = vm_entry(px, 100)
    assert (creating["status"], creating["lock"]) == ("unknown", "create")
    assert "name" not in creating
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert vm_entry(px, 100)["status"] == "unknown"  # still no RRD entry

    sim.refresh_cluster_resources()
    published = vm_entry(px, 100)
    assert (published["status"], published["name"]) == ("stopped", "fresh")

    # After a start, status/current is right at once; /cluster/resources lags.
    assert wait_for_task(px, px.nodes("pve1").qemu(100).status.start.post())["exitstatus"] == "OK"
    assert px.nodes("pve1").qemu(100).status.current.get()["status"] == "running"
    assert vm_entry(px, 100)["status"] == "stopped"
    sim.refresh_cluster_resources()
    assert vm_entry(px, 100)["status"] == "running"


def test_the_rrd_catches_up_by_itself(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)  # seeded VMs are published at once
    assert vm_entry(px, 100)["status"] == "stopped"
    upid = px.nodes("pve1").qemu.post(vmid=101)
    assert vm_entry(px, 101)["status"] == "unknown"
    wait_for_task(px, upid)
    # pvestatd's 10 simulated seconds are 0.2 real ones at scale 50.
    eventually(lambda: vm_entry(px, 101)["status"] == "stopped", 3, "the RRD refresh")


def test_vms_on_an_offline_node_are_unknown(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, node="pve2", running=True)
    sim.set_node_online("pve2", False)
    assert vm_entry(px, 100)["status"] == "unknown"
    node = next(n for n in px.nodes.get() if n["node"] == "pve2")
    assert node["status"] == "offline"


def test_nextid_is_a_string_and_skips_used_ids(sim: Simulator, px: Any) -> None:
    assert px.cluster.nextid.get() == "100"
    sim.add_vm(100)
    sim.add_container(101)
    sim.add_vm(102, node="pve2")
    assert px.cluster.nextid.get() == "103"
    assert px.cluster.nextid.get(vmid=150) == "150"
    with pytest.raises(ResourceException) as taken:
        px.cluster.nextid.get(vmid=101)
    assert taken.value.status_code == 400
    assert taken.value.errors == {"vmid": "VM 101 already exists"}
    # Nothing is reserved: asking twice gives the same id.
    assert px.cluster.nextid.get() == px.cluster.nextid.get() == "103"


def test_node_vm_list(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, name="a", running=True, config={"memory": "4096"})
    sim.add_vm(101, node="pve2")
    sim.add_vm(102, lock="backup", tags=["t"])
    listed = {vm["vmid"]: vm for vm in px.nodes("pve1").qemu.get()}
    assert set(listed) == {100, 102}
    a = listed[100]
    assert (a["name"], a["status"], a["maxmem"], a["cpus"]) == ("a", "running", 4096 * 2**20, 1)
    assert a["pid"] > 0 and a["uptime"] >= 0
    assert "pid" not in listed[102]
    assert (listed[102]["lock"], listed[102]["tags"]) == ("backup", "t")
    assert [vm["vmid"] for vm in px.nodes("pve2").qemu.get()] == [101]


def test_status_current(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, running=True, config={"agent": "enabled=1,fstrim_cloned_disks=1"})
    sim.add_vm(101)
    sim.add_vm(102, running=True, ha_state="started")
    running = px.nodes("pve1").qemu(100).status.current.get()
    assert (running["status"], running["qmpstatus"], running["ha"]) == (
        "running",
        "running",
        {"managed": 0},
    )
    assert (running["agent"], running["vmid"], running["name"]) == (1, 100, "vm100")
    assert "running-qemu" in running and "running-machine" in running

    stopped = px.nodes("pve1").qemu(101).status.current.get()
    assert (stopped["status"], stopped["qmpstatus"]) == ("stopped", "stopped")
    assert "agent" not in stopped and "pid" not in stopped

    ha = px.nodes("pve1").qemu(102).status.current.get()
    assert ha["ha"] == {"managed": 1, "state": "started"}

    sim.pause(100)
    paused = px.nodes("pve1").qemu(100).status.current.get()
    assert (paused["status"], paused["qmpstatus"]) == ("running", "paused")


def test_status_current_of_a_vm_that_is_not_on_that_node(sim: Simulator, px: Any) -> None:
    sim.add_vm(100, node="pve2")
    with pytest.raises(ResourceException) as elsewhere:
        px.nodes("pve1").qemu(100).status.current.get()
    assert elsewhere.value.status_code == 500
    assert elsewhere.value.content == (
        "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"
    )
    assert px.nodes("pve2").qemu(100).status.current.get()["status"] == "stopped"


def test_config_is_pending_merged_unless_current(sim: Simulator, px: Any) -> None:
    sim.add_vm(
        100,
        running=True,
        config={"memory": "2048", "cores": 1, "cpu": "host", "cipassword": "secret"},
    )
    vm = px.nodes("pve1").qemu(100)
    vm.config.put(memory="8192", cores=4, delete="cpu")
    merged = vm.config.get()
    current = vm.config.get(current=1)
    assert (merged["memory"], merged["cores"]) == ("8192", 4)
    assert "cpu" not in merged
    assert (current["memory"], current["cores"], current["cpu"]) == ("2048", 1, "host")
    assert merged["cipassword"] == current["cipassword"] == "**********"  # never the secret
    pending = {row["key"]: row for row in vm.pending.get()}
    assert pending["memory"] == {"key": "memory", "value": "2048", "pending": "8192"}
    assert pending["cores"] == {"key": "cores", "value": 1, "pending": 4}
    assert pending["cpu"] == {"key": "cpu", "value": "host", "delete": 1}
    assert pending["name"] == {"key": "name", "value": "vm100"}
    assert pending["cipassword"] == {"key": "cipassword", "value": "**********"}


def test_digest_is_sha1_and_changes_on_every_write(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    seen = [vm.config.get()["digest"]]
    assert re.fullmatch(r"[0-9a-f]{40}", seen[0])
    assert vm.config.get(current=1)["digest"] == seen[0]
    vm.config.put(description="one")
    seen.append(vm.config.get()["digest"])
    assert wait_for_task(px, vm.config.post(cores=2))["exitstatus"] == "OK"
    seen.append(vm.config.get()["digest"])
    sim.set_lock(100, "backup")
    seen.append(vm.config.get()["digest"])
    assert len(set(seen)) == 4
    assert vm.config.get()["digest"] == seen[-1]  # reading does not change it
