"""Whole destroys, run by the pure state machine against a tiny model of a hung guest.

The model is deliberately the worst case: a guest that ignores ACPI for ever. Each run must end
with the VM deleted, within a bound set by the policy, and without a single shutdown request
under the default policy: the regression this project exists to prevent.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import pytest

from proxmox_vm_operator.domain.destroy import (
    DeleteVM,
    DestroyContext,
    Outcome,
    PowerOff,
    PowerOffMethod,
    Release,
    TaskObservation,
    TaskState,
    VMAbsent,
    VMObservation,
    VMPresent,
    Wait,
    decide,
    ownership_tag,
    shutdown_accepted,
)
from proxmox_vm_operator.domain.model import DestroyStatus, ProxmoxVMSpec

UID = "d6f1"
T0 = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)


@dataclass
class HungGuestCluster:
    """One VM whose guest never reacts to shutdown; tasks take one second."""

    now: float = 0.0
    exists: bool = True
    running: bool = True
    calls: list[str] = field(default_factory=list)
    tasks: dict[str, tuple[float, str, str]] = field(default_factory=dict)  # upid: end, kind, arg

    def observe(self) -> VMObservation:
        self._finish_tasks()
        if not self.exists:
            return VMAbsent()
        return VMPresent("pve1", frozenset({ownership_tag(UID)}), self.running)

    def task(self, upid: str | None) -> TaskObservation | None:
        if upid is None:
            return None
        end, kind, _ = self.tasks[upid]
        if self.now < end:
            return TaskObservation(TaskState.RUNNING)
        if kind == "shutdown":
            return TaskObservation(TaskState.FAILED, "VM quit/powerdown failed - got timeout")
        return TaskObservation(TaskState.SUCCEEDED, "OK")

    def call(self, action: PowerOff | DeleteVM) -> str:
        upid = f"UPID:{len(self.calls)}"
        if isinstance(action, DeleteVM):
            assert not self.running, "DELETE of a running VM"
            self.calls.append("delete")
            self.tasks[upid] = (self.now + 1, "delete", "")
        elif action.method is PowerOffMethod.SHUTDOWN:
            self.calls.append(f"shutdown:{action.timeout_seconds}")
            self.tasks[upid] = (self.now + (action.timeout_seconds or 60), "shutdown", "")
        else:
            self.calls.append(action.method.value)
            self.tasks[upid] = (self.now + 1, "stop", "")
        return upid

    def _finish_tasks(self) -> None:
        for end, kind, _ in self.tasks.values():
            if self.now >= end and kind == "stop":
                self.running = False
            if self.now >= end and kind == "delete":
                self.exists = False


def run_destroy(spec: ProxmoxVMSpec, cluster: HungGuestCluster) -> tuple[Outcome, float]:
    record: DestroyStatus | None = None
    for _ in range(500):
        vm = cluster.observe()
        task = cluster.task(record.task_upid if record else None)
        now = T0 + datetime.timedelta(seconds=cluster.now)
        decision = decide(DestroyContext(now, UID, spec, {}, 120, record), vm, task)
        record = decision.record
        action = decision.action
        if isinstance(action, Release):
            return action.outcome, cluster.now
        if isinstance(action, PowerOff | DeleteVM):
            assert record is not None
            record = record.model_copy(update={"task_upid": cluster.call(action)})
            cluster.now += 0.5
            if isinstance(action, PowerOff) and action.timeout_seconds is not None:
                # As the destroyer does: the guest's time counts from the acceptance.
                accepted = T0 + datetime.timedelta(seconds=cluster.now)
                record = shutdown_accepted(record, accepted, action.timeout_seconds)
        else:
            assert isinstance(action, Wait)
            cluster.now += action.seconds
    raise AssertionError(f"destroy did not finish; calls so far: {cluster.calls}")


def spec_with(**destroy: object) -> ProxmoxVMSpec:
    return ProxmoxVMSpec.model_validate(
        {"connectionRef": {"name": "pve"}, "node": "pve1", "vmid": 120, "destroy": destroy}
    )


def test_default_policy_destroys_a_hung_guest_in_seconds_without_any_shutdown() -> None:
    cluster = HungGuestCluster()
    outcome, elapsed = run_destroy(spec_with(), cluster)
    assert outcome is Outcome.DELETED
    assert cluster.calls == ["stop", "delete"]
    assert elapsed < 10


@pytest.mark.parametrize("timeout", [3, 120, 3600])
def test_shutdown_policy_on_a_hung_guest_ends_shortly_after_its_deadline(timeout: int) -> None:
    cluster = HungGuestCluster()
    outcome, elapsed = run_destroy(
        spec_with(mode="Shutdown", shutdownTimeoutSeconds=timeout), cluster
    )
    assert outcome is Outcome.DELETED
    assert cluster.calls == [f"shutdown:{timeout}", "stop", "delete"]
    assert timeout <= elapsed < timeout + 10
