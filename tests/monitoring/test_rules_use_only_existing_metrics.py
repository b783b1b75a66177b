"""Every series the rules read exists: the operator's from its metrics module, the
kube-state-metrics ones from our kube-state-metrics config, and up."""

from __future__ import annotations

from typing import Any

import pytest

import proxmox_vm_operator.metrics  # noqa: F401  (registers the operator's metrics)

from ..promql import exposed_names, metric_names
from .tools import all_rules, ksm_metric_names

PROMETHEUS_OWN = {"up"}
KNOWN = exposed_names() | ksm_metric_names() | PROMETHEUS_OWN


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule["alert"])
def test_rule_reads_only_series_that_exist(rule: dict[str, Any]) -> None:
    used = metric_names(rule["expr"])
    assert used, f"found no series in {rule['expr']!r}"
    assert used <= KNOWN, f"unknown series: {sorted(used - KNOWN)}"


def test_rules_read_all_three_sources() -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in all_rules()))
    assert used & exposed_names()
    assert used & ksm_metric_names()
    assert "up" in used


def test_operator_series_include_the_design_contract() -> None:
    assert {
        "proxmoxvm_destroy_duration_seconds_bucket",
        "proxmoxvm_destroy_started_timestamp_seconds",
        "proxmoxvm_destroys_in_progress",
        "proxmoxvm_destroys_stalled",
        "proxmoxvm_destroy_fallback_total",
        "proxmoxvm_destroy_errors_total",
        "proxmox_api_request_duration_seconds_count",
        "proxmox_task_duration_seconds_bucket",
        "proxmoxvm_reconcile_total",
        "proxmoxvm_objects",
    } <= exposed_names()


@pytest.mark.parametrize(
    "expr, names",
    [
        (
            'sum by (reason) (rate(a_total{code=~"5..", x="y(z)"}[5m] offset 1h)) > 0.5',
            {"a_total"},
        ),
        ("time() - min by (namespace, name) (b) > 900 unless on (namespace, name) c", {"b", "c"}),
        ('absent(up{job="j"} == 1) or vector(1e3) > bool d', {"up", "d"}),
        ("histogram_quantile(0.9, sum without (pod) (rate(h_bucket[1h:5m])))", {"h_bucket"}),
        ("SUM BY (job) (i OFFSET 5m) AND ON (job) j atan2 k", {"i", "j", "k"}),
    ],
)
def test_metric_names_finds_series_and_skips_functions_labels_and_numbers(
    expr: str, names: set[str]
) -> None:
    assert metric_names(expr) == names
