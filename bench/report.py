"""The benchmark's report: the performance goals held against a run, and the run rendered as
Markdown (bench-results/report.md, and the tables printed at the end) from its JSON data
(bench-results/report.json). Pure functions of that data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import figures as fig

GOAL_RATIO = 1.25
GOAL_OVERHEAD = 0.3
GOAL_PROXMOX_PER_DESTROY = 7
GOAL_KUBE_WRITES_PER_DESTROY = 4
GOAL_IDLE_RSS_MIB = 200
GOAL_IDLE_CPU_PERCENT = 2
GOAL_IDLE_PROXMOX_PER_SECOND = 1
GOAL_BULK_N = 500
GOAL_BULK_NODES = 4
GOAL_IDLE_N = 1000
K = 4

# ---------------------------------------------------------------------------- formatting


def fmt_seconds(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fmt_number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.{digits}f}"


def fmt_percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def fmt_summary(data: Mapping[str, Any] | None, unit: str = " s", digits: int = 2) -> str:
    """``2.30 s (2.10-2.50)``: the median, then min-max when there was more than one."""
    if not data:
        return "—"
    summary = fig.Summary.from_dict(data)
    median = f"{summary.median:.{digits}f}{unit}"
    if summary.n < 2:
        return median
    return f"{median} ({summary.low:.{digits}f}-{summary.high:.{digits}f})"


def fmt_breakdown(counts: Mapping[str, int] | None) -> str:
    if not counts:
        return "—"
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{kind} {count}" for kind, count in ordered)


def fmt_met(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- goals


def _median(data: Mapping[str, Any] | None) -> float | None:
    return None if not data else float(data["median"])


def _bulk_goals(bulk: Sequence[Mapping[str, Any]]) -> list[fig.Goal]:
    goal_rows = [r for r in bulk if r["n"] == GOAL_BULK_N and r["nodes"] == GOAL_BULK_NODES]
    ratio_results: list[bool | None] = []
    parts = []
    for row in goal_rows:
        phases = []
        for phase in ("create", "delete"):
            data = row[phase]
            if data.get("capped"):
                ratio_results.append(False)
                phases.append(f"{phase} cut off after {data['finished']}/{row['n']}")
            else:
                ratio_results.append(fig.at_most(data.get("ratio"), GOAL_RATIO))
                phases.append(f"{phase} {fmt_ratio(data.get('ratio'))}")
        parts.append(f"{'with' if row['vmid'] else 'without'} vmid: {', '.join(phases)}")
    ratio_goal = fig.Goal(
        f"bulk {GOAL_BULK_N} over {GOAL_BULK_NODES} nodes, k = {K}: makespan",
        f"≤ {GOAL_RATIO} x ideal",
        "; ".join(parts) if parts else f"not run (N = {GOAL_BULK_N} is in the full set)",
        fig.all_of(ratio_results) if goal_rows else None,
    )
    peaks = [
        (row, phase, max(row[phase].get("peak_per_node", {}).values(), default=0))
        for row in bulk
        for phase in ("create", "delete")
    ]
    worst = max((p for _, _, p in peaks), default=None)
    peak_goal = fig.Goal(
        "bulk, every size: tasks in flight per node",
        f"never more than k = {K}",
        f"at most {worst} (over {len(bulk)} runs)" if bulk else "not run",
        fig.at_most(worst, K) if bulk else None,
    )
    leaks = [row["delete"].get("leaked") for row in bulk]
    extra = [row["create"].get("vms_after", row["n"]) - row["n"] for row in bulk]
    known = [leak for leak in leaks if leak is not None]
    leak_text = (
        f"{sum(known)} VMs left after {len(known)} complete deletes"
        + (f"; {len(leaks) - len(known)} deletes cut off" if len(known) < len(leaks) else "")
        + (f"; {sum(e for e in extra if e > 0)} VMs beyond N after creates" if any(extra) else "")
    )
    leak_goal = fig.Goal(
        "bulk, every size: nothing leaked",
        "0 VMs left, none beyond N",
        leak_text if bulk else "not run",
        (fig.all_of([*(leak == 0 for leak in known), *(e <= 0 for e in extra)]) if known else None)
        if bulk
        else None,
    )
    return [ratio_goal, peak_goal, leak_goal]


def goals(results: Mapping[str, Any]) -> list[fig.Goal]:
    out = _bulk_goals(results.get("bulk") or [])
    single = results.get("single") or {}
    settings = single.get("settings") or []
    overheads = [(s["setting"], _median(s.get("overhead"))) for s in settings]
    out.append(
        fig.Goal(
            "single Stop destroy: our overhead, median",
            f"≤ {GOAL_OVERHEAD} s at every task-time setting",
            "; ".join(f"{label}: {fmt_seconds(value)}" for label, value in overheads) or "not run",
            fig.all_of(fig.at_most(v, GOAL_OVERHEAD) for _, v in overheads) if overheads else None,
        )
    )
    shutdown = results.get("shutdown")
    if shutdown:
        limit = shutdown["floor_seconds"] + GOAL_OVERHEAD
        total = _median(shutdown.get("total"))
        got = shutdown.get("guest_got")
        least = None if not got else float(got["low"])
        measured = (
            f"total {fmt_seconds(total)} (limit {limit:.2f} s); guest got ≥ {fmt_seconds(least)}"
        )
        met = fig.all_of(
            [fig.at_most(total, limit), fig.at_least(least, shutdown["shutdown_timeout"])]
        )
    else:
        measured, met = "not run", None
    out.append(
        fig.Goal(
            "Shutdown on a hung guest, T = 3 s",
            "total ≤ T + stop + delete + 0.3 s; the guest gets ≥ T",
            measured,
            met,
        )
    )
    destroy = (single.get("requests") or {}).get("destroy")
    if destroy:
        proxmox, writes = _median(destroy.get("proxmox")), _median(destroy.get("kube_writes"))
        measured = f"{fmt_number(proxmox)} Proxmox requests, {fmt_number(writes)} Kubernetes writes"
        met = fig.all_of(
            [
                fig.at_most(proxmox, GOAL_PROXMOX_PER_DESTROY),
                fig.at_most(writes, GOAL_KUBE_WRITES_PER_DESTROY),
            ]
        )
    else:
        measured, met = "not run", None
    out.append(
        fig.Goal(
            "requests per Stop destroy of a running VM",
            f"≤ {GOAL_PROXMOX_PER_DESTROY} Proxmox, ≤ {GOAL_KUBE_WRITES_PER_DESTROY} "
            "Kubernetes writes",
            measured,
            met,
        )
    )
    idle = results.get("idle")
    if idle:
        judged = idle["objects"] == GOAL_IDLE_N and idle.get("all_ready")
        measured = (
            f"{idle['objects']} objects: RSS {idle['rss_mib']:.0f} MiB, "
            f"CPU {idle['cpu_percent']:.1f} %, {idle['proxmox_per_second']:.2f} Proxmox req/s"
        )
        met = (
            fig.all_of(
                [
                    fig.at_most(idle["rss_mib"], GOAL_IDLE_RSS_MIB),
                    fig.at_most(idle["cpu_percent"], GOAL_IDLE_CPU_PERCENT),
                    fig.at_most(idle["proxmox_per_second"], GOAL_IDLE_PROXMOX_PER_SECOND),
                ]
            )
            if judged
            else None
        )
    else:
        measured, met = "not run", None
    out.append(
        fig.Goal(
            f"{GOAL_IDLE_N} idle Ready objects",
            f"RSS ≤ {GOAL_IDLE_RSS_MIB} MiB, CPU ≤ {GOAL_IDLE_CPU_PERCENT} % of a core, "
            f"≤ {GOAL_IDLE_PROXMOX_PER_SECOND} Proxmox request/s",
            measured,
            met,
        )
    )
    return out


# ------------------------------------------------------------------------------ sections


def goals_table(goal_list: Sequence[fig.Goal]) -> str:
    return table(
        ("goal", "target", "measured", ""),
        ((g.goal, g.target, g.measured, fmt_met(g.met)) for g in goal_list),
    )


def single_table(single: Mapping[str, Any]) -> str:
    rows = []
    for s in single.get("settings") or []:
        times = s["task_times"]
        rows.append(
            (
                s["setting"],
                f"{times['stop']:g} + {times['destroy']:g} s",
                fmt_summary(s.get("total")),
                fmt_summary(s.get("task_seconds")),
                fmt_summary(s.get("overhead")),
                fmt_ratio(s.get("ratio")),
                str((s.get("total") or {}).get("n", 0)),
            )
        )
    return table(
        (
            "task times",
            "floor (stop + destroy)",
            "total",
            "tasks ran",
            "our overhead",
            "total / floor",
            "n",
        ),
        rows,
    )


def requests_table(requests: Mapping[str, Any]) -> str:
    rows = []
    for phase in ("create", "destroy"):
        data = requests.get(phase)
        if not data:
            continue
        rows.append(
            (
                phase,
                fmt_summary(data.get("proxmox"), "", 0),
                fmt_summary(data.get("kube_writes"), "", 0),
                fmt_summary(data.get("secret_reads"), "", 0),
            )
        )
    return table(("per object", "Proxmox requests", "Kubernetes writes", "Secret reads"), rows)


def requests_breakdown(requests: Mapping[str, Any]) -> str:
    lines = []
    for phase in ("create", "destroy"):
        data = requests.get(phase)
        if data:
            lines.append(f"- {phase}, Proxmox: {fmt_breakdown(data.get('proxmox_breakdown'))}")
            lines.append(f"- {phase}, Kubernetes: {fmt_breakdown(data.get('kube_breakdown'))}")
    return "\n".join(lines)


def shutdown_table(shutdown: Mapping[str, Any]) -> str:
    return table(
        ("T", "floor (T + stop + destroy)", "total", "total / floor", "guest got", "n"),
        [
            (
                f"{shutdown['shutdown_timeout']} s",
                fmt_seconds(shutdown["floor_seconds"]),
                fmt_summary(shutdown.get("total")),
                fmt_ratio(shutdown.get("ratio")),
                fmt_summary(shutdown.get("guest_got")),
                str((shutdown.get("total") or {}).get("n", 0)),
            )
        ],
    )


def _peak(data: Mapping[str, Any]) -> str:
    peaks = data.get("peak_per_node") or {}
    return str(max(peaks.values())) if peaks else "—"


def _makespan(data: Mapping[str, Any], n: int) -> str:
    if data.get("capped"):
        return (
            f"cut off: {data['finished']}/{n} after {fmt_seconds(data.get('makespan_seconds'), 0)}"
        )
    return fmt_seconds(data.get("makespan_seconds"), 1)


def _cpu(percent: float | None) -> str:
    return "—" if percent is None else f"{percent:.0f} %"


def bulk_table(bulk: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for row in bulk:
        for phase in ("create", "delete"):
            data = row[phase]
            rows.append(
                (
                    str(row["n"]),
                    str(row["nodes"]),
                    "yes" if row["vmid"] else "no",
                    phase,
                    _makespan(data, row["n"]),
                    fmt_seconds(data.get("ideal_seconds"), 1),
                    fmt_ratio(data.get("ratio")),
                    fmt_percent(data.get("utilisation")),
                    _peak(data),
                    _cpu(data.get("cpu_percent")),
                    fmt_number(data.get("proxmox_per_object")),
                    fmt_number(data.get("kube_writes_per_object")),
                    str(data.get("create_conflicts", "—")) if phase == "create" else "—",
                    str(data.get("leaked", "—")) if phase == "delete" else "—",
                )
            )
    return table(
        (
            "N",
            "nodes",
            "spec.vmid",
            "phase",
            "makespan",
            "ideal",
            "ratio",
            "slots used",
            "peak/node",
            "operator CPU",
            "Proxmox req/object",
            "K8s writes/object",
            "'already exists'",
            "leaked",
        ),
        rows,
    )


def bulk_details(bulk: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for row in bulk:
        head = f"N = {row['n']}, {row['nodes']} nodes, {'with' if row['vmid'] else 'without'} vmid"
        for phase in ("create", "delete"):
            data = row[phase]
            lines.append(
                f"- {head}, {phase}: kubectl took {fmt_seconds(data.get('kubectl_seconds'), 1)} "
                f"(its requests spread over {fmt_seconds(data.get('posting_seconds'), 1)}); "
                f"tasks {fmt_breakdown(data.get('tasks'))}, "
                f"failed {data.get('failed_tasks', '—')}; "
                f"Proxmox: {fmt_breakdown(data.get('proxmox_breakdown'))}; "
                f"Kubernetes: {fmt_breakdown(data.get('kube_breakdown'))}"
            )
        lines.append(
            f"- {head}: Events {fmt_breakdown(row.get('event_reasons'))}; operator RSS at the "
            f"end {fmt_number(row.get('operator_rss_mib'), 0)} MiB; machine load average "
            f"{' then '.join(f'{x:.1f}' for x in row.get('load_average') or [])}"
        )
    return "\n".join(lines)


def idle_table(idle: Mapping[str, Any]) -> str:
    return table(
        (
            "objects",
            "window",
            "RSS",
            "CPU",
            "Proxmox req/s",
            "K8s req/s",
            "K8s writes/s",
        ),
        [
            (
                f"{idle['ready']}/{idle['objects']} Ready",
                fmt_seconds(idle["window_seconds"], 0),
                f"{idle['rss_mib']:.0f} MiB (peak {idle['rss_peak_mib']:.0f})",
                f"{idle['cpu_percent']:.1f} % of a core",
                f"{idle['proxmox_per_second']:.2f}",
                f"{idle['kube_per_second']:.2f}",
                f"{idle['kube_writes_per_second']:.2f}",
            )
        ],
    )


def profile_table(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ("function", "calls", "self", "cumulative"),
        (
            (
                f"`{r['function']}`",
                str(r["ncalls"]),
                f"{r['tottime']:.2f} s",
                f"{r['cumtime']:.2f} s",
            )
            for r in rows
        ),
    )


def machine_lines(meta: Mapping[str, Any]) -> list[str]:
    load = meta.get("load_before"), meta.get("load_after")
    return [
        f"- date: {meta.get('date', '?')}; took {fmt_seconds(meta.get('duration_seconds'), 0)}",
        f"- checkout: `{meta.get('commit', '?')}` (the benchmark, simulator and emulator)"
        + (", operator/ with uncommitted changes" if meta.get("dirty") else ""),
        f"- operator code: {meta.get('operator_source', '?')}",
        f"- CPU: {meta.get('cpu_model', '?')}, {meta.get('cores', '?')} cores; "
        f"load average before {load[0] or '?'}, after {load[1] or '?'}",
        f"- Python {meta.get('python', '?')}, {meta.get('platform', '?')}",
        f"- mode: {meta.get('mode', '?')}; task times {meta.get('task_times', '?')}; "
        f"k = {meta.get('k', K)}",
    ]


def render_markdown(results: Mapping[str, Any]) -> str:
    meta = results.get("meta") or {}
    goal_list = [fig.Goal(**g) for g in results.get("goals") or []]
    out = [
        "# proxmox-vm-operator benchmark",
        "",
        *machine_lines(meta),
        "",
        "## Goals",
        "",
        goals_table(goal_list),
    ]
    errors = results.get("errors") or {}
    if errors:
        out += ["", "## Scenarios that failed", ""]
        out += [f"- {name}: {message}" for name, message in errors.items()]
    single = results.get("single")
    if single:
        out += ["", "## One Stop destroy at a time", "", single_table(single)]
        out += ["", "## Requests per create and per destroy (explicit vmid, default times)"]
        out += ["", requests_table(single.get("requests") or {}), ""]
        out += [requests_breakdown(single.get("requests") or {})]
    shutdown = results.get("shutdown")
    if shutdown:
        out += ["", "## Shutdown on a hung guest", "", shutdown_table(shutdown)]
    bulk = results.get("bulk")
    if bulk:
        out += ["", "## Bulk create and delete", "", bulk_table(bulk), "", bulk_details(bulk)]
    idle = results.get("idle")
    if idle:
        out += ["", "## Idle Ready objects", "", idle_table(idle), ""]
        out += [f"- Proxmox: {fmt_breakdown(idle.get('proxmox_breakdown'))}"]
        out += [f"- Kubernetes: {fmt_breakdown(idle.get('kube_breakdown'))}"]
        out += [f"- all Ready {fmt_seconds(idle.get('ready_after_seconds'), 0)} after the apply"]
    profile = results.get("profile")
    if profile and profile.get("cumulative"):
        out += [
            "",
            f"## Profile of a bulk run (cProfile, N = {profile['n']}, 4 nodes, with vmid)",
            "",
            "The operator's main thread (kopf's event loop; the `kubernetes` client's worker "
            "threads are not in it). Under the profiler the run is slower: create "
            f"{fmt_seconds(profile.get('create_makespan_seconds'), 1)}, delete "
            f"{fmt_seconds(profile.get('delete_makespan_seconds'), 1)}.",
            "",
            "Top 15 by cumulative time:",
            "",
            profile_table(profile["cumulative"]),
            "",
            "Top 15 by own time:",
            "",
            profile_table(profile.get("self") or []),
        ]
    elif profile:
        out += ["", "## Profile", "", str(profile.get("error", "no profile"))]
    return "\n".join(out) + "\n"


def render_console(results: Mapping[str, Any]) -> str:
    """What is printed at the end: the goals and the main tables."""
    goal_list = [fig.Goal(**g) for g in results.get("goals") or []]
    parts = [goals_table(goal_list)]
    if results.get("single"):
        parts.append(single_table(results["single"]))
        parts.append(requests_table(results["single"].get("requests") or {}))
    if results.get("shutdown"):
        parts.append(shutdown_table(results["shutdown"]))
    if results.get("bulk"):
        parts.append(bulk_table(results["bulk"]))
    if results.get("idle"):
        parts.append(idle_table(results["idle"]))
    return "\n\n".join(parts) + "\n"
