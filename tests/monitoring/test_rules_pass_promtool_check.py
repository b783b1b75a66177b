"""promtool accepts the rules: the plain file, the PrometheusRule's spec, and short thresholds."""

from __future__ import annotations

from pathlib import Path

import yaml

from proxmox_vm_operator.monitoring import alerts

from ..promql import run_promtool
from .tools import PROMETHEUS_RULE, RULES, load_yaml


def _check(path: Path) -> None:
    result = run_promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in load_yaml(path)["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_plain_rules_file_passes_promtool_check() -> None:
    _check(RULES)


def test_prometheus_rule_spec_passes_promtool_check(tmp_path: Path) -> None:
    spec = load_yaml(PROMETHEUS_RULE)["spec"]
    path = tmp_path / "prometheus-rule-spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    _check(path)


def test_rules_with_thresholds_of_seconds_pass_promtool_check(tmp_path: Path) -> None:
    thresholds = alerts.AlertThresholds(
        destroy_stuck_seconds=5,
        destroy_stuck_for="0s",
        deletion_stuck_seconds=5,
        deletion_stuck_for="2s",
        destroy_stalled_for="1s",
        permission_denied_for="1s",
        fallback_count=1,
        fallback_window="30s",
        unreachable_window="10s",
        unreachable_for="5s",
        reconcile_stalled_window="10s",
        reconcile_stalled_for="5s",
        operator_absent_for="5s",
    )
    path = tmp_path / "short.rules.yaml"
    path.write_text(alerts.render_yaml(alerts.rules_file(thresholds)), encoding="utf-8")
    _check(path)


def test_a_broken_rules_file_fails_promtool_check(tmp_path: Path) -> None:
    """The check above can fail: promtool rejects an expression that does not parse."""
    doc = alerts.rules_file()
    doc["groups"][0]["rules"][0]["expr"] = "time() - min by (namespace name) (x)"
    path = tmp_path / "broken.rules.yaml"
    path.write_text(alerts.render_yaml(doc), encoding="utf-8")
    assert run_promtool("check", "rules", path).returncode != 0
