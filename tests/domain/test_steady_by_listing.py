"""When the drift timer's pass may stop at the shared cluster listing
(domain/reconcile.py ``steady_by_listing``): only for a Ready object whose VM the listing
shows as the status does."""

from __future__ import annotations

from typing import Any

import pytest

from proxmox_vm_operator.domain.reconcile import ListedVM, NotListed, steady_by_listing

from .test_reconcile_decisions import OTHER, OURS, context

READY = {
    "type": "Ready",
    "status": "True",
    "reason": "Reconciled",
    "message": "VM 120 on pve1 matches the spec",
    "lastTransitionTime": "2026-03-01T12:00:00Z",
    "observedGeneration": 2,
}
STEADY: dict[str, Any] = {
    "vmid": 120,
    "node": "pve1",
    "powerState": "Running",
    "observedGeneration": 2,
    "phase": "Running",
    "conditions": [READY],
}
UPID = "UPID:pve1:00000001:00000001:6B000000:qmstart:120:root@pam!op:"
LISTED = ListedVM(120, "pve1", OURS, None, "running")


def judge(status: dict[str, Any], listed: ListedVM | NotListed = LISTED) -> bool:
    return steady_by_listing(context(status), status, listed)


def test_a_ready_object_whose_vm_is_listed_as_its_status_says_is_steady() -> None:
    assert judge(STEADY)
    stopped = {**STEADY, "powerState": "Stopped"}
    assert judge(stopped, ListedVM(120, "pve1", OURS, None, "stopped"))


@pytest.mark.parametrize(
    "listed",
    [
        NotListed(),
        ListedVM(120, "pve1", OURS, None, "stopped"),  # stopped behind our back
        ListedVM(120, "pve1", OURS, None, "unknown"),  # the node did not report
        ListedVM(120, "pve2", OURS, None, "running"),  # moved
        ListedVM(120, "pve1", frozenset({OTHER}), None, "running"),  # not ours any more
        ListedVM(120, "pve1", OURS, "backup", "running"),  # locked
        ListedVM(121, "pve1", OURS, None, "running"),  # another VM
    ],
)
def test_any_difference_in_the_listing_needs_a_full_pass(listed: ListedVM | NotListed) -> None:
    assert not judge(STEADY, listed)


@pytest.mark.parametrize(
    "status",
    [
        {**STEADY, "observedGeneration": 1},  # the spec changed since
        {**STEADY, "conditions": [{**READY, "status": "False", "reason": "Provisioning"}]},
        {
            **STEADY,
            "task": {"upid": "UPID:pve1:1:1:6B000000:qmstart:120:root@pam!op:", "action": "start"},
        },
        {**STEADY, "powerState": "Paused"},
    ],
)
def test_an_object_not_ready_at_its_generation_needs_a_full_pass(status: dict[str, Any]) -> None:
    assert not judge(status)
