"""`kubectl apply -k manifests/monitoring` installs the ServiceMonitor, the PrometheusRule as
generated, and the Grafana dashboard as a ConfigMap the dashboard sidecar picks up."""

from __future__ import annotations

import json
import pathlib
import subprocess

import yaml

from proxmox_vm_operator.monitoring import alerts, dashboard

from ..e2e.harness import kubectl_binary

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_monitoring_kustomization_renders_the_generated_artefacts() -> None:
    rendered = subprocess.run(
        [kubectl_binary(), "kustomize", str(ROOT / "manifests" / "monitoring")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered) if doc}
    assert set(objects) == {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    assert all(o["metadata"]["namespace"] == "proxmox-vm-operator" for o in objects.values())

    assert objects["PrometheusRule"]["spec"] == alerts.prometheus_rule()["spec"]
    board = objects["ConfigMap"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["grafana-dashboard.json"]) == dashboard.dashboard()
