"""Draw the operator's Grafana dashboard as a PNG, without a Grafana server.

Every panel's queries go to Prometheus's HTTP API (range queries; instant ones for tables, at
the end of the range) and the answers are drawn with matplotlib in the dashboard's own grid:

    python docs/render_dashboard.py --prometheus http://127.0.0.1:9090 --minutes 30 \\
        --out docs/dashboard.png

It prints one line per panel with the number of series that had data, so an empty panel shows.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import requests
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from proxmox_vm_operator.monitoring.dashboard import (
    DEFAULT_JOB,
    GRID_COLUMNS,
    dashboard,
    expand,
)

BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
FAINT = "#8e8e9e"
GRID = "#2c3235"
# Grafana's hues, in an order that keeps neighbours apart; twelve, as many as MAX_SERIES.
PALETTE = (
    "#73bf69",
    "#f2cc0c",
    "#6ed0e0",
    "#ff780a",
    "#f2495c",
    "#5794f2",
    "#b877d9",
    "#c8f2c2",
    "#ffb357",
    "#8f3bb8",
    "#c4162a",
    "#c7d0d9",
)
COLUMN_INCHES = 16 / GRID_COLUMNS  # the picture is 16 inches wide
ROW_INCHES = 0.36  # one grid row (Grafana: 30 px plus margin)
HEADER_INCHES = 0.5


@dataclass
class Series:
    label: str
    labels: dict[str, str]
    times: list[float]
    values: list[float]


class PrometheusError(RuntimeError):
    pass


def _get(base: str, path: str, params: Mapping[str, str | float]) -> list[dict[str, Any]]:
    response = requests.get(f"{base.rstrip('/')}{path}", params=params, timeout=30)
    body = response.json()
    if body.get("status") != "success":
        raise PrometheusError(f"{params.get('query')}: {body.get('error', response.text)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _legend(fmt: str, labels: Mapping[str, str]) -> str:
    if fmt in ("", "__auto"):
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    text = fmt
    for key, value in labels.items():
        text = text.replace(f"{{{{{key}}}}}", value)
    return text


def fetch(
    panel: Mapping[str, Any],
    base: str,
    start: float,
    end: float,
    step: float,
    variables: Mapping[str, str],
) -> list[Series]:
    """Every target of `panel`, as series of finite points."""
    series: list[Series] = []
    for target in panel["targets"]:
        expr = expand(target["expr"], variables)
        if target.get("instant"):
            results = _get(base, "/api/v1/query", {"query": expr, "time": end})
            points = [[r["value"]] for r in results]
        else:
            params: dict[str, str | float] = {
                "query": expr,
                "start": start,
                "end": end,
                "step": step,
            }
            results = _get(base, "/api/v1/query_range", params)
            points = [r["values"] for r in results]
        for result, values in zip(results, points, strict=True):
            finite = [(float(t), float(v)) for t, v in values if math.isfinite(float(v))]
            if finite:
                labels = {k: v for k, v in result["metric"].items() if k != "__name__"}
                series.append(
                    Series(
                        _legend(target.get("legendFormat", ""), labels),
                        labels,
                        [t for t, _ in finite],
                        [v for _, v in finite],
                    )
                )
    return series


def _format(value: float, unit: str) -> str:
    if unit == "s":
        for size, suffix in ((3600, " h"), (60, " min"), (1, " s")):
            if abs(value) >= size:
                return f"{value / size:.3g}{suffix}"
        return f"{value * 1000:.3g} ms" if value else "0 s"
    suffix = {"opm": "/min", "ops": "/s", "reqps": " req/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


MAX_SERIES = 12  # per panel; Grafana would draw more, a picture cannot show them
LEGEND_ROW_INCHES = 0.14


def _legend_columns(series: Sequence[Series]) -> int:
    return 3 if max(len(s.label) for s in series) < 36 else 2


def query_step(start: float, end: float) -> float:
    """The range queries' step: about 240 points across the picture, at least one second."""
    return max(1, round((end - start) / 240))


def _runs(s: Series, gap: float) -> list[tuple[list[float], list[float]]]:
    """The series cut where it has no point for more than `gap` seconds: Grafana leaves a gap
    there (a rate window without samples, a quantile of no observations) rather than join the
    two sides with a line."""
    runs: list[tuple[list[float], list[float]]] = []
    previous = -math.inf
    for t, v in zip(s.times, s.values, strict=True):
        if t - previous > gap:
            runs.append(([], []))
        runs[-1][0].append(t)
        runs[-1][1].append(v)
        previous = t
    return runs


