"""proxmoxvm_objects counts the watched objects by phase and forgets the ones that are gone."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxmox_vm_operator.metrics import ObjectTracker


def _objects_by_phase() -> dict[str, float]:
    text = generate_latest(REGISTRY).decode()
    return {
        sample.labels["phase"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "proxmoxvm_objects" and sample.value
    }


def test_every_phase_is_exported_from_the_start_even_at_zero() -> None:
    ObjectTracker()
    text = generate_latest(REGISTRY).decode()
    phases = {
        sample.labels["phase"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "proxmoxvm_objects"
    }
    assert phases == {"Pending", "Provisioning", "Running", "Stopped", "Deleting", "Failed"}


def test_objects_are_counted_by_their_latest_phase_and_dropped_when_deleted() -> None:
    tracker = ObjectTracker()
    tracker.seen("uid-1", "Provisioning")
    tracker.seen("uid-2", "Provisioning")
    tracker.seen("uid-3", "Failed")
    assert _objects_by_phase() == {"Provisioning": 2, "Failed": 1}

    tracker.seen("uid-1", "Running")
    tracker.seen("uid-1", "Running")  # a second event about the same object counts once
    assert _objects_by_phase() == {"Provisioning": 1, "Running": 1, "Failed": 1}

    tracker.seen("uid-2", "Deleting")
    tracker.gone("uid-3")
    tracker.gone("uid-unknown")  # an object never seen is no error
    assert _objects_by_phase() == {"Running": 1, "Deleting": 1}

    tracker.gone("uid-1")
    tracker.gone("uid-2")
    assert _objects_by_phase() == {}
