"""Render the ProxmoxVM CustomResourceDefinition from the pydantic models.

The CRD in ``crds/`` is this function's output, checked by a test, so the schema that the
API server enforces and the models the operator parses with can never drift apart.
"""

from __future__ import annotations

from typing import Any

import yaml

from .domain.model import (
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ProxmoxVMSpec,
    ProxmoxVMStatus,
)

JSON = dict[str, Any]

# Keys of pydantic's JSON Schema that a structural OpenAPI v3 schema has no use for or forbids.
_DROPPED_KEYS = ("title", "additionalProperties")

VMID_IMMUTABLE = {
    "rule": "!has(oldSelf.vmid) || (has(self.vmid) && self.vmid == oldSelf.vmid)",
    "message": "spec.vmid is immutable once set",
}


def _structural(node: Any, definitions: JSON) -> Any:
    """Inline $refs, turn Optional[X] into X, and drop keys Kubernetes rejects."""
    if isinstance(node, list):
        return [_structural(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # a description next to the $ref wins
    options = node.pop("anyOf", None)
    if options is not None:
        concrete = [o for o in options if o.get("type") != "null"]
        if len(concrete) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {options}")
        node = {**concrete[0], **node}
        if node.get("default", "") is None:
            del node["default"]
        node = _structural(node, definitions)
    for key in _DROPPED_KEYS:
        node.pop(key, None)
    out = {key: _structural(value, definitions) for key, value in node.items()}
    if out.get("type") == "object" and "properties" in out:
        # Nested objects with defaults inside: default the object itself to {} so the API
        # server applies those inner defaults even when the user leaves the object out.
        for name, prop in out["properties"].items():
            if (
                prop.get("type") == "object"
                and "default" not in prop
                and name not in out.get("required", [])
                and any("default" in p for p in prop.get("properties", {}).values())
                and not prop.get("required")
            ):
                prop["default"] = {}
    return out


def _schema(model: type[Any]) -> JSON:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    schema: JSON = _structural(raw, definitions)
    return schema


def custom_resource_definition() -> JSON:
    spec_schema = _schema(ProxmoxVMSpec)
    spec_schema["x-kubernetes-validations"] = [VMID_IMMUTABLE]
    status_schema = _schema(ProxmoxVMStatus)
    for condition_list in (status_schema["properties"]["conditions"],):
        condition_list["x-kubernetes-list-type"] = "map"
        condition_list["x-kubernetes-list-map-keys"] = ["type"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "VMID", "type": "integer", "jsonPath": ".status.vmid"},
                        {"name": "Node", "type": "string", "jsonPath": ".spec.node"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Power", "type": "string", "jsonPath": ".status.powerState"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Proxmox VE virtual machine managed by "
                            "proxmox-vm-operator. Deleting the object destroys the VM "
                            "according to spec.destroy (a hard stop by default).",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `proxmox-vm-operator crd` from the pydantic models. Do not edit.\n"
    return header + yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=100)
