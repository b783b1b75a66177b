"""The Grafana dashboard: committed output, Grafana structure, valid PromQL, existing metrics."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

import proxmox_vm_operator.metrics  # noqa: F401  (registers the operator's metrics)
from proxmox_vm_operator.monitoring.dashboard import (
    DEFAULT_JOB,
    dashboard,
    expand,
    panel_queries,
    render_json,
)

from ..promql import exposed_names, metric_names
from ..tools import require_tool
from .tools import promtool_check, unknown_metrics

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "manifests" / "monitoring" / "grafana-dashboard.json"
REGENERATE = (
    "python -m proxmox_vm_operator.monitoring.dashboard"
    " > manifests/monitoring/grafana-dashboard.json"
)
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"job": DEFAULT_JOB, "__rate_interval": "2m", "__range": "6h"}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard()


def test_committed_json_is_the_generators_output(board: dict[str, Any]) -> None:
    assert COMMITTED.read_text() == render_json(board), (
        f"{COMMITTED.relative_to(ROOT)} is stale; regenerate it with: {REGENERATE}"
    )


def test_rendering_is_stable_text(board: dict[str, Any]) -> None:
    text = render_json(board)
    assert text == render_json(json.loads(text))
    assert text.endswith("}\n")


def test_dashboard_has_identity_variables_and_tags(board: dict[str, Any]) -> None:
    assert board["title"] == "proxmox-vm-operator"
    assert board["uid"] == "proxmox-vm-operator"
    assert board["schemaVersion"] >= 39
    assert board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["current"]["value"] == DEFAULT_JOB
    assert variables["job"]["datasource"]["uid"] == "${datasource}"


def test_panel_ids_are_unique(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_24_column_grid_without_overlapping(board: dict[str, Any]) -> None:
    def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, panel["title"]
        assert g["x"] + g["w"] <= 24, f"{panel['title']} goes past column 24"
        return {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }

    for a, b in itertools.combinations(board["panels"], 2):
        assert not cells(a) & cells(b), f"{a['title']} overlaps {b['title']}"


def test_every_panel_queries_the_datasource_variable(board: dict[str, Any]) -> None:
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert '{job="$job"' in target["expr"], f"{panel['title']}: not scoped to $job"


def test_panels_have_units(board: dict[str, Any]) -> None:
    units = {p["title"]: p["fieldConfig"]["defaults"]["unit"] for p in board["panels"]}
    assert units["Destroy duration by mode"] == "s"
    assert units["Destroys in flight by object"] == "s"
    assert units["Proxmox API latency by endpoint"] == "s"
    assert units["Proxmox API errors by code"] == "reqps"


def test_every_query_is_valid_promql(board: dict[str, Any], tmp_path: Path) -> None:
    exprs = [expand(expr, GRAFANA_VARIABLES) for _, expr in panel_queries(board)]
    result = promtool_check(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rejects_invalid_promql(tmp_path: Path) -> None:
    result = promtool_check(["sum(rate(proxmoxvm_objects[5m])"], tmp_path)
    assert result.returncode != 0


def test_every_metric_a_query_uses_is_registered_by_the_operator(board: dict[str, Any]) -> None:
    known = exposed_names()
    missing = {
        f"{title}: {sorted(unknown)}"
        for title, expr in panel_queries(board)
        if (unknown := unknown_metrics(expr, known))
    }
    assert not missing, "queries use metrics proxmox_vm_operator.metrics does not register"


def test_the_job_variable_lists_jobs_by_an_operator_metric(board: dict[str, Any]) -> None:
    job = next(v for v in board["templating"]["list"] if v["name"] == "job")
    selector = job["query"]["query"].removeprefix("label_values(").split(",")[0]
    assert selector in exposed_names()


def test_every_query_selects_at_least_one_metric(board: dict[str, Any]) -> None:
    for title, expr in panel_queries(board):
        assert metric_names(expr), f"{title}: no metric found in {expr}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.9, sum by (le, code) (rate(a_bucket{job="$job", '
            'code!~"2.."}[5m])))',
            {"a_bucket"},
        ),
        ("max(time() - b{x='y'}) or vector(0)", {"b"}),
        (
            "60 * sum(c_total offset 5m) without (instance) / on (job) group_left d",
            {"c_total", "d"},
        ),
        ('e:recorded > bool 1e3 unless f{name="by (g)"}', {"e:recorded", "f"}),
    ],
)
def test_metric_names_are_extracted_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_misspelt_metric_in_a_query_is_reported(board: dict[str, Any]) -> None:
    known = exposed_names()
    for title, expr in panel_queries(board):
        typo = expr.replace("proxmox", "proxmx", 1)
        assert unknown_metrics(typo, known), f"{title}: a typo in {expr} went unnoticed"
    bad = 'sum(rate(proxmoxvm_destroy_duraton_seconds_count{job="$job"}[5m]))'
    assert unknown_metrics(bad, known) == {"proxmoxvm_destroy_duraton_seconds_count"}


def test_a_missing_suffix_is_reported() -> None:
    known = exposed_names()
    assert unknown_metrics("rate(proxmoxvm_destroy_duration_seconds[5m])", known)
    assert unknown_metrics("rate(proxmoxvm_destroy_fallback[5m])", known)
    assert not unknown_metrics("rate(proxmoxvm_destroy_fallback_total[5m])", known)


def test_grafana_variables_are_substituted_and_unknown_ones_refused() -> None:
    assert expand('x{job="$job"}[${__range}]', {"job": "j", "__range": "1h"}) == 'x{job="j"}[1h]'
    with pytest.raises(KeyError, match="__interval"):
        expand("rate(x[$__interval])", GRAFANA_VARIABLES)


def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="promtool is required in CI"):
        require_tool("promtool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_tool("promtool")
