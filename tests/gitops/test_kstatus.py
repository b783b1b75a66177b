"""What Flux's health checks (kstatus) make of the ProxmoxVM status the operator writes."""

from __future__ import annotations

from typing import Any

import pytest

from . import kstatus
from .argocd import lua_health
from .sample_objects import Sample, load_samples, sample

SAMPLES = load_samples()

# The Argo CD health and the kstatus status of one situation agree as documented in
# docs/gitops.md; the one exception is an object the operator has not looked at yet.
AGREEMENT = {
    ("Healthy", kstatus.CURRENT),
    ("Progressing", kstatus.IN_PROGRESS),
    ("Degraded", kstatus.FAILED),
    ("Suspended", kstatus.FAILED),
    ("Progressing", kstatus.TERMINATING),
    ("Degraded", kstatus.TERMINATING),
}


def by_name(samples: tuple[Sample, ...]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", samples, ids=[s.name for s in samples])


def vm(
    conditions: Any,
    *,
    generation: Any = 1,
    observed: Any = 1,
    deleted: Any = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web-1", "generation": generation}
    if deleted is not None:
        metadata["deletionTimestamp"] = deleted
    status: dict[str, Any] = {"observedGeneration": observed}
    if conditions is not None:
        status["conditions"] = conditions
    return {"kind": "ProxmoxVM", "metadata": metadata, "status": status}


def condition(
    type_: str, status: str, reason: str = "Because", message: str = ""
) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


# -- the samples ------------------------------------------------------------------------------


@by_name(SAMPLES)
def test_each_situation_gets_its_kstatus(case: Sample) -> None:
    result = kstatus.flux_status(case.object)
    assert result.status == case.kstatus_status, (case.description, result)
    if case.kstatus_reason is not None:
        assert result.reason == case.kstatus_reason, result
    if case.kstatus_message is not None:
        assert result.message == case.kstatus_message, result


@by_name(SAMPLES)
def test_argo_cd_and_flux_agree_on_each_situation(case: Sample) -> None:
    pair = (lua_health(case.object)[0], kstatus.flux_status(case.object).status)
    if case.name == "new-object-no-status":
        # kstatus takes an object without conditions for Current; Argo CD's check waits.
        assert pair == ("Progressing", kstatus.CURRENT)
    else:
        assert pair in AGREEMENT, (case.name, pair)


def test_a_ready_vm_is_current() -> None:
    assert kstatus.compute(sample("ready-running").object).status == kstatus.CURRENT
    assert kstatus.compute(sample("ready-stopped").object).status == kstatus.CURRENT


def test_a_provisioning_vm_is_in_progress_with_the_operators_reason() -> None:
    result = kstatus.compute(sample("provisioning-creating").object)
    assert (result.status, result.reason, result.message) == (
        kstatus.IN_PROGRESS,
        "Provisioning",
        "creating VM 100 on pve1",
    )


def test_a_stalled_vm_is_failed_with_the_operators_message() -> None:
    result = kstatus.compute(sample("not-owned").object)
    assert (result.status, result.reason) == (kstatus.FAILED, "NotOwned")
    assert "Set spec.adopt: true" in result.message


def test_a_deleted_vm_is_terminating_whatever_its_conditions_say() -> None:
    for name in ("deleting-not-started", "deleting-shutting-down", "deleting-stalled-unreachable"):
        assert kstatus.compute(sample(name).object).status == kstatus.TERMINATING, name


def test_a_status_for_an_older_generation_is_in_progress() -> None:
    obj = sample("spec-change-not-yet-observed").object
    assert obj["metadata"]["generation"] > obj["status"]["observedGeneration"]
    result = kstatus.compute(obj)
    assert (result.status, result.reason) == (kstatus.IN_PROGRESS, "LatestGenerationNotObserved")


# -- the rules, one by one --------------------------------------------------------------------


def test_the_first_abnormal_true_condition_in_list_order_decides() -> None:
    reconciling = condition("Reconciling", "True", "Updating")
    stalled = condition("Stalled", "True", "InvalidSpec")
    assert kstatus.compute(vm([reconciling, stalled])).status == kstatus.IN_PROGRESS
    assert kstatus.compute(vm([stalled, reconciling])).status == kstatus.FAILED


def test_ready_false_or_unknown_is_in_progress_and_other_values_are_skipped() -> None:
    for status in ("False", "Unknown"):
        result = kstatus.compute(vm([condition("Ready", status, "VMLocked")]))
        assert (result.status, result.reason) == (kstatus.IN_PROGRESS, "VMLocked")
    odd = vm([condition("Ready", "Maybe"), condition("Ready", "True")])
    assert kstatus.compute(odd) == kstatus.Result(kstatus.CURRENT, "Resource is Ready")


def test_without_a_ready_condition_a_custom_resource_is_current() -> None:
    assert kstatus.compute(vm(None)).status == kstatus.CURRENT
    assert kstatus.compute(vm([condition("Reconciling", "False")])).status == kstatus.CURRENT
    assert kstatus.compute({"metadata": {"generation": 1}}).status == kstatus.CURRENT


def test_the_generation_check_needs_both_numbers() -> None:
    unobserved = vm([condition("Ready", "True")])
    del unobserved["status"]["observedGeneration"]
    assert kstatus.compute(unobserved).status == kstatus.CURRENT
    ahead = vm([condition("Ready", "True")], generation=2, observed=3)
    assert kstatus.compute(ahead).reason == "LatestGenerationNotObserved"


def test_an_empty_deletion_timestamp_is_not_a_deletion() -> None:
    assert kstatus.compute(vm([condition("Ready", "True")], deleted="")).status == kstatus.CURRENT


@pytest.mark.parametrize(
    "obj",
    [
        vm("Ready"),
        vm([None]),
        vm([{"type": "Ready", "status": True}]),
        vm([condition("Ready", "True")], generation="1"),
        vm([condition("Ready", "True")], observed=1.5),
        vm([condition("Ready", "True")], deleted=5),
        {"metadata": "x"},
        {"metadata": {"generation": 1}, "status": "x"},
    ],
)
def test_fields_of_the_wrong_type_are_an_error_which_flux_reports_as_unknown(obj: Any) -> None:
    with pytest.raises(kstatus.KstatusError):
        kstatus.compute(obj)
    assert kstatus.flux_status(obj).status == kstatus.UNKNOWN
