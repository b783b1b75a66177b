"""A create task that ends with an error: CreateFailed with its exit status, then a retry."""

from __future__ import annotations

from collections.abc import Callable

from proxmox_vm_operator.simulator import Simulator

from .driver import Driver, vm_state

REASON = "unable to create VM 100 - lvcreate 'pve/vm-100-disk-0' error: out of space"


async def test_a_failed_create_task_is_reported_then_retried_until_it_succeeds(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.fail_task("qmcreate", message=REASON)
    driver = make_driver(disks=[{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 8}])
    failed = (await driver.run(until=lambda d: d.reason != "Provisioning"))[-1]

    ready = driver.ready
    assert (ready["status"], ready["reason"]) == ("False", "CreateFailed")
    assert REASON in ready["message"]
    assert failed.result.retry_after is not None
    assert "task" not in driver.status
    assert sim.vm(100) is None  # qmcreate removed its config
    assert [(e.type, e.reason) for e in driver.events] == [
        ("Normal", "Creating"),
        ("Warning", "CreateFailed"),
    ]

    await driver.settle()
    assert (driver.ready["status"], driver.status["phase"]) == ("True", "Running")
    assert len([r for r in driver.writes() if r.path == "/nodes/pve1/qemu"]) == 2
    assert vm_state(sim, 100)["running"] is True
    assert driver.status["vmid"] == 100  # the same VMID, kept across the retry
