"""The ServiceMonitor scrapes the operator's metrics Service so that the alerts' job label and
the objects' namespace label come out right."""

from __future__ import annotations

from typing import Any

import yaml

from proxmox_vm_operator.monitoring import alerts

from .tools import REPO, SERVICE_MONITOR, load_yaml

SERVICE = "proxmox-vm-operator-metrics"
SERVICE_LABELS = {
    "app.kubernetes.io/name": "proxmox-vm-operator",
    "app.kubernetes.io/component": "metrics",
}


def _monitor() -> dict[str, Any]:
    monitor: dict[str, Any] = load_yaml(SERVICE_MONITOR)
    return monitor


def test_service_monitor_selects_the_metrics_service_in_the_operator_namespace() -> None:
    monitor = _monitor()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["metadata"]["namespace"] == alerts.NAMESPACE
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [alerts.NAMESPACE]}
    assert monitor["spec"]["selector"] == {"matchLabels": SERVICE_LABELS}


def test_service_monitor_scrapes_the_metrics_port_and_keeps_the_objects_labels() -> None:
    (endpoint,) = _monitor()["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["honorLabels"] is True


def test_job_label_is_the_service_name_the_alerts_use() -> None:
    # prometheus-operator names the job after the Service unless spec.jobLabel says otherwise.
    assert "jobLabel" not in _monitor()["spec"]
    assert alerts.OPERATOR_JOB == SERVICE


def _services() -> list[dict[str, Any]]:
    found = []
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            is_service = isinstance(doc, dict) and doc.get("kind") == "Service"
            if is_service and doc.get("metadata", {}).get("name") == SERVICE:
                found.append(doc)
    return found


def test_the_metrics_service_in_manifests_matches_the_selector() -> None:
    services = _services()
    assert services, f"no Service {SERVICE} in manifests/"
    for service in services:
        assert SERVICE_LABELS.items() <= service["metadata"].get("labels", {}).items()
        assert "metrics" in [port.get("name") for port in service["spec"]["ports"]]
