"""The benchmark's arithmetic and report on canned numbers, so `make bench` cannot rot between
runs. Nothing here is timed and no process is started: the benchmark itself is `make bench`."""

from __future__ import annotations

import json
from typing import Any

import bench.figures as fig
import bench.report as report
import pytest
from bench.run import build_parser, make_config
from bench.scenarios import profile_rows

TIMES = fig.TASK_TIMES


@pytest.mark.parametrize(
    ("objects", "nodes", "expected"),
    [(50, 4, 6.0), (200, 4, 19.5), (500, 4, 48.0), (200, 2, 37.5), (1, 4, 1.5), (0, 4, 0.0)],
)
def test_the_bulk_floor_is_waves_times_create_and_start(
    objects: int, nodes: int, expected: float
) -> None:
    # The floors: 19.5 s for 200, 48 s for 500, 6.0 s for 50 (4 nodes, k = 4).
    per_object = TIMES["create"] + TIMES["start"]
    assert fig.ideal_makespan(objects, nodes, 4, per_object) == pytest.approx(expected)


def test_a_floor_needs_slots() -> None:
    with pytest.raises(ValueError, match="positive"):
        fig.rounds(10, 0, 4)


def test_ratio_and_overhead() -> None:
    assert fig.ratio(43.0, 19.5) == pytest.approx(2.205, abs=1e-3)
    assert fig.ratio(None, 19.5) is None
    assert fig.ratio(1.0, 0.0) is None
    assert fig.overhead(2.30, 1.50) == pytest.approx(0.80)


def test_summary_is_the_median_with_its_spread() -> None:
    summary = fig.summarise([2.5, 2.1, 2.3, 9.0])
    assert summary == fig.Summary(n=4, median=2.4, low=2.1, high=9.0, mean=3.975)
    assert fig.Summary.from_dict(summary.as_dict()) == summary
    assert fig.summarise([]) is None
    assert report.fmt_summary(summary.as_dict()) == "2.40 s (2.10-9.00)"
    assert report.fmt_summary(fig.summarise([1.0]).as_dict()) == "1.00 s"  # type: ignore[union-attr]


def task(node: str, start: float, end: float, kind: str = "qmcreate", ok: bool = True) -> Any:
    return fig.TaskRecord(node, kind, "100", start, end, "OK" if ok else "boom")


def test_peak_per_node_counts_overlaps_and_not_hand_overs() -> None:
    tasks = [
        task("pve1", 0, 1),
        task("pve1", 0.5, 1.5),
        task("pve1", 1.5, 2.5),  # starts as the second ends: still two at most
        task("pve2", 0, 3),
    ]
    assert fig.peak_per_node(tasks) == {"pve1": 2, "pve2": 1}
    assert fig.peak_per_node([]) == {}


def test_slot_utilisation_is_busy_time_over_slot_time() -> None:
    # Two nodes, k = 2, a 2 s window: 8 slot-seconds; 4 s of task time inside it.
    tasks = [task("pve1", 0, 2), task("pve1", 1, 3), task("pve2", -1, 1)]
    assert fig.busy_seconds(tasks, 0, 2) == pytest.approx(4.0)
    assert fig.slot_utilisation(tasks, 2, 2, 0, 2) == pytest.approx(0.5)
    assert fig.slot_utilisation(tasks, 2, 2, 2, 2) is None
    assert len(fig.within(tasks, 2.5, 10)) == 1


def test_task_seconds_and_kinds() -> None:
    tasks = [task("pve1", 0, 0.5, "qmstop"), task("pve1", 1, 2, "qmdestroy", ok=False)]
    assert fig.task_seconds(tasks, ["stop", "destroy"]) == pytest.approx(1.5)
    assert fig.count_kinds(tasks) == {"stop": 1, "destroy": 1}
    assert [t.ok for t in tasks] == [True, False]


def test_proxmox_requests_are_sorted_by_what_they_did() -> None:
    rows = [
        {"method": "GET", "path": "/cluster/resources", "status": 200, "reason": "OK"},
        {"method": "GET", "path": "/cluster/nextid", "status": 200, "reason": "OK"},
        {"method": "POST", "path": "/nodes/pve1/qemu", "status": 200, "reason": "OK"},
        {
            "method": "POST",
            "path": "/nodes/pve1/qemu",
            "status": 500,
            "reason": "unable to create VM 101 - VM 101 already exists on node 'pve1'",
        },
        {"method": "PUT", "path": "/nodes/pve1/qemu/101/config", "status": 200, "reason": "OK"},
        {"method": "DELETE", "path": "/nodes/pve1/qemu/101", "status": 200, "reason": "OK"},
        {"method": "GET", "path": "/nodes/pve1/tasks/UPID:x/status", "status": 200, "reason": ""},
        {"method": "GET", "path": "/somewhere/else", "status": 200, "reason": ""},
    ]
    assert fig.proxmox_breakdown(rows) == {
        "list /cluster/resources": 1,
        "GET /cluster/nextid": 1,
        "create": 2,
        "VM config write": 1,
        "delete": 1,
        "task status": 1,
        "other GET": 1,
    }
    assert fig.create_conflicts(rows) == 1


