"""The kube-state-metrics config reads ProxmoxVMs by the CRD's group, version and kind, and
only paths the CRD's schema has (or standard object metadata)."""

from __future__ import annotations

from typing import Any

import pytest

from .tools import CRD, KSM_CONFIG, ksm_config, ksm_metric_names, load_yaml

# Object metadata every Kubernetes object has; the CRD schema leaves metadata open.
STANDARD_METADATA = {
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "finalizers",
}
TYPES = {"Gauge": "gauge", "StateSet": "stateSet", "Info": "info"}


def _crd() -> dict[str, Any]:
    crd: dict[str, Any] = load_yaml(CRD)
    return crd


def _schema() -> dict[str, Any]:
    (version,) = _crd()["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _resource() -> dict[str, Any]:
    (resource,) = ksm_config()["spec"]["resources"]
    return dict(resource)


def _walk(schema: dict[str, Any], path: list[str], where: str) -> dict[str, Any]:
    """The schema at ``path``; a ``[key=value]`` step selects an element of an array."""
    node = schema
    for step in path:
        if step.startswith("[") and step.endswith("]"):
            assert node.get("type") == "array", f"{where}: {step} needs an array"
            node = node["items"]
            continue
        if node.get("type") == "array":
            node = node["items"]
        properties = node.get("properties", {})
        assert step in properties, f"{where}: no field {step!r} in the CRD schema"
        node = properties[step]
    return node


def _check_path(path: list[str], where: str) -> dict[str, Any]:
    if path[:1] == ["metadata"]:
        assert len(path) >= 2 and path[1] in STANDARD_METADATA, f"{where}: {path}"
        assert len(path) == 2 or path[1] in ("labels", "annotations"), f"{where}: {path}"
        return {}
    return _walk(_schema(), path, where)


def _each(metric: dict[str, Any]) -> dict[str, Any]:
    each = metric["each"]
    body: dict[str, Any] = each[TYPES[each["type"]]]
    return body


def test_config_is_a_custom_resource_state_config_map() -> None:
    config_map = load_yaml(KSM_CONFIG)
    assert config_map["kind"] == "ConfigMap"
    assert ksm_config()["kind"] == "CustomResourceStateMetrics"


def test_group_version_kind_is_the_crds() -> None:
    crd = _crd()["spec"]
    (version,) = crd["versions"]
    assert _resource()["groupVersionKind"] == {
        "group": crd["group"],
        "version": version["name"],
        "kind": crd["names"]["kind"],
    }


def test_object_labels_come_from_standard_metadata() -> None:
    assert _resource()["labelsFromPath"] == {
        "namespace": ["metadata", "namespace"],
        "name": ["metadata", "name"],
    }


@pytest.mark.parametrize("metric", _resource()["metrics"], ids=lambda m: m["name"])
def test_metric_paths_exist_in_the_crd_schema(metric: dict[str, Any]) -> None:
    each = metric["each"]
    assert each["type"] in TYPES and set(each) == {"type", TYPES[each["type"]]}
    body = _each(metric)
    where = metric["name"]
    relatives = list(body.get("labelsFromPath", {}).values())
    if "valueFrom" in body:
        relatives.append(body["valueFrom"])
    if not body.get("path"):  # relative to the whole object
        for relative in relatives:
            _check_path(relative, where)
        return
    base = _check_path(body["path"], where)
    if base.get("type") == "array":  # relative to each element
        base = base["items"]
    for relative in relatives:
        _walk(base, relative, where)


@pytest.mark.parametrize(
    "metric",
    [m for m in _resource()["metrics"] if m["each"]["type"] == "StateSet"],
    ids=lambda m: m["name"],
)
def test_state_set_lists_are_the_crd_enums(metric: dict[str, Any]) -> None:
    body = _each(metric)
    field = _check_path(body["path"], metric["name"])
    if field.get("type") == "array":
        field = _walk(field["items"], body["valueFrom"], metric["name"])
    assert body["list"] == field["enum"]


def test_deletion_timestamp_is_a_gauge_that_reads_zero_when_absent() -> None:
    (metric,) = [m for m in _resource()["metrics"] if m["name"] == "deletion_timestamp_seconds"]
    assert metric["each"]["type"] == "Gauge"
    assert metric["each"]["gauge"] == {
        "path": ["metadata", "deletionTimestamp"],
        "nilIsZero": True,
    }


def test_metric_names_are_the_documented_ones() -> None:
    assert ksm_metric_names() == {
        "kube_proxmoxvm_info",
        "kube_proxmoxvm_deletion_timestamp_seconds",
        "kube_proxmoxvm_status_phase",
        "kube_proxmoxvm_status_condition",
        "kube_proxmoxvm_status_destroy_step",
    }
    header = KSM_CONFIG.read_text(encoding="utf-8")
    for name in ksm_metric_names():
        assert name in header


def test_a_path_the_crd_lacks_is_caught() -> None:
    with pytest.raises(AssertionError, match="no field 'vmId'"):
        _check_path(["status", "vmId"], "test")