def _where_nonzero(line: Sequence[float], own: Sequence[float]) -> list[float]:
    """`line`, NaN (not drawn) where `own` and both its neighbours are zero."""
    return [y if any(own[max(0, i - 1) : i + 2]) else math.nan for i, y in enumerate(line)]


def _stacked(series: Sequence[Series]) -> tuple[list[float], list[list[float]]]:
    """The series on their common time grid, a missing point counting as zero."""
    times = sorted({t for s in series for t in s.times})
    return times, [
        [dict(zip(s.times, s.values, strict=True)).get(t, 0.0) for t in times] for s in series
    ]


def _draw_timeseries(
    ax: Axes,
    legend: Axes,
    panel: Mapping[str, Any],
    series: Sequence[Series],
    span: tuple[float, float],
    step: float,
) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    labels = [s.label for s in series]
    if defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal":
        times, values = _stacked(series)
        base = [0.0] * len(times)
        for own, color, label in zip(values, colors, labels, strict=True):
            upper = [b + v for b, v in zip(base, own, strict=True)]
            ax.fill_between(times, base, upper, color=color, alpha=0.45, lw=0, label=label)
            # Its line only where it has a height: a series at zero stacked last would
            # otherwise trace the top of the others in its own colour.
            ax.plot(times, _where_nonzero(upper, own), color=color, lw=0.8)
            base = upper
        top: float = max(base)
    else:
        for s, color, label in zip(series, colors, labels, strict=True):
            for run_times, run_values in _runs(s, 1.5 * step):
                # A lone point has no line to show it: a dot, as Grafana draws sparse data.
                marker = "o" if len(run_times) == 1 else ""
                ax.plot(run_times, run_values, color=color, lw=1.4, marker=marker, ms=2.5)
            ax.add_line(Line2D([], [], color=color, lw=1.4, label=label))  # the legend's entry
        top = max(max(s.values) for s in series)
    ax.set_xlim(*span)
    ax.set_ylim(0, top * 1.1 or 1)
    whole = all(v.is_integer() for s in series for v in s.values)
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=whole))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _format(v, defaults["unit"])))
    clock = "%H:%M" if span[1] - span[0] > 600 else "%H:%M:%S"
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{datetime.fromtimestamp(t):{clock}}"))
    ax.grid(color=GRID, lw=0.6)
    handles, labels = ax.get_legend_handles_labels()
    legend.set_axis_off()
    legend.legend(
        handles,
        labels,
        loc="upper left",
        ncols=_legend_columns(series),
        fontsize=6.5,
        frameon=False,
        labelcolor=TEXT,
        borderaxespad=0,
        handlelength=1.2,
    )


