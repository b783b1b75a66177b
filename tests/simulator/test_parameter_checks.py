"""Parameter checks with PVE's JSON-schema strictness and wording (all 400 before any work)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI, ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import raw, vm_state, wait_for_task

NOT_IN_SCHEMA = (
    "property is not defined in schema and the schema does not allow additional properties"
)
MISSING = "property is missing and it is not optional"
BAD_VMID = "invalid format - value does not look like a valid VM ID\n"
ROOT_ONLY = "Only root may use this option."


def param_errors(call: Callable[[], Any]) -> dict[str, str]:
    """Run ``call``, expect PVE's 400, and return its per-parameter errors."""
    with pytest.raises(ResourceException) as failed:
        call()
    assert failed.value.status_code == 400
    assert failed.value.content == "Parameter verification failed."
    errors: dict[str, str] = failed.value.errors
    return errors


@pytest.mark.parametrize("value", [True, False, "true", "yes", "on", "2"])
def test_booleans_accept_only_0_and_1(sim: Simulator, px: Any, value: object) -> None:
    sim.add_vm(100)
    errors = param_errors(lambda: px.nodes("pve1").qemu(100).config.put(onboot=value))
    assert errors == {"onboot": f"type check ('boolean') failed - got '{value}'"}
    assert "onboot" not in vm_state(sim, 100)["config"]


