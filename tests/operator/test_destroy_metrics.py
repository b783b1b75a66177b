"""The destroy gauges follow the destroys in flight, as scraped from /metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxmox_vm_operator.metrics import DestroyTracker


def _samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(REGISTRY).decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_started_timestamp_is_present_only_while_a_destroy_is_in_flight() -> None:
    tracker = DestroyTracker()
    tracker.update("lab", "web-1", 1_700_000_000.0, "Stopping", None)
    started = _samples("proxmoxvm_destroy_started_timestamp_seconds")
    assert started[(("name", "web-1"), ("namespace", "lab"))] == 1_700_000_000.0
    tracker.finish("lab", "web-1")
    started = _samples("proxmoxvm_destroy_started_timestamp_seconds")
    assert (("name", "web-1"), ("namespace", "lab")) not in started


def test_in_progress_and_stalled_gauges_count_destroys_by_step_and_reason() -> None:
    tracker = DestroyTracker()
    tracker.update("lab", "a", 1.0, "ShuttingDown", None)
    tracker.update("lab", "b", 2.0, "ShuttingDown", "ProxmoxUnreachable")
    tracker.update("lab", "c", 3.0, "DeletingVM", None)
    assert _samples("proxmoxvm_destroys_in_progress")[(("step", "ShuttingDown"),)] == 2
    assert _samples("proxmoxvm_destroys_stalled")[(("reason", "ProxmoxUnreachable"),)] == 1
    tracker.update("lab", "b", 2.0, "ForcingStop", None)
    assert _samples("proxmoxvm_destroys_stalled")[(("reason", "ProxmoxUnreachable"),)] == 0
    for name in ("a", "b", "c"):
        tracker.finish("lab", name)
    # Every step and reason stays exported, at zero, so a query never meets a missing series.
    in_progress = _samples("proxmoxvm_destroys_in_progress")
    assert set(in_progress.values()) == {0}
    assert {"ShuttingDown", "ForcingStop", "DeletingVM", "WaitingForShutdown"} <= {
        dict(labels)["step"] for labels in in_progress
    }
    assert set(_samples("proxmoxvm_destroys_stalled").values()) == {0}
