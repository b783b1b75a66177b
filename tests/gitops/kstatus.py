"""kstatus's generic rules, as Flux applies them to a ProxmoxVM: a small transcription.

Flux's kustomize-controller waits on the objects of a Kustomization (``.spec.wait`` or
``.spec.healthChecks``) with kstatus. For a custom resource, without a CEL
``healthCheckExprs`` entry, kstatus's generic status reader calls ``status.Compute``, and
an error from it becomes the status Unknown. This follows, in kubernetes-sigs/cli-utils
(Flux builds its fork of the same package):

- ``pkg/kstatus/status/status.go``: ``Compute`` and ``checkReadyCondition``;
- ``pkg/kstatus/status/generic.go``: ``checkGenericProperties`` and ``checkGeneration``;
- ``pkg/kstatus/status/util.go``: ``GetObjectWithConditions`` (the typed view of
  ``status.conditions``);
- ``pkg/kstatus/polling/statusreaders/generic.go``: an error is the status Unknown.

The built-in kinds' rules (``GetLegacyConditionsFn``) do not apply to a custom resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CURRENT = "Current"
IN_PROGRESS = "InProgress"
FAILED = "Failed"
TERMINATING = "Terminating"
UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Result:
    status: str
    message: str
    # The reason of the Reconciling or Stalled condition kstatus reports with the result.
    reason: str = ""


class KstatusError(ValueError):
    """What kstatus returns as an error: the object's fields have unexpected types."""


_MISSING = object()


def _nested(obj: Mapping[str, Any], *path: str) -> Any:
    """unstructured.NestedFieldNoCopy: _MISSING when absent; an error through a non-map."""
    value: Any = obj
    for depth, key in enumerate(path):
        if not isinstance(value, Mapping):
            where = ".".join(path[:depth])
            raise KstatusError(f"{where} is of the type {type(value).__name__}, expected map")
        if key not in value:
            return _MISSING
        value = value[key]
    return value


def _nested_string(obj: Mapping[str, Any], *path: str) -> str | None:
    value = _nested(obj, *path)
    if value is _MISSING:
        return None
    if not isinstance(value, str):
        raise KstatusError(f"{'.'.join(path)} accessor error: {value!r} is not a string")
    return value


def _nested_int64(obj: Mapping[str, Any], *path: str) -> int | None:
    value = _nested(obj, *path)
    if value is _MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise KstatusError(f"{'.'.join(path)} accessor error: {value!r} is not an int64")
    return value


@dataclass(frozen=True)
class _Condition:
    type: str
    status: str
    reason: str
    message: str


def _conditions(obj: Mapping[str, Any]) -> list[_Condition]:
    """GetObjectWithConditions: status.conditions as typed conditions, or an error."""
    status = obj.get("status")
    if status is None:
        return []
    if not isinstance(status, Mapping):
        raise KstatusError(f"status is of the type {type(status).__name__}, expected map")
    raw = status.get("conditions")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise KstatusError(f"status.conditions is of the type {type(raw).__name__}, expected list")
    result = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise KstatusError(f"a condition is of the type {type(item).__name__}, expected map")
        fields = {}
        for name in ("type", "status", "reason", "message"):
            value = item.get(name)
            if value is not None and not isinstance(value, str):
                raise KstatusError(f"condition field {name}: {value!r} is not a string")
            fields[name] = value or ""
        result.append(_Condition(**fields))
    return result


def _check_generation(obj: Mapping[str, Any]) -> Result | None:
    generation = _nested_int64(obj, "metadata", "generation")
    if generation is None:
        return None
    observed = _nested_int64(obj, "status", "observedGeneration")
    if observed is not None and observed != generation:
        kind = obj.get("kind") if isinstance(obj.get("kind"), str) else ""
        message = f"{kind} generation is {generation}, but latest observed generation is {observed}"
        return Result(IN_PROGRESS, message, "LatestGenerationNotObserved")
    return None


def _check_generic_properties(obj: Mapping[str, Any]) -> Result | None:
    if _nested_string(obj, "metadata", "deletionTimestamp"):
        return Result(TERMINATING, "Resource scheduled for deletion")
    generation = _check_generation(obj)
    if generation is not None:
        return generation
    # In list order: whichever of the two "abnormal-true" conditions comes first decides.
    for condition in _conditions(obj):
        if condition.type == "Reconciling" and condition.status == "True":
            return Result(IN_PROGRESS, condition.message, condition.reason)
        if condition.type == "Stalled" and condition.status == "True":
            return Result(FAILED, condition.message, condition.reason)
    return None


def _check_ready_condition(obj: Mapping[str, Any]) -> Result | None:
    for condition in _conditions(obj):
        if condition.type != "Ready":
            continue
        if condition.status == "True":
            return Result(CURRENT, "Resource is Ready")
        if condition.status in ("False", "Unknown"):
            return Result(IN_PROGRESS, condition.message, condition.reason)
    return None


def compute(obj: Mapping[str, Any]) -> Result:
    """status.Compute for a custom resource; raises KstatusError where it returns an error."""
    if not isinstance(obj, Mapping):
        raise KstatusError(f"not an object: {obj!r}")
    return (
        _check_generic_properties(obj)
        or _check_ready_condition(obj)
        or Result(CURRENT, "Resource is current")
    )


def flux_status(obj: Mapping[str, Any]) -> Result:
    """What Flux's health check sees for the object: compute's result, or Unknown."""
    try:
        return compute(obj)
    except KstatusError as exc:
        return Result(UNKNOWN, str(exc))
