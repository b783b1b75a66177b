"""The Grafana dashboard of the operator, generated as data.

`dashboard()` builds the dashboard (Grafana's classic JSON model), `render_json()` turns it into
the stable text committed as `manifests/monitoring/grafana-dashboard.json`, and
`panel_queries()` lists every query, for the tests and for `docs/render_dashboard.py`.

Queries use three Grafana variables: `$job` (the scrape job, a dashboard variable),
`$__rate_interval` and `$__range` (Grafana's own); `expand()` substitutes them for tools that
send the queries to Prometheus directly.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UID = "proxmox-vm-operator"
TITLE = "proxmox-vm-operator"
SCHEMA_VERSION = 39  # Grafana 10.4 and 11; newer releases migrate it on load
DEFAULT_JOB = "proxmox-vm-operator-metrics"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24

J = '{job="$job"}'  # the selector every query starts from
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    kind: str  # timeseries | stat | table
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # more fieldConfig.defaults
    extra: dict[str, Any] = field(default_factory=dict)  # more panel keys


def _timeseries(
    title: str, description: str, *targets: Target, unit: str = "short", stack: bool = False
) -> Panel:
    custom = {
        "fillOpacity": 30 if stack else 10,
        "stacking": {"mode": "normal" if stack else "none"},
    }
    return Panel(
        "timeseries",
        title,
        description,
        targets,
        unit,
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        defaults={"custom": custom},
    )


def _stat(
    title: str, description: str, expr: str, unit: str = "short", red_from: float | None = None
) -> Panel:
    """A single number; red from `red_from` on (when given), green below."""
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_from is not None:
        steps.append({"color": "red", "value": red_from})
    return Panel(
        "stat",
        title,
        description,
        (Target(expr),),
        unit,
        width=6,
        height=4,
        options={
            "colorMode": "value",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        defaults={"thresholds": {"mode": "absolute", "steps": steps}},
    )


def _quantiles(metric: str, by: str, quantiles: tuple[float, ...]) -> tuple[Target, ...]:
    """histogram_quantile over the rate of `metric`_bucket, one target per quantile."""
    labels = ", ".join(by.split())
    legend = " ".join(f"{{{{{label}}}}}" for label in by.split())
    return tuple(
        Target(
            f"histogram_quantile({q}, sum by ({labels}, le) (rate({metric}_bucket{J}{RATE})))",
            f"p{round(q * 100)} {legend}",
        )
        for q in quantiles
    )


def _per_minute(expr: str, legend: str) -> Target:
    return Target(f"60 * {expr}", legend)


def _panels() -> list[list[Panel]]:
    """The dashboard, row by row; each row's widths add up to at most 24 columns."""
    started = f"proxmoxvm_destroy_started_timestamp_seconds{J}"
    api = "proxmox_api_request_duration_seconds"
    return [
        [
            _stat(
                "Destroys in flight",
                "ProxmoxVM objects being deleted whose finalizer is not released yet.",
                f"count({started}) or vector(0)",
            ),
            _stat(
                "Stalled destroys",
                "Destroys with DeletionStalled=True: they need attention.",
                f"sum(proxmoxvm_destroys_stalled{J}) or vector(0)",
                red_from=1,
            ),
            _stat(
                "Oldest destroy in flight",
                "Age of the longest-running destroy.",
                f"max(time() - {started}) or vector(0)",
                unit="s",
            ),
            _stat(
                "Shutdown fallbacks in range",
                "Graceful shutdowns that timed out and were forced, over the dashboard's range.",
                # increase() extrapolates: round to whole fallbacks.
                f"round(sum(increase(proxmoxvm_destroy_fallback_total{J}[$__range])))",
                red_from=1,
            ),
        ],
        [
            Panel(
                "table",
                "Destroys in flight by object",
                "Each destroy in flight and how long ago it started.",
                (Target(f"max by (namespace, name) (time() - {started})", instant=True),),
                "s",
                options={"showHeader": True, "sortBy": [{"displayName": "Age", "desc": True}]},
                extra={
                    "transformations": [
                        {
                            "id": "organize",
                            "options": {
                                "excludeByName": {"Time": True},
                                "indexByName": {"namespace": 0, "name": 1, "Value": 2},
                                "renameByName": {"Value": "Age"},
                            },
                        }
                    ]
                },
            ),
            _timeseries(
                "Destroys in progress by step",
                "Destroys in flight, by the step they are at.",
                Target(f"sum by (step) (proxmoxvm_destroys_in_progress{J})", "{{step}}"),
                stack=True,
            ),
        ],
        [
            _timeseries(
                "Stalled destroys by reason",
                "Destroys with DeletionStalled=True, by reason.",
                Target(f"sum by (reason) (proxmoxvm_destroys_stalled{J})", "{{reason}}"),
                stack=True,
            ),
            _timeseries(
                "Destroy errors by reason",
                "Destroy passes that ended in an error, per minute.",
                _per_minute(
                    f"sum by (reason) (rate(proxmoxvm_destroy_errors_total{J}{RATE}))",
                    "{{reason}}",
                ),
                unit="opm",
            ),
        ],
        [
            _timeseries(
                "Destroy duration by mode",
                "deletionTimestamp to finalizer release: p50, p90 and p99 by destroy mode.",
                *_quantiles("proxmoxvm_destroy_duration_seconds", "mode", (0.5, 0.9, 0.99)),
                unit="s",
            ),
            _timeseries(
                "Destroy duration by outcome",
                "deletionTimestamp to finalizer release: p50, p90 and p99 by outcome.",
                *_quantiles("proxmoxvm_destroy_duration_seconds", "outcome", (0.5, 0.9, 0.99)),
                unit="s",
            ),
        ],
        [
            _timeseries(
                "Destroy outcomes",
                "Finalizers released per minute, by outcome and mode.",
                _per_minute(
                    "sum by (outcome, mode) "
                    f"(rate(proxmoxvm_destroy_duration_seconds_count{J}{RATE}))",
                    "{{outcome}} ({{mode}})",
                ),
                unit="opm",
                stack=True,
            ),
            _timeseries(
                "Shutdown fallbacks",
                "Graceful shutdowns that ran out of time and were forced, per minute.",
                _per_minute(f"sum(rate(proxmoxvm_destroy_fallback_total{J}{RATE}))", "fallbacks"),
                unit="opm",
            ),
        ],
        [
            _timeseries(
                "Proxmox API latency by endpoint",
                "p99 latency of Proxmox VE API calls, by method and templated path.",
                *_quantiles(api, "method endpoint", (0.99,)),
                unit="s",
            ),
            _timeseries(
                "Proxmox API errors by code",
                'Proxmox VE API calls that did not answer 2xx, by HTTP status ("error": no '
                "answer at all).",
                Target(
                    f'sum by (code) (rate({api}_count{{job="$job", code!~"2.."}}{RATE}))',
                    "{{code}}",
                ),
                unit="reqps",
                stack=True,
            ),
        ],
        [
            _timeseries(
                "Proxmox task duration by type",
                "p50 and p90 duration of Proxmox tasks started by the operator, by type/status.",
                *_quantiles("proxmox_task_duration_seconds", "type status", (0.5, 0.9)),
                unit="s",
            ),
            _timeseries(
                "Proxmox tasks by type",
                "Proxmox tasks finished per minute, by type and final status.",
                _per_minute(
                    f"sum by (type, status) (rate(proxmox_task_duration_seconds_count{J}{RATE}))",
                    "{{type}} {{status}}",
                ),
                unit="opm",
                stack=True,
            ),
        ],
        [
            _timeseries(
                "Reconcile results",
                "Reconcile passes per second, by result.",
                Target(f"sum by (result) (rate(proxmoxvm_reconcile_total{J}{RATE}))", "{{result}}"),
                unit="ops",
                stack=True,
            ),
            _timeseries(
                "ProxmoxVM objects by phase",
                "ProxmoxVM objects watched by the operator, by status.phase.",
                Target(f"sum by (phase) (proxmoxvm_objects{J})", "{{phase}}"),
                stack=True,
            ),
        ],
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for index, target in enumerate(panel.targets):
        item: dict[str, Any] = {
            "datasource": DATASOURCE,
            "expr": target.expr,
            "legendFormat": target.legend or "__auto",
            "refId": chr(ord("A") + index),
        }
        if target.instant:
            item |= {"format": "table", "instant": True, "range": False}
        else:
            item |= {"instant": False, "range": True}
        targets.append(item)
    return {
        "datasource": DATASOURCE,
        "description": panel.description,
        "fieldConfig": {
            "defaults": {"min": 0, "unit": panel.unit, **panel.defaults},
            "overrides": [],
        },
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "id": panel_id,
        "options": panel.options,
        "targets": targets,
        "title": panel.title,
        "type": panel.kind,
        **panel.extra,
    }


def _layout(rows: list[list[Panel]]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in rows:
        x = 0
        for panel in row:
            panels.append(_panel_json(panel, len(panels) + 1, x, y))
            x += panel.width
        if x > GRID_COLUMNS:
            raise ValueError(f"row at y={y} is {x} columns wide")
        y += max(panel.height for panel in row)
    return panels


def _templating() -> dict[str, Any]:
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }
    job = {
        "name": "job",
        "label": "Job",
        "type": "query",
        "datasource": DATASOURCE,
        # An unlabelled counter: exported from start-up, so every operator job shows up.
        "definition": "label_values(proxmoxvm_destroy_fallback_total, job)",
        "query": {
            "qryType": 1,
            "query": "label_values(proxmoxvm_destroy_fallback_total, job)",
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "current": {"selected": False, "text": DEFAULT_JOB, "value": DEFAULT_JOB},
        "hide": 0,
        "refresh": 2,
        "regex": "",
        "sort": 1,
    }
    return {"list": [datasource, job]}


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    return {
        "annotations": {"list": []},
        "description": "Destroys, Proxmox API calls and tasks, and reconciles of "
        "proxmox-vm-operator.",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": _layout(_panels()),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["proxmox", "proxmox-vm-operator", "kubernetes"],
        "templating": _templating(),
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": TITLE,
        "uid": UID,
        "version": 1,
    }


def render_json(d: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, a final newline."""
    return json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def panel_queries(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, in layout order."""
    return [
        (str(panel["title"]), str(target["expr"]))
        for panel in d["panels"]
        for target in panel.get("targets", [])
    ]


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with `$name` and `${name}` replaced; a variable missing from `variables` is an
    error, so a query cannot reach Prometheus with Grafana syntax left in it."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(value, expr)


if __name__ == "__main__":
    sys.stdout.write(render_json(dashboard()))
