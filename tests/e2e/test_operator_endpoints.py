"""The endpoints of `proxmox-vm-operator run`: /healthz on the liveness port, and /metrics in
the Prometheus text format with the public metric names (docs/design.md, "Public names"),
labelled without raw ids, and
the destroy gauges and histogram following a real create and delete."""

from __future__ import annotations

import re

import pytest
import requests

from proxmox_vm_operator.simulator import Timings

from .harness import Cluster
from .lifecycle_helpers import Sample, samples, scrape, wait_gone, wait_phase

RAW_ID = re.compile(r"(^|/)\d{3,}(/|$)")  # a VMID as a path segment


def run_and_delete(cluster: Cluster, name: str, vmid: int) -> None:
    cluster.apply_vm(name, {"vmid": vmid})
    wait_phase(cluster, name, "Running", timeout=30)
    cluster.delete_vm(name)
    wait_gone(cluster, name, timeout=30)
    assert not cluster.sim.vm_exists(vmid)


def test_liveness_answers_on_healthz(cluster: Cluster) -> None:
    port = cluster.operator.liveness_port
    reply = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert reply.status_code == 200, reply.text
    # Still healthy while it works.
    cluster.apply_vm("web-1", {"vmid": 700})
    wait_phase(cluster, "web-1", "Running", timeout=30)
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{port}/nothing", timeout=5).status_code == 404


def test_metrics_parse_and_api_calls_are_labelled_by_templated_endpoint(
    cluster: Cluster,
) -> None:
    before = scrape(cluster)
    assert samples(before, "proxmox_api_request_duration_seconds_count") == []

    cluster.apply_vm("web-1", {"vmid": 701})
    wait_phase(cluster, "web-1", "Running", timeout=30)
    after = scrape(cluster)
    calls = samples(after, "proxmox_api_request_duration_seconds_count")
    assert calls, "no Proxmox API call was measured"
    endpoints = {s[1]["endpoint"] for s in calls}
    for _, labels, _ in calls:
        assert set(labels) == {"method", "endpoint", "code"}, labels
        assert labels["method"] in ("GET", "POST", "PUT", "DELETE"), labels
        for value in labels.values():
            assert "701" not in value and "UPID" not in value, labels
        assert not RAW_ID.search(labels["endpoint"]), labels
        assert labels["endpoint"].startswith("/"), labels
    assert any("{vmid}" in e for e in endpoints), endpoints
    assert any("{upid}" in e or "tasks" in e for e in endpoints), endpoints
    created = samples(
        after, "proxmox_api_request_duration_seconds_count", method="POST", code="200"
    )
    assert sum(s[2] for s in created) >= 2, created  # the create and the start

    # The histogram is consistent: each series has buckets ending at +Inf == count.
    for _, labels, count in calls:
        inf = samples(after, "proxmox_api_request_duration_seconds_bucket", le="+Inf", **labels)
        assert [s[2] for s in inf] == [count], (labels, inf)

    names = {s[0] for s in after}
    assert "proxmoxvm_destroy_fallback_total" in names  # a counter exported from the start


# 100 simulated seconds, 5 s at the sandbox's time scale: long enough to see the gauge.
@pytest.mark.sandbox(simulator={"timings": Timings(destroy=100)})
def test_a_delete_is_measured_and_its_in_flight_gauge_removed(cluster: Cluster) -> None:
    cluster.apply_vm("web-2", {"vmid": 702})
    wait_phase(cluster, "web-2", "Running", timeout=30)
    started = "proxmoxvm_destroy_started_timestamp_seconds"
    assert samples(scrape(cluster), started) == []

    cluster.delete_vm("web-2")

    def in_flight() -> list[Sample]:
        return samples(scrape(cluster), started, namespace=cluster.namespace, name="web-2")

    gauge = cluster.wait_for(in_flight, timeout=15, what="the destroy-started gauge")
    assert gauge[0][2] > 1.6e9  # a Unix time
    wait_gone(cluster, "web-2", timeout=30)

    done = scrape(cluster)
    deleted = samples(
        done, "proxmoxvm_destroy_duration_seconds_count", mode="Stop", outcome="deleted"
    )
    assert [s[2] for s in deleted] == [1.0], deleted
    assert samples(done, started) == [], "the in-flight gauge outlived the destroy"
    assert all(s[2] == 0 for s in samples(done, "proxmoxvm_destroys_in_progress"))
    assert all(s[2] == 0 for s in samples(done, "proxmoxvm_destroys_stalled"))
    assert not cluster.sim.vm_exists(702)


def test_proxmox_tasks_are_measured(cluster: Cluster) -> None:
    run_and_delete(cluster, "web-3", 703)
    tasks = samples(scrape(cluster), "proxmox_task_duration_seconds_count")
    assert tasks, "no Proxmox task was measured"
    assert all(set(s[1]) == {"type", "status"} for s in tasks), tasks
    assert sum(s[2] for s in tasks) >= 4  # create, start, stop, destroy
