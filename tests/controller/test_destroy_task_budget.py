"""--max-tasks-per-node: the operator never has more Proxmox tasks in flight on a node."""

from __future__ import annotations

from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.domain.model import DESTROY_MODE_ANNOTATION
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .conftest import MakeDriver
from .driver import NODE, OTHER_UID, UID, calls, ownership_tag, proxmox_vm, run_until

FROZEN_GUEST = GuestBehaviour(obeys_acpi=False)


async def test_two_destroys_on_one_node_never_run_two_tasks_at_once(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(per_node=1)
    sim.add_vm(201, tags=[ownership_tag(UID)], running=True, guest=FROZEN_GUEST)
    sim.add_vm(202, tags=[ownership_tag(OTHER_UID)], running=True, guest=FROZEN_GUEST)
    first = driver.add(proxmox_vm(201, name="a", uid=UID))
    second = driver.add(proxmox_vm(202, name="b", uid=OTHER_UID))

    await driver.run(max_passes=60)

    assert first.outcome is Outcome.DELETED, first.describe()
    assert second.outcome is Outcome.DELETED, second.describe()
    assert sim.max_tasks_running()[NODE] == 1
    waited = [p for d in (first, second) for p in d.passes if "already in flight" in p.message]
    assert waited, "neither destroy ever waited for the other"
    assert all(p.action == "wait" for p in waited)
    # Each VM still got exactly one stop and one delete.
    for vmid in (201, 202):
        assert len(calls(sim.requests, "stop", vmid)) == 1
        assert len(calls(sim.requests, "delete", vmid)) == 1


async def test_with_room_for_two_both_destroys_run_side_by_side(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(per_node=2)
    sim.add_vm(201, tags=[ownership_tag(UID)], running=True, guest=FROZEN_GUEST)
    sim.add_vm(202, tags=[ownership_tag(OTHER_UID)], running=True, guest=FROZEN_GUEST)
    first = driver.add(proxmox_vm(201, name="a", uid=UID))
    second = driver.add(proxmox_vm(202, name="b", uid=OTHER_UID))

    await driver.run(max_passes=60)

    assert first.outcome is second.outcome is Outcome.DELETED
    assert sim.max_tasks_running()[NODE] == 2
    assert not any("already in flight" in p.message for p in first.passes + second.passes)


async def test_a_destroy_queued_behind_the_task_budget_records_when_it_started(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(per_node=1)
    sim.add_vm(201, tags=[ownership_tag(UID)], running=True, guest=FROZEN_GUEST)
    sim.add_vm(202, tags=[ownership_tag(OTHER_UID)], running=True, guest=FROZEN_GUEST)
    driver.add(proxmox_vm(201, name="a", uid=UID))
    second = driver.add(proxmox_vm(202, name="b", uid=OTHER_UID))

    await driver.step()  # the first destroy takes the only slot
    queued = await driver.step()

    assert "already in flight" in queued.message
    assert second.record is not None, "the queued destroy left no status.destroy"
    assert second.record["startedAt"] == "2026-03-01T12:00:00Z"


async def test_destroy_mode_annotation_cuts_a_graceful_wait_short_with_one_task_slot(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(per_node=1)
    sim.add_vm(203, tags=[ownership_tag()], running=True, guest=FROZEN_GUEST)
    destroy = driver.add(
        proxmox_vm(203, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 3600})
    )
    await run_until(driver, lambda d: bool(d.passes) and d.passes[-1].at >= 30)
    cut_at = driver.elapsed

    destroy.annotations[DESTROY_MODE_ANNOTATION] = "Stop"
    await driver.run(max_passes=40)

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert destroy.passes[-1].at - cut_at < 60, destroy.describe()


async def test_a_task_slot_is_free_again_after_a_destroy_that_overruled_its_shutdown(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    driver = make_driver(per_node=2)
    sim.add_vm(204, tags=[ownership_tag(UID)], running=True, guest=FROZEN_GUEST)
    first = driver.add(
        proxmox_vm(
            204, name="a", uid=UID, destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 3600}
        )
    )
    await run_until(driver, lambda d: bool(d.passes) and d.passes[-1].at >= 10)
    first.annotations[DESTROY_MODE_ANNOTATION] = "Stop"
    await driver.run(max_passes=40)
    assert first.outcome is Outcome.DELETED, first.describe()

    # Both slots must be free again: two new destroys start their stops at once.
    sim.add_vm(205, tags=[ownership_tag(OTHER_UID)], running=True, guest=FROZEN_GUEST)
    sim.add_vm(206, tags=[ownership_tag("0d0e0f10-1112-4314-9516-171819202122")], running=True)
    second = driver.add(proxmox_vm(205, name="b", uid=OTHER_UID))
    third = driver.add(proxmox_vm(206, name="c", uid="0d0e0f10-1112-4314-9516-171819202122"))
    await driver.step()
    await driver.step()

    assert second.passes[0].action == "stop", second.describe()
    assert third.passes[0].action == "stop", third.describe()
