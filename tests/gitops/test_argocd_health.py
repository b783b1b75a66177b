"""The Argo CD health check (manifests/argocd/health.lua), run as Argo CD runs it."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from proxmox_vm_operator.domain.model import ProxmoxVMSpec, ProxmoxVMStatus

from .argocd import (
    CM_KEY,
    CM_PATCH,
    HEALTH_LUA,
    INVALID_STATUS,
    REGENERATE,
    LuaHealthError,
    argocd_health,
    health_script,
    lua_health,
    lua_health_lines,
    render_cm_patch,
)
from .sample_objects import Sample, load_samples

ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended"}
SAMPLES = load_samples()


def by_name(samples: tuple[Sample, ...]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", samples, ids=[s.name for s in samples])


def ready_only(status: str, reason: str, message: str) -> dict[str, Any]:
    """An object whose status holds a Ready condition and nothing else."""
    condition = {"type": "Ready", "status": status, "reason": reason, "message": message}
    return {
        "metadata": {"name": "web-1", "generation": 1},
        "spec": {"node": "pve1"},
        "status": {"observedGeneration": 1, "conditions": [condition]},
    }


# Situations the operator does not write today but a reader can meet: a status from an
# operator version that set Ready alone, and conditions other writers may leave behind.
EDGE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "ready-false-alone",
        ready_only("False", "Provisioning", "creating VM 100 on pve1"),
        "Progressing",
        "Provisioning: creating VM 100 on pve1",
    ),
    (
        "ready-true-without-message",
        ready_only("True", "Reconciled", ""),
        "Healthy",
        "Ready",
    ),
    (
        "stalled-without-reason-or-message",
        {
            "metadata": {"generation": 1},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "Stalled", "status": "True"},
                ]
            },
        },
        "Degraded",
        "Stalled",
    ),
    (
        "deletion-stalled-without-detail",
        {
            "metadata": {"deletionTimestamp": "2030-01-01T12:10:00Z"},
            "status": {"conditions": [{"type": "DeletionStalled", "status": "True"}]},
        },
        "Degraded",
        "Deletion stalled: no detail",
    ),
]


# -- the samples ------------------------------------------------------------------------------


@by_name(SAMPLES)
def test_each_situation_gets_its_health_from_the_script(case: Sample) -> None:
    status, message = lua_health(case.object)
    assert status == case.health_status, (case.description, message)
    assert case.health_message in message, (case.description, message)


@by_name(SAMPLES)
def test_argo_cd_shows_pending_deletion_before_the_script_for_a_deleted_object(
    case: Sample,
) -> None:
    if case.deleting:
        assert argocd_health(case.object) == ("Progressing", "Pending deletion")
    else:
        assert argocd_health(case.object) == lua_health(case.object)


def test_the_samples_cover_every_status_and_every_return_of_the_script() -> None:
    assert {s.health_status for s in SAMPLES} == ARGO_STATUSES
    executed: set[int] = set()
    for case in SAMPLES:
        executed |= lua_health_lines(case.object)
    for _, obj, _, _ in EDGE_CASES:
        executed |= lua_health_lines(obj)
    lines = health_script().splitlines()
    start = lines.index("local function health()")
    end = lines.index("return health()")
    returns = {
        number
        for number, line in enumerate(lines, start=1)
        if start < number <= end and line.strip().startswith("return")
    }
    assert len(returns) >= 9
    assert returns - executed == set(), "return statements no sample or edge case reaches"


@by_name(SAMPLES)
def test_the_samples_are_objects_the_operator_writes(case: Sample) -> None:
    """Spec and status validate against the operator's own models (the CRD's source)."""
    obj = case.object
    assert (obj["apiVersion"], obj["kind"]) == ("proxmox.vmop.dev/v1alpha1", "ProxmoxVM")
    assert obj["metadata"]["finalizers"] == ["proxmox.vmop.dev/destroy"]
    if case.name != "invalid-spec":
        ProxmoxVMSpec.model_validate(obj["spec"])
    ProxmoxVMStatus.model_validate(obj.get("status", {}))


@pytest.mark.parametrize("name, obj, status, fragment", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_statuses_other_writers_may_leave_are_read_sensibly(
    name: str, obj: dict[str, Any], status: str, fragment: str
) -> None:
    got, message = lua_health(obj)
    assert got == status and fragment in message, (name, got, message)


# -- malformed input --------------------------------------------------------------------------

MALFORMED: list[Any] = [
    None,
    "a string",
    42,
    [],
    {},
    {"metadata": None, "status": None},
    {"metadata": "x", "spec": "y", "status": "z"},
    {"status": {"conditions": None}},
    {"status": {"conditions": "Ready"}},
    {"status": {"conditions": {"type": "Ready", "status": "True"}}},
    {"status": {"conditions": [None, 7, "Ready", [], {"type": None}]}},
    {"status": {"conditions": [{"type": "Ready"}]}},
    {"status": {"conditions": [{"type": "Ready", "status": True, "reason": 3, "message": {}}]}},
    {"status": {"conditions": [{"type": "Stalled", "status": "True", "message": ["x"]}]}},
    {
        "metadata": {"generation": "3"},
        "status": {"observedGeneration": "two", "conditions": [{"type": "Ready"}]},
    },
    {
        "metadata": {"generation": {"n": 3}},
        "status": {"observedGeneration": [2], "conditions": [{"type": "Ready"}]},
    },
    {"metadata": {"deletionTimestamp": 0}, "status": {"conditions": 5}},
    {"metadata": {"deletionTimestamp": "2030-01-01T12:10:00Z"}, "status": {"conditions": [{}]}},
]

# Values that replace a field of a sample: each of the JSON types, and absence.
WRONG_VALUES: list[Any] = [None, "text", 7, 2.5, True, [], {}, [None], {"type": "Ready"}]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON value, containers included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def replaced(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    copied = copy.deepcopy(obj)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copied


def assert_readable(result: tuple[str, str]) -> None:
    status, message = result
    assert status in ARGO_STATUSES, result
    assert isinstance(message, str) and message, result


@pytest.mark.parametrize("obj", MALFORMED, ids=[f"malformed-{i}" for i in range(len(MALFORMED))])
def test_malformed_objects_get_a_status_and_never_an_error(obj: Any) -> None:
    assert_readable(lua_health(obj))


@by_name(SAMPLES)
def test_any_field_of_a_real_object_may_be_missing_or_of_any_type(case: Sample) -> None:
    count = 0
    for path in paths(case.object):
        for value in WRONG_VALUES:
            assert_readable(lua_health(replaced(case.object, path, value)))
            count += 1
    assert count > 100  # the object was walked, not skipped


# -- the sandbox, as Argo CD sets it up -------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        'return {status = string.upper("healthy")}',
        'return {status = ("healthy"):upper()}',
        'return {status = "Healthy", message = table.concat({"a", "b"})}',
        'return {status = "Healthy", message = os.date("%Y")}',
        'return {status = "Healthy", message = tostring(math.floor(2.5))}',
        'return {status = "Healthy", message = tostring(require("os"))}',
        'return {status = "Healthy", message = tostring(io.read())}',
    ],
)
def test_the_sandbox_has_no_standard_library(script: str) -> None:
    """The strict sandbox refuses what only Argo CD's open libraries would provide."""
    with pytest.raises(LuaHealthError):
        lua_health({}, script)


