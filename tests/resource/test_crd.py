"""The CRD in crds/ is generated from the pydantic models and is a valid structural schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxmox_vm_operator.cli import main
from proxmox_vm_operator.crd import custom_resource_definition, render_crd

CRD_FILE = Path(__file__).parents[2] / "crds" / "proxmoxvm.yaml"


def _schema() -> dict[str, Any]:
    version = custom_resource_definition()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if "type" in node or "properties" in node:
            found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found.extend(_walk(value, f"{path}.{key}"))
        if "items" in node:
            found.extend(_walk(node["items"], f"{path}[]"))
    return found


def test_committed_crd_file_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render_crd(), (
        "crds/proxmoxvm.yaml is stale: run `proxmox-vm-operator crd > crds/proxmoxvm.yaml`"
    )


def test_crd_command_prints_the_generated_crd(capsys: Any) -> None:
    assert main(["crd"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == custom_resource_definition()


def test_schema_is_structural_every_node_typed_and_free_of_json_schema_only_keys() -> None:
    for path, node in _walk(_schema()):
        assert "type" in node, f"{path} has no type"
        for key in ("$ref", "anyOf", "allOf", "title", "additionalProperties", "$defs"):
            assert key not in node, f"{path} carries {key}"


def test_every_spec_field_is_documented_for_kubectl_explain() -> None:
    spec = _schema()["properties"]["spec"]
    undocumented = [
        path
        for path, node in _walk(spec, "spec")
        if "description" not in node and not path.endswith("[]")
    ]
    assert undocumented == []


def test_names_defaults_and_bounds_follow_the_contract() -> None:
    crd = custom_resource_definition()
    assert crd["metadata"]["name"] == "proxmoxvms.proxmox.vmop.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "ProxmoxVM",
        "proxmoxvms",
        ["pvm"],
        ["proxmox"],
    )
    spec = _schema()["properties"]["spec"]
    assert spec["required"] == ["connectionRef", "node"]
    destroy = spec["properties"]["destroy"]
    assert destroy["default"] == {}
    assert destroy["properties"]["mode"]["default"] == "Stop"
    assert destroy["properties"]["mode"]["enum"] == ["Stop", "Shutdown"]
    assert destroy["properties"]["shutdownTimeoutSeconds"]["minimum"] == 1
    assert spec["properties"]["powerState"]["default"] == "Running"
    assert spec["properties"]["deletionPolicy"]["enum"] == ["Delete", "Orphan"]
    assert spec["properties"]["vmid"]["minimum"] == 100


def test_vmid_is_immutable_once_set_through_a_cel_rule() -> None:
    rules = _schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert any("oldSelf.vmid" in rule["rule"] for rule in rules)


def test_status_subresource_and_printer_columns() -> None:
    version = custom_resource_definition()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["VMID", "Node", "Phase", "Power", "Age"]
    conditions = _schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
