"""Without a source, an empty VM is created from the spec: VMID first, then create, then start."""

from __future__ import annotations

from collections.abc import Callable

from .driver import OWNER_TAG, Driver, tag_set, vm_state

SPEC = {
    "cores": 2,
    "memoryMiB": 1024,
    "disks": [{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 20}],
    "networks": [{"slot": "net0", "model": "virtio", "bridge": "vmbr0", "vlan": 10}],
    "tags": ["web"],
    "onBoot": True,
    "agent": False,
}


async def test_the_vmid_comes_from_nextid_and_is_persisted_before_any_create_call(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(**SPEC)
    first = await driver.step()

    assert [(r.method, r.path) for r in first.requests] == [("GET", "/cluster/nextid")]
    assert first.status["vmid"] == 100  # the simulator's first free id
    assert first.status["phase"] == "Provisioning"
    assert first.result.retry_after is not None
    assert driver.sim.vm(100) is None

    await driver.settle()
    creates = [
        (p.number, r)
        for p in driver.passes
        for r in p.requests
        if (r.method, r.path) == ("POST", "/nodes/pve1/qemu")
    ]
    assert len(creates) == 1
    number, create = creates[0]
    assert number > first.number
    assert create.params["vmid"] == "100"
    assert driver.vmid == 100


async def test_the_create_call_carries_the_desired_config_in_pve_types(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(**SPEC)
    await driver.settle()

    [create] = [r for r in driver.writes() if r.path == "/nodes/pve1/qemu"]
    params = create.params
    assert params["name"] == "web-1"  # metadata.name
    assert params["cores"] == "2"
    assert params["memory"] == "1024"
    assert params["scsi0"] == "local-lvm:20"
    assert params["net0"] == "virtio,bridge=vmbr0,tag=10"
    assert tag_set(params["tags"]) == {"web", OWNER_TAG}
    assert params["onboot"] == "1"
    assert params["agent"] == "0"
    assert not [k for k, v in params.items() if v in ("True", "False")], params

    config = vm_state(driver.sim, 100)["config"]
    assert config["scsi0"].startswith("local-lvm:vm-100-disk-") and "size=20G" in config["scsi0"]
    assert tag_set(config["tags"]) == {"web", OWNER_TAG}


async def test_the_vm_is_started_because_power_state_defaults_to_running(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(**SPEC)
    await driver.settle()

    calls = [(r.method, r.path) for r in driver.writes()]
    assert calls == [("POST", "/nodes/pve1/qemu"), ("POST", "/nodes/pve1/qemu/100/status/start")]
    assert vm_state(driver.sim, 100)["running"] is True


async def test_the_final_status_reports_a_running_reconciled_vm(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(**SPEC)
    last = await driver.settle()

    assert last.result.retry_after is None
    status = driver.status
    assert status["phase"] == "Running"
    assert status["powerState"] == "Running"
    assert status["node"] == "pve1"
    assert status["vmid"] == 100
    assert status["observedGeneration"] == 1
    assert "task" not in status
    ready = driver.ready
    assert (ready["status"], ready["reason"]) == ("True", "Reconciled")
    assert ready["observedGeneration"] == 1
    assert [(e.type, e.reason) for e in driver.events] == [
        ("Normal", "Creating"),
        ("Normal", "Starting"),
    ]
