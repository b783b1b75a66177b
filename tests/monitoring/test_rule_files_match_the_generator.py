"""The committed rule files are exactly what monitoring/alerts.py generates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxmox_vm_operator.monitoring import alerts

from .tools import MANIFESTS, PROMETHEUS_RULE, REGENERATE, RULES, load_yaml


@pytest.mark.parametrize("name", sorted(alerts.rendered_files()))
def test_committed_rule_file_is_fresh(name: str) -> None:
    path = MANIFESTS / name
    expected = alerts.rendered_files()[name]
    assert path.exists(), f"{path} is missing; generate it with: {REGENERATE}"
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path} differs from monitoring/alerts.py; regenerate it with: {REGENERATE}"
    )


def test_rendered_yaml_reads_back_as_the_same_data() -> None:
    doc = alerts.rules_file()
    assert yaml.safe_load(alerts.render_yaml(doc)) == doc


def test_prometheus_rule_carries_the_same_groups_as_the_plain_file() -> None:
    plain = load_yaml(RULES)
    custom = load_yaml(PROMETHEUS_RULE)
    assert custom["apiVersion"] == "monitoring.coreos.com/v1"
    assert custom["kind"] == "PrometheusRule"
    assert custom["metadata"]["namespace"] == "proxmox-vm-operator"
    assert custom["spec"]["groups"] == plain["groups"]


def test_prometheus_rule_namespace_is_a_parameter() -> None:
    assert alerts.prometheus_rule(namespace="monitoring")["metadata"]["namespace"] == "monitoring"


def test_writing_the_files_reproduces_the_committed_ones(tmp_path: Path) -> None:
    written = alerts.write_rule_files(tmp_path)
    assert sorted(p.name for p in written) == sorted(alerts.rendered_files())
    for path in written:
        assert path.read_text(encoding="utf-8") == (MANIFESTS / path.name).read_text("utf-8")
