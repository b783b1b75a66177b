"""Small rules in the typed replies: tags, task success, flags."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.proxmox import TaskStatus, VmConfig, parse_tags


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("web;vmop-1", ("web", "vmop-1")),
        ("web,vmop-1 db", ("web", "vmop-1", "db")),
        (" web ;; db ", ("web", "db")),
        ("", ()),
        (None, ()),
    ],
)
def test_tags_are_split_like_pve_splits_them(raw: str | None, tags: tuple[str, ...]) -> None:
    assert parse_tags(raw) == tags


@pytest.mark.parametrize(
    ("status", "exitstatus", "ok"),
    [
        ("stopped", "OK", True),
        ("stopped", "WARNINGS: 3", True),
        ("stopped", "VM quit/powerdown failed - got timeout", False),
        ("stopped", "unexpected status", False),
        ("stopped", None, False),
        ("running", None, False),
    ],
)
def test_only_ok_and_warnings_are_success(status: str, exitstatus: str | None, ok: bool) -> None:
    assert TaskStatus(status=status, exitstatus=exitstatus).ok is ok


@pytest.mark.parametrize(
    ("value", "protected"), [(1, True), ("1", True), (0, False), (None, False)]
)
def test_protection_is_read_from_the_config(value: object, protected: bool) -> None:
    values = {} if value is None else {"protection": value}
    assert VmConfig(digest="d", values=values).protected is protected
