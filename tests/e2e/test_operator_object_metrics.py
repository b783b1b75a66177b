"""Reconcile results and objects by phase on /metrics, and the destroy gauges after a restart.

`proxmoxvm_reconcile_total{result}` counts passes by where they left the object (ready,
progressing, retrying, stalled); `proxmoxvm_objects{phase}` follows the watched objects. The
started-timestamp gauge of a destroy in flight lives in memory, so a restarted operator must
rebuild it from the objects being deleted, with the persisted start time.
"""

from __future__ import annotations

import pytest

from proxmox_vm_operator.simulator import GuestBehaviour, Timings

from .destroy_helpers import DESTROY_MODE, annotate, create_running, wait_record
from .harness import Cluster, dig
from .lifecycle_helpers import samples, scrape, wait_gone, wait_phase

STARTED = "proxmoxvm_destroy_started_timestamp_seconds"


def objects_by_phase(cluster: Cluster) -> dict[str, float]:
    return {s[1]["phase"]: s[2] for s in samples(scrape(cluster), "proxmoxvm_objects") if s[2]}


def reconciles(cluster: Cluster, result: str) -> float:
    return sum(s[2] for s in samples(scrape(cluster), "proxmoxvm_reconcile_total", result=result))


def started_gauge(cluster: Cluster, name: str) -> float | None:
    found = samples(scrape(cluster), STARTED, name=name)
    return found[0][2] if found else None


# 240 simulated seconds, 12 s at the sandbox's time scale: longer than a pass follows a task
# (10 s), so the create shows as a pass that ended progressing before the one that ended ready.
@pytest.mark.sandbox(simulator={"timings": Timings(create=240)})
def test_reconcile_results_and_objects_by_phase(cluster: Cluster) -> None:
    cluster.apply_vm("web-1", {"vmid": 131})
    cluster.apply_vm("broken", {"vmid": 132, "memoryMiB": 1})
    wait_phase(cluster, "web-1", "Running", timeout=30)
    wait_phase(cluster, "broken", "Failed", timeout=30, ready_true=False)

    cluster.wait_for(
        lambda: objects_by_phase(cluster) == {"Running": 1, "Failed": 1},
        timeout=10,
        what="one Running and one Failed object",
    )
    assert reconciles(cluster, "ready") >= 1
    assert reconciles(cluster, "progressing") >= 1  # the pass that left the create running
    assert reconciles(cluster, "stalled") >= 1  # the invalid spec
    assert reconciles(cluster, "retrying") == 0

    cluster.delete_vm("web-1")
    cluster.delete_vm("broken")
    wait_gone(cluster, "web-1", timeout=30)
    wait_gone(cluster, "broken", timeout=30)
    cluster.wait_for(
        lambda: objects_by_phase(cluster) == {}, timeout=10, what="no object counted any more"
    )


@pytest.mark.sandbox(stall_after=600)
def test_a_restarted_operator_rebuilds_the_started_gauge_from_the_object(
    cluster: Cluster,
) -> None:
    spec = {"vmid": 133, "destroy": {"mode": "Shutdown", "shutdownTimeoutSeconds": 3600}}
    create_running(cluster, "web-1", spec)
    cluster.sim.set_guest(133, GuestBehaviour(obeys_acpi=False))
    cluster.delete_vm("web-1")
    record = wait_record(
        cluster,
        "web-1",
        lambda r: r.get("step") == "WaitingForShutdown",
        timeout=15,
        what="the graceful wait",
    )
    cluster.wait_for(lambda: started_gauge(cluster, "web-1"), timeout=10, what="the started gauge")
    before = started_gauge(cluster, "web-1")

    cluster.operator.kill()
    cluster.operator.start()
    cluster.wait_for(
        lambda: started_gauge(cluster, "web-1"), timeout=15, what="the gauge after the restart"
    )
    assert started_gauge(cluster, "web-1") == before
    assert objects_by_phase(cluster) == {"Deleting": 1}
    vm = cluster.get_vm("web-1")
    assert dig(vm, "status.destroy.startedAt") == record["startedAt"]
    assert dig(vm, "status.observedGeneration") == dig(vm, "metadata.generation")
    # Ready and the kstatus pair speak for the deletion, not for the last reconcile.
    by_type = {c["type"]: c for c in dig(vm, "status.conditions")}
    assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("False", "Deleting")
    assert by_type["Reconciling"]["status"] == "True"
    assert by_type["Stalled"]["status"] == "False"

    annotate(cluster, "web-1", DESTROY_MODE, "Stop")  # cut the long wait short
    wait_gone(cluster, "web-1", timeout=30)
    assert started_gauge(cluster, "web-1") is None


@pytest.mark.sandbox(stall_after=600)
def test_the_started_gauge_returns_at_once_while_the_destroy_is_backing_off(
    cluster: Cluster,
) -> None:
    """kopf keeps a failing handler's delay across a restart (it is in the object's
    annotations), so the gauge must come from the watched status, not from the next pass."""
    create_running(cluster, "web-1", {"vmid": 134})
    cluster.sim.make_unreachable("refuse")
    cluster.delete_vm("web-1")
    wait_record(
        cluster,
        "web-1",
        lambda r: r.get("failures", 0) >= 4,  # the next attempt is 15 s or more away, so
        # a gauge back within 10 s of the restart came from the watch, not from a pass
        timeout=30,
        what="a destroy backing off",
    )
    before = started_gauge(cluster, "web-1")
    assert before is not None

    cluster.operator.kill()
    cluster.operator.start()
    cluster.wait_for(
        lambda: started_gauge(cluster, "web-1"), timeout=10, what="the gauge after the restart"
    )
    assert started_gauge(cluster, "web-1") == before
    by_stall = {
        s[1]["reason"]: s[2] for s in samples(scrape(cluster), "proxmoxvm_destroys_stalled") if s[2]
    }
    assert by_stall == {}  # not stalled yet: --stall-after is 600 s

    cluster.sim.restore()
    wait_gone(cluster, "web-1", timeout=90)
    assert started_gauge(cluster, "web-1") is None