def test_the_sandbox_reads_the_result_as_argo_cd_does() -> None:
    assert lua_health({}, 'return {status = "Fine"}') == ("Unknown", INVALID_STATUS)
    assert lua_health({}, 'return {message = "no status"}') == ("Unknown", INVALID_STATUS)
    # null values are absent keys; null list items are dropped and the rest move up
    show = "tostring(obj.a.b[1]) .. tostring(obj.a.b[2]) .. tostring(obj.a.b[3]) .. tostring(obj.c)"
    assert lua_health(
        {"a": {"b": [1, None, 3]}, "c": None}, f'return {{status = "Healthy", message = {show}}}'
    ) == ("Healthy", "13nilnil")
    for script, problem in [
        ("return 5", "not number"),
        ("return {}", "cannot unmarshal array"),
        ("error('boom')", "boom"),
        ("return {status = 1}", "not a string"),
    ]:
        with pytest.raises(LuaHealthError, match=problem):
            lua_health({}, script)


def test_the_script_calls_no_library_even_in_lines_no_sample_runs() -> None:
    """The sandbox catches library use on the lines that run; this reads the others."""
    code = "\n".join(line.split("--", 1)[0] for line in health_script().splitlines())
    code = re.sub(r'"[^"]*"', '""', code)  # "table" as a type name is no library
    used = re.findall(r"\b(string|table|os|math|io|debug|package|utf8)\s*[.:]|\brequire\b", code)
    assert used == []
    assert re.findall(r"\)\s*:\s*\w+\s*\(", code) == []  # no ("x"):method() string calls


# -- the argocd-cm patch ----------------------------------------------------------------------


def test_the_argocd_cm_patch_carries_the_script_byte_for_byte() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text(encoding="utf-8"))
    embedded = patch["data"][CM_KEY]
    assert embedded == HEALTH_LUA.read_text(encoding="utf-8"), (
        f"{CM_PATCH.name} is out of date with {HEALTH_LUA.name}; regenerate it: {REGENERATE}"
    )
    assert CM_PATCH.read_text(encoding="utf-8") == render_cm_patch(), (
        f"{CM_PATCH.name} was edited by hand; regenerate it: {REGENERATE}"
    )


def test_the_argocd_cm_patch_is_a_valid_config_map_for_argo_cd() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text(encoding="utf-8"))
    assert (patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )
    assert list(patch["data"]) == ["resource.customizations.health.proxmox.vmop.dev_ProxmoxVM"]
    kubernetes_validate.validate(patch, "1.30", strict=True)
