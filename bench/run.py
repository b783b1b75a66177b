"""``python -m bench``: run the scenarios, write bench-results/report.{md,json}, print the tables.

The full set (the default, see docs/benchmarks.md) takes a long time (an hour or more with
the operator as it was measured); ``--quick`` is a smoke run of a few minutes with small sizes;
``--only SCENARIO`` (repeatable) picks scenarios. Each bulk phase is cut off after ``--cap``
seconds, which the report says.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from . import figures as fig
from . import report, scenarios
from .sandbox import REPO

SCENARIOS = ("single", "shutdown", "bulk", "idle", "profile")


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, default=[], help="run only this scenario"
    )
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "bench-results")
    parser.add_argument("--sizes", type=_int_list, help="bulk N, e.g. 50,200,500")
    parser.add_argument("--nodes", type=_int_list, help="bulk node counts, e.g. 2,4")
    parser.add_argument(
        "--vmid", choices=("both", "with", "without"), default="both", help="bulk spec.vmid"
    )
    parser.add_argument("--repeats", type=int, help="repeats of each single destroy")
    parser.add_argument("--cap", type=float, help="seconds a bulk phase may take (default 900)")
    parser.add_argument("--idle-objects", type=int)
    parser.add_argument("--idle-window", type=float, help="seconds measured while idle")
    parser.add_argument("--profile-objects", type=int)
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="run nothing: render report.md (and the goals) again from OUT/report.json",
    )
    parser.add_argument(
        "--operator-rev",
        metavar="REV",
        help="run the operator from this git revision (exported with git archive; the "
        "simulator, emulator and benchmark stay the working tree's), e.g. HEAD for a baseline",
    )
    return parser


def make_config(args: argparse.Namespace, workdir: pathlib.Path, log: scenarios.Log) -> Any:
    if args.quick:
        base = scenarios.Config(
            workdir=workdir,
            log=log,
            single_repeats=2,
            shutdown_repeats=1,
            bulk_sizes=(12,),
            bulk_nodes=(2,),
            cap=240,
            idle_objects=40,
            idle_settle=5,
            idle_window=15,
            profile_objects=12,
        )
    else:
        base = scenarios.Config(workdir=workdir, log=log)
    vmid = {"both": (True, False), "with": (True,), "without": (False,)}[args.vmid]
    changes: dict[str, Any] = {"bulk_vmid": vmid}
    for option, field in (
        ("sizes", "bulk_sizes"),
        ("nodes", "bulk_nodes"),
        ("repeats", "single_repeats"),
        ("cap", "cap"),
        ("idle_objects", "idle_objects"),
        ("idle_window", "idle_window"),
        ("profile_objects", "profile_objects"),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[field] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, **changes)


def _git(*args: str) -> str:
    result = subprocess.run(  # noqa: S603 - fixed git arguments
        ["git", *args],  # noqa: S607 - git from PATH
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


def export_operator(rev: str, into: pathlib.Path) -> tuple[pathlib.Path, str]:
    """``git archive REV operator/`` unpacked under ``into`` (git's state is not touched)."""
    commit = _git("rev-parse", "--short", rev)
    if not commit:
        raise SystemExit(f"--operator-rev: no such revision {rev!r}")
    target = into / f"operator-{commit}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(  # noqa: S603
        ["git", "archive", "--format=tar", commit, "operator"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    subprocess.run(  # noqa: S603
        ["tar", "-x", "-C", str(target)],  # noqa: S607
        input=archive.stdout,
        check=True,
    )
    return target / "operator", commit


def machine() -> dict[str, Any]:
    model = "?"
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _children_env() -> None:
    """The benchmark's own process entry points (`bench.simproc`, `bench.kubeproc`) and the
    operator must import from this checkout whatever the working directory."""
    paths = [str(REPO), str(REPO / "operator")]
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([inherited] if inherited else [])])


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    workdir = out / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    _children_env()
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:7.1f}s] {text}", flush=True)

    config = make_config(args, workdir, log)
    source = "the working tree"
    if args.operator_rev:
        path, commit = export_operator(args.operator_rev, workdir)
        config = dataclasses.replace(config, operator_path=path)
        source = f"git revision {commit} (exported with git archive)"
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _git("rev-parse", "--short", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--", "operator")),
            "operator_source": source,
            "mode": "quick" if args.quick else "full",
            "task_times": fig.TASK_TIMES,
            "k": scenarios.K,
            "cap_seconds": config.cap,
            "load_before": _load(),
            **machine(),
        },
        "errors": {},
    }
    chosen = args.only or list(SCENARIOS)
    steps: Sequence[tuple[str, Callable[[scenarios.Config], Any]]] = (
        ("single", scenarios.single_destroys),
        ("shutdown", scenarios.shutdown_hung_guest),
        ("bulk", scenarios.bulk_all),
        ("idle", scenarios.idle),
        ("profile", scenarios.profile),
    )
    for name, step in steps:
        if name not in chosen:
            continue
        log(f"scenario {name}")
        try:
            results[name] = step(config)
        except Exception as exc:
            log(f"scenario {name} failed: {exc}")
            traceback.print_exc()
            results["errors"][name] = str(exc).splitlines()[0] if str(exc) else repr(exc)
        write(results, out, began)
    results["meta"]["load_after"] = _load()
    write(results, out, began)
    return results


def write(results: dict[str, Any], out: pathlib.Path, began: float) -> None:
    results["meta"]["duration_seconds"] = time.monotonic() - began
    results["goals"] = [g.as_dict() for g in report.goals(results)]
    (out / "report.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    (out / "report.md").write_text(report.render_markdown(results))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rerender:
        results = json.loads((args.out / "report.json").read_text())
        results["goals"] = [g.as_dict() for g in report.goals(results)]
        (args.out / "report.md").write_text(report.render_markdown(results))
        print(report.render_console(results))
        return 0
    if shutil.which("kubectl") is None:
        print("the benchmark needs kubectl on PATH", file=sys.stderr)
        return 2
    results = run(args)
    print()
    print(report.render_console(results))
    print(f"written: {args.out / 'report.md'} and {args.out / 'report.json'}")
    return 1 if results["errors"] else 0
