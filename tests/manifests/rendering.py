"""Rendering the kustomizations and validating what they hold (shared by the manifest tests).

Built-in kinds are validated with kubernetes-validate in strict mode (unknown fields fail).
Custom objects are validated against the openAPIV3Schema of their CRD as the render holds it,
translated into JSON Schema the way the API server reads it (`openapi_to_jsonschema`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import pathlib
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import kubernetes_validate
import referencing
import yaml

from tests.e2e.harness import kubectl_binary

REPO = pathlib.Path(__file__).resolve().parents[2]
INSTALL = REPO / "manifests"
SAMPLES = REPO / "manifests" / "samples"
CRD_FILE = REPO / "crds" / "proxmoxvm.yaml"
SECRET_TEMPLATE = SAMPLES / "secret-template.yaml"

# The oldest Kubernetes the CRD works on (its CEL rule needs 1.29) and the newest schemas
# kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")

Obj = dict[str, Any]

_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def kustomize(directory: pathlib.Path) -> list[Obj]:
    """`kubectl kustomize DIRECTORY`, parsed; fails (with kustomize's message) on an error."""
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load_yaml(path: pathlib.Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def group_of(obj: Mapping[str, Any]) -> str:
    api_version = str(obj["apiVersion"])
    return api_version.rpartition("/")[0]


def find(objects: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    matches = [
        o for o in objects if o["kind"] == kind and name in (None, o["metadata"].get("name"))
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def crds_by_kind(objects: Iterable[Obj]) -> dict[tuple[str, str], Obj]:
    """The CustomResourceDefinitions among `objects`, by (group, kind)."""
    return {
        (o["spec"]["group"], o["spec"]["names"]["kind"]): o
        for o in objects
        if o["kind"] == "CustomResourceDefinition"
    }


# --------------------------------------------------------------------------- built-in kinds


def validate_builtin(obj: Obj, version: str) -> None:
    """Strict kubernetes-validate; raises its ValidationError or SchemaNotFoundError."""
    kubernetes_validate.validate(obj, version, strict=True)


# ------------------------------------------------------------------------- custom resources

# OpenAPI v3 keywords a structural CRD schema may use that mean the same in JSON Schema.
_SAME_IN_JSON_SCHEMA = {
    "type", "description", "default", "enum", "format", "minimum", "maximum", "minLength",
    "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "minProperties",
    "maxProperties", "multipleOf", "required", "title", "example",
}  # fmt: skip


# Keywords that change how the node is read; openapi_to_jsonschema applies them last.
_HANDLED_BELOW = {
    "nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
}  # fmt: skip


class UnsupportedSchema(Exception):
    """The CRD uses something this translation does not understand: never silently ignored."""


def openapi_to_jsonschema(node: Mapping[str, Any], *, top: bool = False) -> Obj:
    """One CRD openAPIV3Schema node as JSON Schema (2020-12), with the API server's reading.

    - objects reject fields their schema does not list (kubectl's strict field validation;
      the API server would otherwise drop them silently), unless
      x-kubernetes-preserve-unknown-fields or additionalProperties say otherwise;
    - nullable adds null; x-kubernetes-int-or-string allows both; OpenAPI 3.0's boolean
      exclusiveMinimum/exclusiveMaximum become JSON Schema's numeric ones;
    - x-kubernetes-list-type set/map: items (or their map keys) must be unique;
    - x-kubernetes-validations: only transition rules (which read oldSelf and so never run on
      create) are accepted and skipped; any other CEL rule raises UnsupportedSchema;
    - the top level gets apiVersion and kind, and metadata is checked as an ObjectMeta.
    """
    out: Obj = {}
    for key, value in node.items():
        if key in _SAME_IN_JSON_SCHEMA:
            out[key] = value
        elif key == "properties":
            out["properties"] = {k: openapi_to_jsonschema(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = openapi_to_jsonschema(value)
        elif key == "additionalProperties":
            translated = value if isinstance(value, bool) else openapi_to_jsonschema(value)
            out["additionalProperties"] = translated
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(v) for v in value]
        elif key == "not":
            out["not"] = openapi_to_jsonschema(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value:
                out[key] = node[bound]
        elif key in _HANDLED_BELOW:
            pass
        elif key == "x-kubernetes-validations":
            creation_rules = [r["rule"] for r in value if "oldSelf" not in r["rule"]]
            if creation_rules:
                raise UnsupportedSchema(f"CEL rules that apply on create: {creation_rules}")
        else:
            raise UnsupportedSchema(f"schema keyword {key!r} is not translated")
    for bound in ("minimum", "maximum"):  # replaced by the exclusive bound
        exclusive = f"exclusive{bound.capitalize()}"
        if node.get(exclusive):
            out.pop(bound, None)

    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map":
        out["x-unique-map-keys"] = list(node.get("x-kubernetes-list-map-keys") or [])
    elif list_type not in (None, "atomic"):
        raise UnsupportedSchema(f"x-kubernetes-list-type {list_type!r}")

    is_object = node.get("type") == "object" or "properties" in node
    open_ended = node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node
    if is_object and not open_ended:
        out["additionalProperties"] = False
    if top:
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = {"$ref": _OBJECT_META}
    return out


def _unique_map_keys(
    validator: Any, keys: list[str], instance: Any, schema: Mapping[str, Any]
) -> Iterable[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    seen: set[str] = set()
    for item in instance:
        key = json.dumps([item.get(k) for k in keys] if isinstance(item, dict) else item)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate entry for map keys {keys}: {key}")
        seen.add(key)


_CRDValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-unique-map-keys": _unique_map_keys}
)


@functools.cache
def _kubernetes_definitions(version: str) -> referencing.Registry:
    schemas = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = schemas / f"v{version}-local-strict" / "_definitions.json"
    definitions = json.loads(path.read_text())
    resource = referencing.Resource.from_contents(definitions)
    return referencing.Registry().with_resource(_DEFINITIONS_ID, resource)


def crd_validator(crd: Mapping[str, Any], api_version: str, k8s_version: str) -> Any:
    """A validator for objects of `crd` at `api_version` (group/version)."""
    served = [v for v in crd["spec"]["versions"] if v.get("served", True)]
    version = next(v for v in served if f"{crd['spec']['group']}/{v['name']}" == api_version)
    schema = openapi_to_jsonschema(version["schema"]["openAPIV3Schema"], top=True)
    return _CRDValidator(schema, registry=_kubernetes_definitions(k8s_version))


def validate_custom(obj: Obj, crds: Mapping[tuple[str, str], Obj], k8s_version: str) -> None:
    """Raise jsonschema's ValidationError (all problems) unless `obj` fits its CRD's schema."""
    crd = crds.get((group_of(obj), obj["kind"]))
    assert crd is not None, f"no CRD in the render for {obj['apiVersion']} {obj['kind']}"
    validator = crd_validator(crd, obj["apiVersion"], k8s_version)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
        raise jsonschema.ValidationError(f"{obj['kind']} {obj['metadata'].get('name')}: {details}")
    scoped = crd["spec"]["scope"] == "Namespaced"
    if not scoped and "namespace" in obj["metadata"]:
        raise jsonschema.ValidationError(f"cluster-scoped {obj['kind']} has a namespace")
