"""The destroy's metrics, as alerts and dashboards read them from `/metrics`.

`proxmoxvm_destroy_started_timestamp_seconds` is present while a destroy is in flight (an
alert fires on `time() - x`), `proxmoxvm_destroys_in_progress` and
`proxmoxvm_destroys_stalled` count the destroys in flight by step and by stall reason, and
`proxmoxvm_destroy_duration_seconds` observes each release with its mode and outcome.
"""

from __future__ import annotations

import calendar
import time

import pytest

from .destroy_helpers import (
    condition_is,
    create_running,
    destroy_metrics,
    destroy_record,
    metric,
    wait_gone,
    wait_vm,
)
from .harness import Cluster, dig

VMID = 128
STALL_AFTER = 2
STARTED = "proxmoxvm_destroy_started_timestamp_seconds"
IN_PROGRESS = "proxmoxvm_destroys_in_progress"
STALLED = "proxmoxvm_destroys_stalled"
DURATION_COUNT = "proxmoxvm_destroy_duration_seconds_count"
DURATION_SUM = "proxmoxvm_destroy_duration_seconds_sum"

pytestmark = pytest.mark.sandbox(stall_after=STALL_AFTER)


def _in_flight(cluster: Cluster, name: str) -> dict[str, float]:
    """The non-zero destroy gauges about ``name`` (started) and in total (steps, stalls)."""
    samples = destroy_metrics(cluster)
    found: dict[str, float] = {}
    for (metric_name, labels), value in samples.items():
        label_map = dict(labels)
        if metric_name == STARTED and label_map.get("name") == name:
            found[STARTED] = value
        elif metric_name in (IN_PROGRESS, STALLED) and value:
            found[f"{metric_name}:{next(iter(label_map.values()))}"] = value
    return found


def test_the_destroy_gauges_follow_a_stalled_destroy_and_clear_when_it_ends(
    cluster: Cluster,
) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    cluster.sim.make_unreachable("refuse")
    cluster.delete_vm("web-1")

    wait_vm(
        cluster,
        "web-1",
        lambda v: condition_is(v, "DeletionStalled", "True", "ProxmoxUnreachable"),
        timeout=10,
        what="DeletionStalled=True",
    )
    started_at = destroy_record(cluster, "web-1")["startedAt"]
    epoch = calendar.timegm(time.strptime(started_at, "%Y-%m-%dT%H:%M:%SZ"))
    cluster.wait_for(
        lambda: _in_flight(cluster, "web-1").get(f"{STALLED}:ProxmoxUnreachable"),
        timeout=10,
        what="the stalled gauge",
    )
    gauges = _in_flight(cluster, "web-1")
    assert gauges[STARTED] == pytest.approx(epoch, abs=1), gauges
    assert sum(v for k, v in gauges.items() if k.startswith(f"{IN_PROGRESS}:")) == 1, gauges
    assert gauges[f"{STALLED}:ProxmoxUnreachable"] == 1

    cluster.sim.restore()
    wait_gone(cluster, "web-1", timeout=20)
    assert _in_flight(cluster, "web-1") == {}
    samples = destroy_metrics(cluster)
    assert metric(samples, DURATION_COUNT, mode="Stop", outcome="deleted") == 1
    took = metric(samples, DURATION_SUM, mode="Stop", outcome="deleted")
    assert took is not None and took >= STALL_AFTER, took
    errors = metric(samples, "proxmoxvm_destroy_errors_total", reason="ProxmoxUnreachable")
    assert errors is not None and errors >= 2, errors  # every failed pass, before the stall too


def test_a_finalizer_removed_by_hand_leaves_no_destroy_in_flight(cluster: Cluster) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    cluster.sim.make_unreachable("refuse")
    cluster.delete_vm("web-1")
    cluster.wait_for(
        lambda: STARTED in _in_flight(cluster, "web-1"), timeout=10, what="the destroy gauge"
    )
    assert dig(cluster.get_vm("web-1"), "metadata.deletionTimestamp")

    # The break-glass that every Kubernetes user knows, instead of the force-release annotation.
    cluster.kubectl(
        "patch", "proxmoxvm/web-1", "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    wait_gone(cluster, "web-1", timeout=10)

    deadline = time.monotonic() + 5  # a few destroy passes would have run meanwhile
    while (left := _in_flight(cluster, "web-1")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == {}, "a destroy is still reported in flight for an object that is gone"
