"""Every alert carries a severity, a summary, a description that names its object, and a
runbook link to a section of docs/runbooks.md that exists."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .tools import RUNBOOKS, all_rules

SEVERITIES = {"critical", "warning", "info"}


def _anchors() -> set[str]:
    """Heading anchors as GitHub renders them: lower case, punctuation dropped, - for spaces."""
    anchors = set()
    for line in RUNBOOKS.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_severity_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert rule["labels"]["severity"] in SEVERITIES
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert all(isinstance(text, str) and text.strip() for text in annotations.values())


# Alerts whose expression keeps one series per object.
PER_OBJECT = [rule for rule in all_rules() if "by (namespace, name)" in rule["expr"]]


def test_the_stuck_deletion_alerts_are_per_object() -> None:
    names = {rule["alert"] for rule in PER_OBJECT}
    assert names == {"ProxmoxVMDestroyStuck", "ProxmoxVMDeletionStuck"}


@pytest.mark.parametrize("rule", PER_OBJECT, ids=lambda rule: rule["alert"])
def test_per_object_alert_names_its_object(rule: dict[str, Any]) -> None:
    for key in ("summary", "description"):
        assert "{{ $labels.namespace }}/{{ $labels.name }}" in rule["annotations"][key]


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule["alert"])
def test_runbook_url_points_at_a_section_of_the_runbooks(rule: dict[str, Any]) -> None:
    page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
    assert page == "docs/runbooks.md"
    assert anchor in _anchors(), f"docs/runbooks.md has no section #{anchor}"


def test_runbooks_have_no_section_for_an_alert_that_does_not_exist() -> None:
    alerts = {rule["alert"] for rule in all_rules()}
    text = RUNBOOKS.read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (ProxmoxVM\w+)\s*$", text, flags=re.MULTILINE))
    assert sections == alerts


def test_runbooks_keep_manual_finalizer_removal_last() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    release = text.index("proxmox.vmop.dev/force-release")
    by_hand = text.index("Removing the finalizer by hand")
    assert text.index("proxmox.vmop.dev/destroy-mode: Stop") < release < by_hand


def test_links_within_the_runbooks_point_at_sections_that_exist() -> None:
    links = set(re.findall(r"\]\(#([^)]+)\)", RUNBOOKS.read_text(encoding="utf-8")))
    assert links, "the runbooks link their sections to each other"
    assert links <= _anchors(), f"broken links: {sorted(links - _anchors())}"
