"""Helpers for the dashboard tests: unknown metrics in a query, promtool on the queries."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import yaml

from ..promql import metric_names, run_promtool


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    return metric_names(expr) - known


def promtool_check(exprs: Iterable[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the expressions written as recording rules."""
    rules = [{"record": f"dashboard:query_{n}", "expr": e} for n, e in enumerate(exprs, 1)]
    path = workdir / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return run_promtool("check", "rules", path, timeout=60)
