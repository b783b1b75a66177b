"""source.cloneFrom: the template is cloned, the clone is made ours first, then reconciled."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxmox_vm_operator.simulator import Simulator

from .driver import OWNER_TAG, Driver, is_write, tag_set, vm_state, writes_to

TEMPLATE = 9000
CLONE_FROM = {"vmid": TEMPLATE, "node": "pve1", "full": True, "storage": "local-lvm"}


@pytest.fixture(autouse=True)
def template(sim: Simulator) -> None:
    sim.add_vm(
        TEMPLATE,
        template=True,
        name="ubuntu-tpl",
        tags=["template", "golden"],
        config={
            "scsi0": "local-lvm:base-9000-disk-0,size=10G",
            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
            "cores": 2,
        },
    )


async def test_the_clone_call_carries_newid_full_and_storage(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(source={"cloneFrom": CLONE_FROM}, cores=4, tags=["web"])
    await driver.settle()

    [clone] = [r for r in driver.writes() if r.path.endswith("/clone")]
    assert clone.path == f"/nodes/pve1/qemu/{TEMPLATE}/clone"
    assert clone.params["newid"] == str(driver.vmid)
    assert clone.params["full"] == "1"
    assert clone.params["storage"] == "local-lvm"
    assert clone.params["name"] == "web-1"
    assert not [r for r in driver.writes() if r.path == "/nodes/pve1/qemu"]  # no blank create


async def test_the_clone_gets_our_name_and_tags_before_anything_else(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(source={"cloneFrom": CLONE_FROM}, cores=4, tags=["web"])
    await driver.settle()
    vmid = driver.vmid

    writes = driver.writes()
    position = next(i for i, r in enumerate(writes) if r.path.endswith("/clone"))
    following = writes[position + 1]
    assert following.path == f"/nodes/pve1/qemu/{vmid}/config"
    assert following.params["name"] == "web-1"
    assert tag_set(following.params["tags"]) == {"web", OWNER_TAG}
    assert "scsi0" not in following.params  # the clone's disks are left as cloned

    config = vm_state(driver.sim, vmid)["config"]
    assert config["name"] == "web-1"
    assert tag_set(config["tags"]) == {"web", OWNER_TAG}  # the template's tags are gone
    assert config["cores"] == 4


async def test_a_clone_ends_running_and_leaves_the_template_alone(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(source={"cloneFrom": CLONE_FROM}, tags=["web"])
    await driver.settle()

    assert driver.status["phase"] == "Running"
    assert (driver.ready["status"], driver.ready["reason"]) == ("True", "Reconciled")
    assert vm_state(driver.sim, driver.vmid)["running"] is True
    template = vm_state(driver.sim, TEMPLATE)
    assert template["running"] is False
    assert tag_set(template["config"]["tags"]) == {"template", "golden"}
    assert [r.path for r in writes_to(driver.requests(), TEMPLATE) if is_write(r)] == [
        f"/nodes/pve1/qemu/{TEMPLATE}/clone"
    ]
    assert [e.reason for e in driver.events] == ["Creating", "Starting"]


async def test_the_source_node_is_looked_up_when_not_given(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver(source={"cloneFrom": {"vmid": TEMPLATE}})
    await driver.settle()

    [clone] = [r for r in driver.writes() if r.path.endswith("/clone")]
    assert clone.path == f"/nodes/pve1/qemu/{TEMPLATE}/clone"
    assert driver.ready["status"] == "True"


async def test_a_failed_ownership_write_after_the_clone_is_retried(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.fail_next(r"/qemu/\d+/config$", method="PUT", status=500, message="got timeout")
    driver = make_driver(source={"cloneFrom": CLONE_FROM}, tags=["web"])
    await driver.settle(max_passes=25)

    assert tag_set(vm_state(sim, driver.vmid)["config"]["tags"]) == {"web", OWNER_TAG}
    assert driver.ready["status"] == "True"
