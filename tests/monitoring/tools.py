"""Shared by the monitoring tests: paths, the rules, and the kube-state-metrics config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxmox_vm_operator.monitoring import alerts

REPO = Path(__file__).parents[2]
MANIFESTS = REPO / "manifests" / "monitoring"
RULES = MANIFESTS / alerts.RULES_FILE
PROMETHEUS_RULE = MANIFESTS / alerts.PROMETHEUS_RULE_FILE
SERVICE_MONITOR = MANIFESTS / "service-monitor.yaml"
KSM_CONFIG = MANIFESTS / "kube-state-metrics.yaml"
CRD = REPO / "crds" / "proxmoxvm.yaml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
PROMTOOL_TESTS = Path(__file__).parent / "promtool"
REGENERATE = f".venv/bin/{alerts.REGENERATE} manifests/monitoring"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in alerts.rule_groups() for rule in group["rules"]]


def ksm_config() -> dict[str, Any]:
    """The CustomResourceStateMetrics document inside the kube-state-metrics ConfigMap."""
    config_map = load_yaml(KSM_CONFIG)
    (text,) = config_map["data"].values()
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def ksm_metric_names() -> set[str]:
    """The series names kube-state-metrics makes from the config: prefix, underscore, name."""
    names: set[str] = set()
    for resource in ksm_config()["spec"]["resources"]:
        prefix = resource.get("metricNamePrefix", "kube_customresource")
        for metric in resource["metrics"]:
            names.add(f"{prefix}_{metric['name']}" if prefix else metric["name"])
    return names
