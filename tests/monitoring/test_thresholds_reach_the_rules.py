"""AlertThresholds and the other parameters change the rules they are meant to change, so an
end-to-end test can run the same expressions with thresholds of a few seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxmox_vm_operator.monitoring import alerts

from ..promql import run_promtool

SHORT = alerts.AlertThresholds(
    destroy_stuck_seconds=5, destroy_stuck_for="0s", deletion_stuck_seconds=5
)


def _rule(name: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    for group in groups:
        for rule in group["rules"]:
            if rule["alert"] == name:
                return dict(rule)
    raise AssertionError(f"no alert {name}")


def test_a_destroy_stuck_threshold_of_seconds_fires_in_seconds(tmp_path: Path) -> None:
    rules = tmp_path / "short.rules.yaml"
    rules.write_text(alerts.render_yaml(alerts.rules_file(SHORT)), encoding="utf-8")
    started = (
        'proxmoxvm_destroy_started_timestamp_seconds{job="proxmox-vm-operator-metrics",'
        'namespace="lab",name="web-1"}'
    )
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [{"series": started, "values": "0x20"}],
                "alert_rule_test": [
                    {"eval_time": "5s", "alertname": "ProxmoxVMDestroyStuck", "exp_alerts": []},
                    {
                        "eval_time": "6s",
                        "alertname": "ProxmoxVMDestroyStuck",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "lab",
                                    "name": "web-1",
                                },
                                "exp_annotations": {
                                    "summary": "ProxmoxVM lab/web-1 has been deleting for more"
                                    " than 5s",
                                    "description": _rule(
                                        "ProxmoxVMDestroyStuck", alerts.rule_groups(SHORT)
                                    )["annotations"]["description"]
                                    .replace("{{ $labels.namespace }}", "lab")
                                    .replace("{{ $labels.name }}", "web-1")
                                    .replace("{{ $value | humanizeDuration }}", "6s"),
                                    "runbook_url": "docs/runbooks.md#proxmoxvmdestroystuck",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "short.test.yaml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    result = run_promtool("test", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_appear_in_expressions_and_durations() -> None:
    thresholds = alerts.AlertThresholds(
        destroy_stuck_seconds=42,
        deletion_stuck_seconds=43,
        deletion_stuck_for="3s",
        fallback_count=7,
        fallback_window="2h",
        unreachable_window="30s",
        reconcile_stalled_window="45s",
        operator_absent_for="20s",
    )
    groups = alerts.rule_groups(thresholds)
    assert "> 42" in str(_rule("ProxmoxVMDestroyStuck", groups)["expr"])
    deletion = _rule("ProxmoxVMDeletionStuck", groups)
    assert "> 43" in str(deletion["expr"]) and deletion["for"] == "3s"
    fallbacks = str(_rule("ProxmoxVMDestroyFallbacksRepeated", groups)["expr"])
    assert "[2h]" in fallbacks and ">= 7" in fallbacks
    assert str(_rule("ProxmoxVMProxmoxUnreachable", groups)["expr"]).count("[30s]") == 2
    assert "[45s]" in str(_rule("ProxmoxVMReconcileStalled", groups)["expr"])
    assert _rule("ProxmoxVMOperatorAbsent", groups)["for"] == "20s"


def test_a_zero_for_is_left_out() -> None:
    assert "for" not in _rule("ProxmoxVMDestroyStuck", alerts.rule_groups(SHORT))


def test_runbook_base_and_job_are_parameters() -> None:
    groups = alerts.rule_groups(runbook_base="https://example.org/runbooks", job="pvm-operator")
    for group in groups:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            assert url == f"https://example.org/runbooks#{rule['alert'].lower()}"
    assert 'job="pvm-operator"' in str(_rule("ProxmoxVMOperatorAbsent", groups)["expr"])


@pytest.mark.parametrize(
    "field, value",
    [
        ("destroy_stuck_for", "5 minutes"),
        ("unreachable_window", "5"),
        ("operator_absent_for", ""),
        ("destroy_stuck_seconds", 0),
        ("fallback_count", -1),
        ("deletion_stuck_seconds", 1.5),
    ],
)
def test_invalid_thresholds_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        alerts.AlertThresholds(**{field: value})  # type: ignore[arg-type]