def test_kubernetes_requests_by_actor_and_kind() -> None:
    ns = "/apis/proxmox.vmop.dev/v1alpha1/namespaces/bench/proxmoxvms"
    rows = [
        {"t": 1.0, "method": "PATCH", "path": f"{ns}/a/status", "agent": "kopf/1.45.0"},
        {"t": 1.1, "method": "PATCH", "path": f"{ns}/a", "agent": "kopf/1.45.0"},
        {"t": 1.2, "method": "POST", "path": "/api/v1/namespaces/bench/events", "agent": "kopf/1"},
        {
            "t": 1.3,
            "method": "GET",
            "path": "/api/v1/namespaces/bench/secrets/pve",
            "agent": "OpenAPI-Generator/31.0.0/python",
        },
        {"t": 1.4, "method": "GET", "path": ns, "agent": "kopf/1", "watch": True},
        {"t": 1.5, "method": "DELETE", "path": f"{ns}/a", "agent": "kubectl/v1.32.4"},
        {"t": 9.0, "method": "PATCH", "path": f"{ns}/a/status", "agent": "kopf/1.45.0"},
    ]
    window = fig.in_window(rows, 0.0, 2.0)
    assert fig.kube_breakdown(window) == {
        "status write": 1,
        "object write": 1,
        "event write": 1,
        "Secret read": 1,
        "watch": 1,
    }
    assert fig.kube_writes(window) == 3
    assert fig.kube_actor("kubectl-dispatcher/v1") == "kubectl"
    assert fig.kube_actor("bench-watcher") == "bench"


def test_goal_helpers() -> None:
    assert fig.at_most(0.2, 0.3) is True
    assert fig.at_most(None, 0.3) is None
    assert fig.at_least(2.9, 3) is False
    assert fig.all_of([True, True]) is True
    assert fig.all_of([True, None]) is None
    assert fig.all_of([None, False]) is False
    assert fig.all_of([]) is None


def phase(ratio: float, peak: int, **more: Any) -> dict[str, Any]:
    return {
        "makespan_seconds": ratio * 48.0,
        "ideal_seconds": 48.0,
        "ratio": ratio,
        "utilisation": 0.5,
        "peak_per_node": {"pve1": peak, "pve2": peak - 1},
        "proxmox_per_object": 6.0,
        "kube_writes_per_object": 4.0,
        "finished": 500,
        "capped": False,
        **more,
    }


def canned_results(*, fast: bool) -> dict[str, Any]:
    overhead = 0.2 if fast else 0.8
    ratio = 1.1 if fast else 6.0

    def summary(*values: float) -> dict[str, Any]:
        return fig.summarise(values).as_dict()  # type: ignore[union-attr]

    return {
        "meta": {"commit": "abc1234", "cpu_model": "Test CPU", "cores": 2, "mode": "full"},
        "single": {
            "settings": [
                {
                    "setting": "default",
                    "task_times": {"stop": 0.5, "destroy": 1.0},
                    "floor_seconds": 1.5,
                    "total": summary(1.5 + overhead, 1.6 + overhead),
                    "task_seconds": summary(1.5, 1.5),
                    "overhead": summary(overhead, overhead + 0.05),
                    "ratio": (1.55 + overhead) / 1.5,
                }
            ],
            "requests": {
                "create": {"proxmox": summary(6), "kube_writes": summary(4)},
                "destroy": {
                    "proxmox": summary(6 if fast else 11),
                    "kube_writes": summary(4 if fast else 11),
                    "secret_reads": summary(1),
                    "proxmox_breakdown": {"stop": 1, "delete": 1},
                    "kube_breakdown": {"status write": 3},
                },
            },
        },
        "shutdown": {
            "shutdown_timeout": 3,
            "floor_seconds": 4.5,
            "total": summary(4.6 if fast else 7.0),
            "guest_got": summary(3.05),
            "ratio": 1.0,
        },
        "bulk": [
            {
                "n": 500,
                "nodes": 4,
                "k": 4,
                "vmid": vmid,
                "create": phase(ratio, 4, create_conflicts=0, vms_after=500),
                "delete": phase(ratio, 4 if fast else 5, leaked=0 if fast else 2),
            }
            for vmid in (True, False)
        ],
        "idle": {
            "objects": 1000,
            "ready": 1000,
            "all_ready": True,
            "window_seconds": 120.0,
            "rss_mib": 150.0 if fast else 161.0,
            "rss_peak_mib": 170.0,
            "cpu_percent": 1.0 if fast else 29.5,
            "proxmox_per_second": 0.5 if fast else 66.0,
            "kube_per_second": 0.1,
            "kube_writes_per_second": 0.0,
        },
        "profile": {
            "n": 200,
            "cumulative": [
                {"function": "worker (kopf)", "ncalls": "3", "tottime": 0.1, "cumtime": 2.0}
            ],
            "self": [],
        },
    }


