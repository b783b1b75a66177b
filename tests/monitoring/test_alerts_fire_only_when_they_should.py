"""promtool unit tests: each alert fires on the series it is for, with its labels and text, and
stays quiet on the series it is not for. The cases are the YAML files in promtool/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ..promql import run_promtool
from .tools import PROMTOOL_TESTS, RULES, all_rules, load_yaml

TEST_FILES = sorted(PROMTOOL_TESTS.glob("*.test.yaml"))


def _cases() -> list[dict[str, Any]]:
    return [
        case
        for path in TEST_FILES
        for group in load_yaml(path)["tests"]
        for case in group.get("alert_rule_test", [])
    ]


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_promtool_unit_tests_pass(path: Path) -> None:
    result = run_promtool("test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_promtool_unit_tests_read_the_committed_rules_file(path: Path) -> None:
    rule_files = load_yaml(path)["rule_files"]
    assert [(path.parent / f).resolve() for f in rule_files] == [RULES.resolve()]


def test_every_alert_has_a_case_where_it_fires() -> None:
    firing = {case["alertname"] for case in _cases() if case.get("exp_alerts")}
    assert {rule["alert"] for rule in all_rules()} <= firing


def test_every_alert_has_a_case_where_it_stays_quiet() -> None:
    quiet = {case["alertname"] for case in _cases() if not case.get("exp_alerts")}
    assert {rule["alert"] for rule in all_rules()} <= quiet


def test_a_wrong_expectation_fails_the_promtool_run(tmp_path: Path) -> None:
    """The unit tests can fail: expecting an alert where none fires is reported."""
    case = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="proxmox-vm-operator-metrics"}', "values": "1x20"}
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "ProxmoxVMOperatorAbsent",
                        "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "wrong.test.yaml"
    path.write_text(yaml.safe_dump(case), encoding="utf-8")
    result = run_promtool("test", "rules", path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
