"""What the delete handler writes to status for one destroy pass (handlers._report_destroy)."""

from __future__ import annotations

from typing import Any, cast

import kopf
import pytest

from proxmox_vm_operator import handlers
from proxmox_vm_operator.controller.destroyer import DestroyPass
from proxmox_vm_operator.domain.model import DestroyMode, DestroyStatus, DestroyStep


def _body(generation: int = 3) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "proxmox.vmop.dev/v1alpha1",
        "kind": "ProxmoxVM",
        "metadata": {
            "name": "web-1",
            "namespace": "lab",
            "uid": "u-1",
            "generation": generation,
            "deletionTimestamp": "2030-01-01T12:00:00Z",
            "finalizers": ["proxmox.vmop.dev/destroy"],
        },
        "spec": {"connectionRef": {"name": "pve"}, "node": "pve1"},
        "status": {"powerState": "Running", "phase": "Running"},
    }
    return kopf.Body(cast(kopf.RawBody, raw))


def _report(step: DestroyStep) -> dict[str, Any]:
    record = DestroyStatus(startedAt="2030-01-01T12:00:01Z", mode=DestroyMode.STOP, step=step)
    patch = kopf.Patch()
    handlers._report_destroy(_body(), patch, DestroyPass(record, retry_after=1.0))
    return dict(patch["status"])


@pytest.mark.parametrize("step", [DestroyStep.DELETING_VM, DestroyStep.VERIFYING_ABSENCE])
def test_steps_after_the_power_off_report_the_vm_stopped(step: DestroyStep) -> None:
    status = _report(step)
    assert status["powerState"] == "Stopped"
    assert status["phase"] == "Deleting"
    assert status["observedGeneration"] == 3


@pytest.mark.parametrize(
    "step", [DestroyStep.STARTING, DestroyStep.STOPPING, DestroyStep.WAITING_FOR_SHUTDOWN]
)
def test_steps_before_the_power_off_leave_the_power_state_alone(step: DestroyStep) -> None:
    assert "powerState" not in _report(step)