def test_goals_met_on_fast_numbers() -> None:
    goals = report.goals(canned_results(fast=True))
    assert [g.met for g in goals] == [True] * len(goals), goals


def test_goals_not_met_on_the_baseline_numbers() -> None:
    goals = {g.goal: g for g in report.goals(canned_results(fast=False))}
    assert all(g.met is False for g in goals.values()), goals
    assert "6.00x" in goals["bulk 500 over 4 nodes, k = 4: makespan"].measured
    assert "at most 5" in goals["bulk, every size: tasks in flight per node"].measured


def test_goals_not_measured_without_scenarios() -> None:
    goals = report.goals({"meta": {}})
    assert all(g.met is None for g in goals)


def test_a_cut_off_phase_fails_its_goal() -> None:
    results = canned_results(fast=True)
    results["bulk"][1]["create"].update(capped=True, ratio=None, finished=312)
    goal = report.goals(results)[0]
    assert goal.met is False
    assert "cut off after 312/500" in goal.measured


def test_small_runs_are_not_judged_against_the_500_and_1000_goals() -> None:
    results = canned_results(fast=True)
    for row in results["bulk"]:
        row["n"] = 12
    results["idle"]["objects"] = 40
    goals = {g.goal: g for g in report.goals(results)}
    assert goals["bulk 500 over 4 nodes, k = 4: makespan"].met is None
    assert goals["1000 idle Ready objects"].met is None
    assert goals["bulk, every size: tasks in flight per node"].met is True


def test_report_renders_every_section_and_round_trips_through_json() -> None:
    results = canned_results(fast=False)
    results["goals"] = [g.as_dict() for g in report.goals(results)]
    results = json.loads(json.dumps(results))
    markdown = report.render_markdown(results)
    for heading in (
        "## Goals",
        "## One Stop destroy at a time",
        "## Requests per create and per destroy",
        "## Shutdown on a hung guest",
        "## Bulk create and delete",
        "## Idle Ready objects",
        "## Profile of a bulk run",
    ):
        assert heading in markdown
    assert "| 500 | 4 | yes | create | 288.0 s | 48.0 s | 6.00x | 50 % | 4 |" in markdown
    assert "**not met**" in markdown
    console = report.render_console(results)
    assert console.startswith("| goal | target | measured |")
    assert "Profile" not in console


def test_profile_rows_leave_out_the_plumbing() -> None:
    stats = {
        ("/usr/lib/python3.11/asyncio/base_events.py", 1845, "_run_once"): (9, 9, 0.1, 99.0),
        ("~", 0, "<method 'poll' of 'select.epoll' objects>"): (9, 9, 50.0, 50.0),
        ("/v/lib/python3.11/site-packages/kopf/_core/reactor/running.py", 22, "run"): (
            1,
            1,
            0.0,
            49.0,
        ),
        ("/v/lib/python3.11/site-packages/kopf/_core/reactor/queueing.py", 261, "worker"): (
            5,
            7,
            0.5,
            3.0,
        ),
        ("/w/operator/proxmox_vm_operator/controller/budget.py", 50, "look"): (4, 4, 1.5, 1.6),
    }
    rows = profile_rows(stats, key="cumtime", skip_plumbing=True, total=50.0)
    assert [r["function"] for r in rows] == [
        "worker (kopf/_core/reactor/queueing.py:261)",
        "look (proxmox_vm_operator/controller/budget.py:50)",
    ]
    assert rows[0]["ncalls"] == "7/5"
    everything = profile_rows(stats, key="tottime", limit=2)
    assert [r["function"] for r in everything] == [
        "<method 'poll' of 'select.epoll' objects> (~)",
        "look (proxmox_vm_operator/controller/budget.py:50)",
    ]


def test_quick_and_full_sizes(tmp_path: Any) -> None:
    quick = make_config(build_parser().parse_args(["--quick"]), tmp_path, print)
    assert max(quick.bulk_sizes) < 50 and quick.idle_objects < 1000
    full = make_config(build_parser().parse_args(["--vmid", "with"]), tmp_path, print)
    assert full.bulk_sizes == (50, 200, 500) and full.bulk_nodes == (2, 4)
    assert full.bulk_vmid == (True,) and full.idle_objects == 1000
    custom = make_config(
        build_parser().parse_args(["--sizes", "5,7", "--cap", "60"]), tmp_path, print
    )
    assert custom.bulk_sizes == (5, 7) and custom.cap == 60


def test_rerender_writes_the_report_from_its_json(tmp_path: Any, capsys: Any) -> None:
    from bench.run import main

    (tmp_path / "report.json").write_text(json.dumps(canned_results(fast=True)))
    assert main(["--rerender", "--out", str(tmp_path)]) == 0
    assert "## Bulk create and delete" in (tmp_path / "report.md").read_text()
    assert "| goal | target | measured |" in capsys.readouterr().out
