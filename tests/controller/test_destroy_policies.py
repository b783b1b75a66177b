"""Steps 1-3: force-release, deletionPolicy Orphan, and an object that never had a VM."""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.domain.model import FORCE_RELEASE_ANNOTATION
from proxmox_vm_operator.simulator.server import Simulator

from .driver import Driver, FakeSecrets, calls, ownership_tag, proxmox_vm, writes

VMID = 104


async def test_force_release_releases_without_any_proxmox_call_and_warns(
    sim: Simulator, secrets: FakeSecrets, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)

    destroy = await driver.destroy(proxmox_vm(VMID, annotations={FORCE_RELEASE_ANNOTATION: "true"}))

    assert destroy.outcome is Outcome.FORCE_RELEASED
    assert len(destroy.passes) == 1
    assert sim.requests == []
    assert secrets.reads == 0  # not even the credentials were read
    assert destroy.warnings() == ["ForceReleased"]
    assert str(VMID) in destroy.events[0].message
    assert sim.vm(VMID)["running"] is True  # type: ignore[index]


async def test_force_release_cuts_a_destroy_in_flight_short_without_another_call(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.set_lock(VMID, "backup")  # the destroy waits for the lock
    destroy = driver.add(proxmox_vm(VMID))
    await driver.run(max_passes=3)
    assert destroy.outcome is None
    before = len(sim.requests)

    destroy.annotations[FORCE_RELEASE_ANNOTATION] = "True"
    await driver.run(max_passes=1)

    assert destroy.outcome is Outcome.FORCE_RELEASED
    assert len(sim.requests) == before
    # The lock's stall was posted once, over three passes; then the release.
    assert destroy.warnings() == ["VMLocked", "ForceReleased"]
    assert sim.vm_exists(VMID)


async def test_orphan_removes_only_our_tag_and_leaves_the_vm_running(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag(), "web", "prod"], running=True)

    destroy = await driver.destroy(proxmox_vm(VMID, deletionPolicy="Orphan"))

    assert destroy.outcome is Outcome.ORPHANED
    vm = sim.vm(VMID)
    assert vm is not None
    assert vm["running"] is True
    assert vm["config"]["tags"] == "prod;web"
    assert vm["pending"] == {}
    changes = writes(sim.requests, VMID)
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in changes] == [("PUT", "config")]
    assert "digest" in changes[0].params
    assert calls(sim.requests, "stop") == calls(sim.requests, "delete") == []


async def test_orphan_of_a_vm_with_only_our_tag_deletes_the_tags_key(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)

    destroy = await driver.destroy(proxmox_vm(VMID, deletionPolicy="Orphan"))

    assert destroy.outcome is Outcome.ORPHANED
    vm = sim.vm(VMID)
    assert vm is not None
    assert vm["running"] is True
    assert "tags" not in vm["config"]
    (change,) = writes(sim.requests, VMID)
    assert change.params.get("delete") == "tags"


async def test_orphan_while_proxmox_is_unreachable_releases_with_a_warning(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.make_unreachable("refuse")

    destroy = await driver.destroy(proxmox_vm(VMID, deletionPolicy="Orphan"))
    sim.restore()

    assert destroy.outcome is Outcome.ORPHANED
    assert destroy.warnings() == ["OrphanedWithTag"]
    vm = sim.vm(VMID)
    assert vm is not None
    assert ownership_tag() in vm["config"]["tags"]


async def test_orphan_retries_when_the_tag_cannot_be_removed(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag(), "web"], running=True)
    sim.fail_next(r"/config$", method="PUT", times=2, status=500)
    destroy = driver.add(proxmox_vm(VMID, deletionPolicy="Orphan"))

    await driver.run(max_passes=2)
    assert destroy.outcome is None, destroy.describe()

    await driver.run(max_passes=5)
    assert destroy.outcome is Outcome.ORPHANED, destroy.describe()
    assert sim.vm(VMID)["config"]["tags"] == "web"  # type: ignore[index]


async def test_an_object_that_never_had_a_vm_is_released_without_any_call(
    sim: Simulator, secrets: FakeSecrets, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)  # must not be looked at

    destroy = await driver.destroy(proxmox_vm(None))

    assert destroy.outcome is Outcome.ALREADY_ABSENT
    assert len(destroy.passes) == 1
    assert sim.requests == []
    assert secrets.reads == 0
    assert sim.vm_exists(VMID)


async def test_a_spec_that_no_longer_validates_still_destroys_with_its_destroy_policy(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    obj = proxmox_vm(VMID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 5})
    obj["spec"]["memoryMiB"] = 1  # below the schema's minimum
    obj["spec"]["unknownField"] = True

    destroy = await driver.destroy(obj)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert len(calls(sim.requests, "shutdown", VMID)) == 1


async def test_a_broken_destroy_policy_falls_back_to_the_safe_hard_stop(
    sim: Simulator, driver: Driver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)

    destroy = await driver.destroy(proxmox_vm(VMID, destroy={"mode": "Halt"}))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert calls(sim.requests, "shutdown") == []
    (stop,) = calls(sim.requests, "stop", VMID)
    assert stop.params.get("overrule-shutdown") == "1"
