"""A destroy pass follows the tasks it started and goes on at once when they end.

With the operator's pace, a Stop destroy is one pass: stop, delete, proof of absence, release,
each step as soon as the last one's task ended; the time between is the simulator's task
time, not a retry schedule. What a restart must not lose is persisted before the first wait.
"""

from __future__ import annotations

from proxmox_vm_operator.controller.pace import Pace
from proxmox_vm_operator.domain.destroy import Outcome
from proxmox_vm_operator.simulator.server import Simulator
from proxmox_vm_operator.simulator.state import GuestBehaviour

from .conftest import MakeDriver
from .driver import OTHER_UID, ownership_tag, proxmox_vm

VMID = 101
FOLLOWING = Pace(follow_within=10.0, listing_max_age=5.0)
HUNG_GUEST = GuestBehaviour(obeys_acpi=False)


def task_looks(sim: Simulator, first: int = 0) -> int:
    return sum(
        1 for r in sim.requests[first:] if r.path.endswith("/status") and "/tasks/" in r.path
    )


async def test_a_stop_destroy_is_one_pass_that_ends_when_its_tasks_end(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    sim.add_vm(VMID + 1, tags=[ownership_tag(OTHER_UID)], running=True)
    driver = make_driver(pace=FOLLOWING)

    first = await driver.destroy(proxmox_vm(VMID))
    second = await driver.destroy(proxmox_vm(VMID + 1, name="web-2", uid=OTHER_UID))

    for destroy in (first, second):
        assert destroy.outcome is Outcome.DELETED, destroy.describe()
        assert destroy.actions() == ["stop+delete+release:deleted"], destroy.describe()
    assert not sim.vm_exists(VMID) and not sim.vm_exists(VMID + 1)
    # How soon each end is noticed is the benchmark's to measure, in real time: this
    # simulator's clock moves in the jumps the looks make, so its tasks' lengths do too.


async def test_the_start_of_the_destroy_is_persisted_before_the_first_wait(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    """A restart while the stop runs finds the destroy's record (its stall clock, its task)."""
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    driver = make_driver(pace=FOLLOWING)

    await driver.destroy(proxmox_vm(VMID, name="web-1"))

    persisted = driver.persisted["web-1"]
    assert len(persisted) == 1, persisted  # once: the delete's record is not worth a write
    record = persisted[0]["destroy"]
    assert isinstance(record, dict)
    assert record["step"] == "Stopping"
    assert str(record["taskUpid"]).startswith("UPID:pve1:")
    assert persisted[0]["phase"] == "Deleting"


async def test_a_task_that_outlasts_the_pass_is_left_to_the_next_pass(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    driver = make_driver(pace=Pace(follow_within=0.5, listing_max_age=5.0))

    destroy = await driver.destroy(proxmox_vm(VMID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    first = destroy.passes[0]
    assert first.action == "stop" and first.step == "Stopping" and first.task_upid
    assert first.retry_after > 0
    assert len(destroy.passes) > 1


async def test_a_graceful_shutdown_deadline_is_persisted_before_the_guest_is_waited_for(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True, guest=HUNG_GUEST)
    driver = make_driver(pace=FOLLOWING)

    destroy = await driver.destroy(
        proxmox_vm(VMID, name="db-1", destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 30})
    )

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    first = driver.persisted["db-1"][0]["destroy"]
    assert isinstance(first, dict) and first["shutdownDeadline"], first
    # The guest got its 30 s, which no single pass spans: the forced stop came in a later one.
    assert driver.elapsed >= 30
    assert destroy.passes[0].action == "shutdown"


async def test_task_ends_are_noticed_with_few_looks_once_their_length_is_known(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    """The first destroy learns how long a stop and a delete take; later ones look once or
    twice per task instead of on a schedule."""
    driver = make_driver(pace=FOLLOWING)
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    await driver.destroy(proxmox_vm(VMID))
    learning = task_looks(sim)

    later = len(sim.requests)
    sim.add_vm(VMID + 1, tags=[ownership_tag(OTHER_UID)], running=True)
    destroy = await driver.destroy(proxmox_vm(VMID + 1, name="web-2", uid=OTHER_UID))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert task_looks(sim, later) <= learning / 2, (learning, sim.requests[later:])


async def test_a_destroy_over_before_checkpoint_after_writes_nothing_until_its_release(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    driver = make_driver(pace=Pace(follow_within=10.0, listing_max_age=5.0, checkpoint_after=5.0))

    destroy = await driver.destroy(proxmox_vm(VMID, name="quick"))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    assert driver.persisted.get("quick") is None
    assert [e.reason for e in destroy.events] == ["Stopping", "DeletingVM"]


async def test_a_destroy_that_outlasts_checkpoint_after_writes_its_start_while_it_waits(
    sim: Simulator, make_driver: MakeDriver
) -> None:
    sim.add_vm(VMID, tags=[ownership_tag()], running=True)
    # The simulator's stop takes 1 s: longer than the 0.5 s the pace waits before writing.
    driver = make_driver(pace=Pace(follow_within=10.0, listing_max_age=5.0, checkpoint_after=0.5))

    destroy = await driver.destroy(proxmox_vm(VMID, name="slow"))

    assert destroy.outcome is Outcome.DELETED, destroy.describe()
    (written,) = driver.persisted["slow"]
    assert written["destroy"]["step"] == "Stopping"  # type: ignore[index]