def _draw_stat(ax: Axes, panel: Mapping[str, Any], series: Sequence[Series]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    times, values = series[0].times, series[0].values
    color = PALETTE[0]
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is not None and values[-1] >= step["value"]:
            color = "#f2495c" if step["color"] == "red" else step["color"]
    ax.set_axis_off()
    if len(times) > 1:  # the sparkline under the number
        ax.fill_between(times, values, color=color, alpha=0.15, lw=0)
        ax.set_xlim(times[0], times[-1])
        ax.set_ylim(0, max(values) * 1.6 or 1)
    ax.text(
        0.5,
        0.45,
        _format(values[-1], defaults["unit"]),
        color=color,
        fontsize=22,
        ha="center",
        va="center",
        weight="bold",
        transform=ax.transAxes,
    )


def _draw_table(ax: Axes, panel: Mapping[str, Any], series: Sequence[Series]) -> None:
    unit = panel["fieldConfig"]["defaults"]["unit"]
    rows = [
        (s.labels.get("namespace", ""), s.labels.get("name", ""), _format(s.values[-1], unit))
        for s in sorted(series, key=lambda s: -s.values[-1])
    ]
    ax.set_axis_off()
    for line, row in enumerate([("namespace", "name", "Age"), *rows][:12]):
        for col, cell in enumerate(row):
            ax.text(
                0.02 + col * 0.33,
                1 - line * 0.09,
                cell,
                color=FAINT if line == 0 else TEXT,
                fontsize=8,
                weight="bold" if line == 0 else "normal",
                va="top",
                transform=ax.transAxes,
            )


def draw(
    d: Mapping[str, Any],
    data: Mapping[int, list[Series]],
    start: float,
    end: float,
    step: float | None = None,
) -> Figure:
    """The dashboard with `data` (by panel id), queried from `start` to `end` every `step` s."""
    step = query_step(start, end) if step is None else step
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in d["panels"])
    width = GRID_COLUMNS * COLUMN_INCHES
    height = rows * ROW_INCHES + HEADER_INCHES
    fig = plt.figure(figsize=(width, height), facecolor=BACKGROUND)

    def box(left: float, top: float, w: float, h: float) -> tuple[float, float, float, float]:
        """Inches from the top left corner to figure fractions."""
        return left / width, 1 - (top + h) / height, w / width, h / height

    span = f"{datetime.fromtimestamp(start):%Y-%m-%d %H:%M} to {datetime.fromtimestamp(end):%H:%M}"
    fig.text(
        0.01,
        1 - 0.3 / height,
        f"{d['title']}   {span}",
        color=TEXT,
        fontsize=12,
        va="center",
        weight="bold",
    )
    pad = 0.06  # inches around a panel
    for panel in d["panels"]:
        pos = panel["gridPos"]
        left = pos["x"] * COLUMN_INCHES + pad
        top = HEADER_INCHES + pos["y"] * ROW_INCHES + pad
        w, h = pos["w"] * COLUMN_INCHES - 2 * pad, pos["h"] * ROW_INCHES - 2 * pad
        card = fig.add_axes(box(left, top, w, h), facecolor=PANEL, xticks=[], yticks=[])
        for spine in card.spines.values():
            spine.set_color(GRID)
        card.text(
            0.1 / w,
            1 - 0.15 / h,
            panel["title"],
            color=TEXT,
            fontsize=9,
            va="center",
            transform=card.transAxes,
        )
        series = data[panel["id"]]
        # Below the title: the plot, then (time series) the legend, then a margin.
        legend_h = 0.0
        if panel["type"] == "timeseries" and series:
            if len(series) > MAX_SERIES:
                card.text(
                    1 - 0.1 / w,
                    1 - 0.15 / h,
                    f"{MAX_SERIES} of {len(series)} series drawn",
                    color=FAINT,
                    fontsize=7,
                    ha="right",
                    va="center",
                    transform=card.transAxes,
                )
            series = series[:MAX_SERIES]
            legend_h = -(-len(series) // _legend_columns(series)) * LEGEND_ROW_INCHES
        ax = fig.add_axes(box(left + 0.5, top + 0.35, w - 0.8, h - 0.62 - legend_h))
        ax.set_facecolor("none")
        ax.tick_params(colors=FAINT, labelsize=7)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if not series:
            ax.set_axis_off()
            ax.text(
                0.5, 0.5, "No data", color=FAINT, ha="center", va="center", transform=ax.transAxes
            )
        elif panel["type"] == "stat":
            _draw_stat(ax, panel, series)
        elif panel["type"] == "table":
            _draw_table(ax, panel, series)
        else:
            legend = fig.add_axes(box(left + 0.1, top + h - legend_h - 0.08, w - 0.2, legend_h))
            _draw_timeseries(ax, legend, panel, series, (start, end), step)
    return fig


def render(
    prometheus: str,
    start: float,
    end: float,
    out: Path,
    job: str = DEFAULT_JOB,
    scrape_interval: float = 30,
) -> dict[str, int]:
    """Query, draw and write the PNG; returns, by panel title, how many series had data."""
    d = dashboard()
    step = query_step(start, end)
    # As Grafana computes them: the rate window spans at least four scrapes.
    rate_interval = max(step + scrape_interval, 4 * scrape_interval)
    variables = {
        "job": job,
        "__rate_interval": f"{round(rate_interval)}s",
        "__range": f"{round(end - start)}s",
    }
    data = {p["id"]: fetch(p, prometheus, start, end, step, variables) for p in d["panels"]}
    fig = draw(d, data, start, end, step)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, facecolor=BACKGROUND)
    plt.close(fig)
    return {p["title"]: len(data[p["id"]]) for p in d["panels"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=30, help="range ending now (default 30)")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--job", default=DEFAULT_JOB, help=f"scrape job (default {DEFAULT_JOB})")
    parser.add_argument(
        "--scrape-interval", type=float, default=30, help="seconds, for rate windows (default 30)"
    )
    args = parser.parse_args(argv)
    end = time.time()
    try:
        report = render(
            args.prometheus, end - args.minutes * 60, end, args.out, args.job, args.scrape_interval
        )
    except (requests.RequestException, PrometheusError) as error:
        print(f"render_dashboard: {error}", file=sys.stderr)
        return 1
    for title, count in report.items():
        print(f"{count:4d} series  {title}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
