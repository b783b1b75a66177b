"""A reconcile pass goes on while the next step is due at once: a create is one pass.

It persists the VMID before it creates anything under it and the task before it waits on it
(a restart loses neither), follows the create and the start as they end, and stops going on
once the object is being deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from proxmox_vm_operator.controller.connections import ClientPool
from proxmox_vm_operator.controller.pace import Checkpoint, Pace
from proxmox_vm_operator.controller.reconciler import Reconciler, ReconcileRequest
from proxmox_vm_operator.domain.status import Event, apply_merge_patch
from proxmox_vm_operator.simulator import Simulator

from .driver import NAME, NAMESPACE, OWNER_TAG, START, UID, base_spec

FOLLOWING = Pace(follow_within=10.0, listing_max_age=5.0)


class Recorder:
    """The handler's side of a checkpoint: what was written, in order, and the object."""

    def __init__(self, deleted_after_writes: int | None = None) -> None:
        self.status: dict[str, object] = {}
        self.writes: list[dict[str, object]] = []
        self.events: list[Event] = []
        self.deleted_after_writes = deleted_after_writes
        self.task_written = asyncio.Event()

    async def write_status(self, patch: dict[str, object]) -> None:
        self.writes.append(patch)
        self.status = apply_merge_patch(self.status, patch)
        if "task" in patch:
            self.task_written.set()

    def post_events(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    async def live(self) -> Mapping[str, Any] | None:
        metadata: dict[str, object] = {"uid": UID}
        if self.deleted_after_writes is not None and len(self.writes) > self.deleted_after_writes:
            metadata["deletionTimestamp"] = "2030-01-01T12:00:05Z"
        return {"metadata": metadata, "status": self.status}

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(write_status=self.write_status, post_events=self.post_events)


def request(recorder: Recorder, **spec: Any) -> ReconcileRequest:
    return ReconcileRequest(
        namespace=NAMESPACE,
        name=NAME,
        uid=UID,
        generation=1,
        spec=base_spec(**spec),
        status={},
        live=recorder.live,
    )


def calls(sim: Simulator) -> list[str]:
    """The calls that change something, as 'METHOD last-path-part'."""
    return [f"{r.method} {r.path.rsplit('/', 1)[-1]}" for r in sim.requests if r.method != "GET"]


async def test_a_create_is_one_pass_from_nothing_to_ready(sim: Simulator, pool: ClientPool) -> None:
    reconciler = Reconciler(pool, pace=FOLLOWING)
    recorder = Recorder()

    result = await reconciler.run_pass(request(recorder, vmid=120), START, recorder.checkpoint())

    assert calls(sim) == ["POST qemu", "POST start"]
    final = apply_merge_patch(recorder.status, result.status.to_merge_patch(recorder.status))
    ready = [c for c in final["conditions"] if c["type"] == "Ready"]  # type: ignore[union-attr,index]
    assert ready[0]["status"] == "True", final
    assert result.retry_after is None
    vm = sim.vm(120)
    assert vm is not None and vm["running"] and OWNER_TAG in str(vm["config"]["tags"])


async def test_the_vmid_and_the_task_are_written_before_the_pass_waits(
    sim: Simulator, pool: ClientPool
) -> None:
    reconciler = Reconciler(pool, pace=FOLLOWING)
    recorder = Recorder()

    await reconciler.run_pass(request(recorder), START, recorder.checkpoint())

    # The VMID (from nextid) before the create, then the create's task, then the start's.
    assert recorder.writes[0]["vmid"] == 100 and "task" not in recorder.writes[0]
    tasks = [w["task"] for w in recorder.writes if isinstance(w.get("task"), dict)]
    assert [t["action"] for t in tasks] == ["create", "start"], recorder.writes
    assert [e.reason for e in recorder.events][:1] == ["Creating"]


async def test_a_pass_stops_going_on_once_the_object_is_being_deleted(
    sim: Simulator, pool: ClientPool
) -> None:
    reconciler = Reconciler(pool, pace=FOLLOWING)
    recorder = Recorder(deleted_after_writes=1)  # deleted once the create's task is written

    await reconciler.run_pass(request(recorder, vmid=121), START, recorder.checkpoint())

    assert calls(sim) == ["POST qemu"], "a VM on its way out was started"


async def test_without_a_checkpoint_a_pass_does_one_step(sim: Simulator, pool: ClientPool) -> None:
    """Nothing goes on that a restart could lose: the caller must write the VMID first."""
    reconciler = Reconciler(pool, pace=FOLLOWING)

    result = await reconciler.run_pass(request(Recorder(), vmid=122), START)

    assert calls(sim) == []
    assert result.status.vmid == 122
    assert result.retry_after is not None


async def test_a_drift_pass_beside_a_pass_under_way_does_nothing(
    sim: Simulator, pool: ClientPool
) -> None:
    """kopf runs the drift timer apart from the change handlers: while a create waits on its
    task (or for a task slot), a timer pass beside it must not create too."""
    reconciler = Reconciler(pool, pace=FOLLOWING)
    recorder = Recorder()
    creating = asyncio.create_task(
        reconciler.run_pass(request(recorder), START, recorder.checkpoint())
    )
    await asyncio.wait_for(recorder.task_written.wait(), timeout=10)  # the create runs

    # The timer's copy shows what was written: the VMID and the create's task.
    beside = dataclasses.replace(request(recorder), status=dict(recorder.status), periodic=True)
    result = await reconciler.run_pass(beside, START, recorder.checkpoint())
    await creating

    assert result.skipped and result.retry_after is None
    assert result.status.to_merge_patch({}) == {}
    assert calls(sim) == ["POST qemu", "POST start"]  # one create only
