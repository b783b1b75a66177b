"""PromQL for the tests: the metric names an expression reads, the names the operator's
registry exposes, and promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from .tools import require_tool

# The series a family of each type exposes, by suffix of the family's name.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}

# PromQL, reduced to the names of the series it selects: strings, label matchers, range and
# offset durations, grouping label lists and numbers go; what is left and not followed by "("
# (a function or an aggregation) and not an operator keyword is a metric name. PromQL's
# keywords are case-insensitive.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPINGS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_OFFSETS = re.compile(r"\boffset\s+-?\w+", re.IGNORECASE)
_NUMBERS = re.compile(r"(?<![\w:])[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "inf",
    "nan",
    "offset",
    "group_left",
    "group_right",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names and label names aside)."""
    text = _STRINGS.sub('""', expr)
    for pattern in (_MATCHERS, _RANGES, _GROUPINGS, _OFFSETS, _NUMBERS):
        text = pattern.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def exposed_names(registry: Collector = REGISTRY) -> set[str]:
    """Every series name the registry serves on /metrics, labelled families without children
    included (import the module that registers the metrics first)."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def run_promtool(
    *args: str | Path, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """promtool with the arguments; skips without it, or fails when CI=true."""
    return subprocess.run(
        [require_tool("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