def test_proxmoxers_true_is_refused_on_clone(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    errors = param_errors(lambda: px.nodes("pve1").qemu(100).clone.post(newid=101, full=True))
    assert errors == {"full": "type check ('boolean') failed - got 'True'"}
    assert not sim.vm_exists(101)


def test_booleans_as_1_0_or_json_true_false_are_accepted(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    assert px.nodes("pve1").qemu(100).config.put(onboot=1, protection=0) is None
    assert vm_state(sim, 100)["config"]["onboot"] == 1
    reply = raw(sim, "PUT", "/nodes/pve1/qemu/100/config", json={"onboot": False, "numa": True})
    assert reply.status_code == 200
    config = px.nodes("pve1").qemu(100).config.get()
    assert (config["onboot"], config["numa"], config["protection"]) == (0, 1, 0)
    # Inside property strings PVE parses true/on/yes itself: agent=enabled=true is fine.
    px.nodes("pve1").qemu(100).config.put(agent="enabled=true")


def test_unknown_parameters_are_refused_all_at_once(sim: Simulator, px: Any) -> None:
    errors = param_errors(
        lambda: px.nodes("pve1").qemu.post(vmid=100, bogus=1, other="x", onboot="True")
    )
    assert errors == {
        "bogus": NOT_IN_SCHEMA,
        "other": NOT_IN_SCHEMA,
        "onboot": "type check ('boolean') failed - got 'True'",
    }
    assert not sim.vm_exists(100)


def test_required_vmid_and_newid(sim: Simulator, px: Any) -> None:
    assert param_errors(lambda: px.nodes("pve1").qemu.post(name="x")) == {"vmid": MISSING}
    sim.add_vm(100)
    assert param_errors(lambda: px.nodes("pve1").qemu(100).clone.post()) == {"newid": MISSING}


@pytest.mark.parametrize("vmid", ["99", "0100", "1000000000", "-100"])
def test_vmids_outside_the_pve_vmid_format(sim: Simulator, px: Any, vmid: str) -> None:
    assert param_errors(lambda: px.nodes("pve1").qemu.post(vmid=vmid)) == {"vmid": BAD_VMID}
    assert param_errors(lambda: px.cluster.nextid.get(vmid=vmid)) == {"vmid": BAD_VMID}


def test_vmid_bounds_and_type(sim: Simulator, px: Any) -> None:
    assert param_errors(lambda: px.nodes("pve1").qemu.post(vmid="abc")) == {
        "vmid": "type check ('integer') failed - got 'abc'"
    }
    # The path's vmid is a parameter like any other.
    assert param_errors(lambda: px.nodes("pve1").qemu(99).status.current.get()) == {
        "vmid": BAD_VMID
    }
    for vmid in (100, 999_999_999):
        assert px.cluster.nextid.get(vmid=vmid) == str(vmid)


def test_names_must_be_dns_names(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    for bad in ("web_1", "-web", "web-", "a..b", "web 1"):
        assert param_errors(partial(vm.config.put, name=bad)) == {
            "name": "invalid format - value does not look like a valid DNS name\n"
        }
    for good in ("web-1", "web-1.example.org", "1a"):
        assert vm.config.put(name=good) is None
    assert param_errors(lambda: vm.clone.post(newid=101, name="copy_of")) == {
        "name": "invalid format - value does not look like a valid DNS name\n"
    }


def test_the_node_is_resolved_before_parameters_are_checked(sim: Simulator, px: Any) -> None:
    # pveproxy forwards /nodes/{node}/... first; the node checks the parameters.
    with pytest.raises(ResourceException) as unknown:
        px.nodes("pve_1").qemu.post(vmid=1, bogus=1)
    assert (unknown.value.status_code, unknown.value.content) == (
        500,
        "hostname lookup 'pve_1' failed - failed to get address info for: pve_1: "
        "Name or service not known",
    )
    sim.set_node_online("pve2", False)
    with pytest.raises(ResourceException) as offline:
        px.nodes("pve2").qemu.post(vmid=1, bogus=1)
    assert offline.value.status_code == 595


def test_a_parameter_may_repeat_the_path_only_with_the_same_value(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    errors = param_errors(lambda: px.nodes("pve1").qemu(100).config.put(vmid=101, cores=2))
    assert errors == {
        "vmid": "duplicate parameter (already defined in URI) with conflicting values!"
    }
    px.nodes("pve1").qemu(100).config.put(vmid=100, cores=2)
    assert px.nodes("pve1").qemu(100).config.get()["cores"] == 2


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("status/stop", {"skiplock": 1}),
        ("status/stop", {"keepActive": 1}),
        ("status/stop", {"migratedfrom": "pve2"}),
        ("status/shutdown", {"skiplock": 1}),
        ("status/shutdown", {"keepActive": 1}),
        ("status/start", {"skiplock": 1}),
        ("config", {"skiplock": 1, "name": "x"}),
    ],
)
def test_root_only_options_are_refused_for_tokens(
    sim: Simulator, px: Any, path: str, params: dict[str, Any]
) -> None:
    sim.add_vm(100, running=True)
    option = next(iter(params))
    endpoint = px.nodes("pve1").qemu(100)(path)
    call = endpoint.put if path == "config" else endpoint.post
    assert param_errors(lambda: call(**params)) == {option: ROOT_ONLY}
    assert vm_state(sim, 100)["running"]


def test_root_only_options_set_to_0_pass_and_schema_errors_come_first(
    sim: Simulator, px: Any
) -> None:
    sim.add_vm(100, running=True)
    vm = px.nodes("pve1").qemu(100)
    assert wait_for_task(px, vm.status.stop.post(skiplock=0))["exitstatus"] == "OK"
    assert param_errors(lambda: vm.delete(skiplock=1, bogus=1)) == {"bogus": NOT_IN_SCHEMA}


def test_root_at_pam_with_a_ticket_may_use_skiplock(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(users={"root@pam": "pw"})
    sim.add_vm(100, running=True, lock="backup")
    px = ProxmoxAPI(
        sim.host, port=sim.port, user="root@pam", password="pw", verify_ssl=str(sim.ca_file)
    )
    vm = px.nodes("pve1").qemu(100)
    assert wait_for_task(px, vm.status.stop.post())["exitstatus"] == "VM is locked (backup)"
    assert wait_for_task(px, vm.status.stop.post(skiplock=1, keepActive=1))["exitstatus"] == "OK"
    assert not vm_state(sim, 100)["running"]
    assert vm.config.put(skiplock=1, description="during backup") is None


@pytest.mark.parametrize("tags", ["a=b", "k8s:managed", "path/x", "-lead", "ü"])
def test_tag_syntax_errors(sim: Simulator, px: Any, tags: str) -> None:
    sim.add_vm(100)
    errors = param_errors(lambda: px.nodes("pve1").qemu(100).config.put(tags=tags))
    assert errors == {"tags": "invalid format - invalid characters in tag\n"}


def test_tags_are_lower_cased_deduplicated_sorted_and_joined(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    vm = px.nodes("pve1").qemu(100)
    vm.config.put(tags="Zeta,alpha alpha;K8S-Managed  beta.1 _x+y")
    assert vm.config.get()["tags"] == "_x+y;alpha;beta.1;k8s-managed;zeta"
    upid = px.nodes("pve1").qemu.post(vmid=101, tags="b;A;a")
    assert wait_for_task(px, upid)["exitstatus"] == "OK"
    assert px.nodes("pve1").qemu(101).config.get()["tags"] == "a;b"
    entry = next(e for e in px.cluster.resources.get(type="vm") if e["vmid"] == 101)
    assert entry["tags"] == "a;b"
