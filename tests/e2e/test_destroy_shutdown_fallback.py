"""`spec.destroy.mode: Shutdown`: ask the guest once, with a deadline, then force a stop.

While a graceful wait runs, the simulated clock is frozen (destroy_helpers.FROZEN): the guest
cannot time its own qmshutdown task out, so what ends the wait is the operator's deadline
(`startedAt + shutdownTimeoutSeconds`, persisted in status.destroy) or the destroy-mode
annotation, and the forced-stop task stays in flight until the test lets the clock run again.
That keeps every intermediate state observable on the object.
"""

from __future__ import annotations

import time
from typing import Any

from proxmox_vm_operator.simulator import GuestBehaviour

from .destroy_helpers import (
    DESTROY_MODE,
    FAST,
    FROZEN,
    annotate,
    assert_held,
    condition_is,
    create_running,
    destroy_metrics,
    destructive_counts,
    event_reasons,
    metric,
    shutdowns,
    stops,
    wait_gone,
    wait_record,
    wait_vm,
)
from .harness import Cluster, dig

VMID = 121
IGNORES_ACPI = GuestBehaviour(obeys_acpi=False)
DURATION_COUNT = "proxmoxvm_destroy_duration_seconds_count"


def _shutdown_mode(seconds: int) -> dict[str, Any]:
    return {"vmid": VMID, "destroy": {"mode": "Shutdown", "shutdownTimeoutSeconds": seconds}}


def _waiting_for_shutdown(cluster: Cluster) -> dict[str, Any]:
    return wait_record(
        cluster,
        "web-1",
        lambda r: r.get("step") == "WaitingForShutdown" and ":qmshutdown:" in r.get("taskUpid", ""),
        timeout=10,
        what="the shutdown task recorded in status",
    )


def test_a_guest_that_ignores_acpi_is_force_stopped_at_the_shutdown_deadline(
    cluster: Cluster,
) -> None:
    create_running(cluster, "web-1", _shutdown_mode(3))
    cluster.sim.set_guest(VMID, IGNORES_ACPI)
    cluster.sim.set_time_scale(FROZEN)

    deleted_at = time.monotonic()
    cluster.delete_vm("web-1")
    record = _waiting_for_shutdown(cluster)
    assert (record["mode"], record.get("fallbackUsed", False)) == ("Shutdown", False)
    assert record.get("shutdownDeadline")
    (shutdown,) = shutdowns(cluster, VMID)
    assert 1 <= int(shutdown.params["timeout"]) <= 3, shutdown.params
    assert stops(cluster, VMID) == []
    assert condition_is(cluster.get_vm("web-1"), "Deleting", "True", "ShuttingDown")

    cluster.wait_for(lambda: stops(cluster, VMID), timeout=10, what="the forced stop")
    waited = time.monotonic() - deleted_at
    # startedAt has whole seconds, so the deadline is 2 to 3 s after the delete.
    assert waited >= 1.8, f"the forced stop came {waited:.1f} s after the delete"
    (stop,) = stops(cluster, VMID)
    assert stop.params == {"overrule-shutdown": "1"}

    vm = wait_vm(
        cluster,
        "web-1",
        lambda v: dig(v, "status.destroy.fallbackUsed") is True,
        timeout=10,
        what="fallbackUsed while deleting",
    )
    assert dig(vm, "metadata.deletionTimestamp")
    assert dig(vm, "status.destroy.step") == "ForcingStop"
    assert dig(vm, "status.phase") == "Deleting"
    assert cluster.sim.vm_exists(VMID)

    cluster.sim.set_time_scale(FAST)  # the stop task may end now
    wait_gone(cluster, "web-1", timeout=15)
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 1, "stop": 1, "delete": 1}
    reasons = event_reasons(cluster, "web-1")
    assert ("Normal", "ShuttingDown") in reasons
    assert reasons.count(("Warning", "ShutdownTimedOut")) == 1, reasons
    asked, forced = ("Normal", "ShuttingDown"), ("Warning", "ShutdownTimedOut")
    assert reasons.index(asked) < reasons.index(forced)
    assert ("Normal", "DeletingVM") in reasons
    samples = destroy_metrics(cluster)
    assert metric(samples, "proxmoxvm_destroy_fallback_total") == 1
    assert metric(samples, DURATION_COUNT, mode="Shutdown", outcome="deleted") == 1


def test_a_guest_that_obeys_acpi_is_shut_down_and_never_force_stopped(cluster: Cluster) -> None:
    create_running(cluster, "web-1", _shutdown_mode(30))  # the guest powers off in 3 s

    cluster.delete_vm("web-1", wait=True, timeout=20)

    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 1, "stop": 0, "delete": 1}
    reasons = event_reasons(cluster, "web-1")
    assert ("Normal", "ShuttingDown") in reasons and ("Normal", "DeletingVM") in reasons
    assert not [r for r in reasons if r[1] in ("ShutdownTimedOut", "ForcingStop", "Stopping")]
    assert metric(destroy_metrics(cluster), "proxmoxvm_destroy_fallback_total") == 0


def test_the_destroy_mode_annotation_cuts_a_long_graceful_wait_short(cluster: Cluster) -> None:
    create_running(cluster, "web-1", _shutdown_mode(3600))
    cluster.sim.set_guest(VMID, IGNORES_ACPI)
    cluster.sim.set_time_scale(FROZEN)

    cluster.delete_vm("web-1")
    _waiting_for_shutdown(cluster)
    (shutdown,) = shutdowns(cluster, VMID)
    assert int(shutdown.params["timeout"]) >= 3590, shutdown.params
    assert_held(cluster, "web-1", 1.5)  # an hour-long wait has begun
    assert stops(cluster, VMID) == []

    annotate(cluster, "web-1", DESTROY_MODE, "Stop")  # on an object already being deleted
    annotated_at = time.monotonic()
    cluster.wait_for(lambda: stops(cluster, VMID), timeout=15, what="the stop the annotation asks")
    assert time.monotonic() - annotated_at < 15
    (stop,) = stops(cluster, VMID)
    assert stop.params == {"overrule-shutdown": "1"}

    record = wait_record(
        cluster,
        "web-1",
        lambda r: r.get("step") == "ForcingStop",
        timeout=10,
        what="step ForcingStop in status",
    )
    assert record["mode"] == "Stop"
    assert record.get("fallbackUsed", False) is False  # asked for, not a timeout

    cluster.sim.set_time_scale(FAST)
    wait_gone(cluster, "web-1", timeout=15)
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 1, "stop": 1, "delete": 1}
    reasons = event_reasons(cluster, "web-1")
    assert ("Normal", "ForcingStop") in reasons, reasons
    assert ("Warning", "ShutdownTimedOut") not in reasons
