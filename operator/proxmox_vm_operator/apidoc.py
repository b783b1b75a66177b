"""Render the ProxmoxVM API reference (``docs/api.md``) from the CRD.

The CRD is generated from the pydantic models (``crd.py``), so the reference, the schema the
API server enforces and what ``kubectl explain`` shows all come from one source. The field
tables are walked out of the CRD's openAPIV3Schema; the names of conditions, annotations and the
finalizer come from the constants the operator itself uses. A test fails when ``docs/api.md``
differs from :func:`render_api_reference`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import yaml

from .crd import custom_resource_definition
from .domain.conditions import DELETING, DELETION_STALLED, READY, RECONCILING, STALLED
from .domain.model import (
    DESTROY_MODE_ANNOTATION,
    FINALIZER,
    FORCE_RELEASE_ANNOTATION,
    GROUP,
    KIND,
    OWNERSHIP_TAG_PREFIX,
    VERSION,
    DestroyMode,
    ProxmoxVMSpec,
    ProxmoxVMStatus,
)
from .domain.reasons import (
    DELETING_MEANINGS,
    READY_MEANINGS,
    STALL_MEANINGS,
    DeletingReason,
    ReadyReason,
    StallReason,
)

JSON = dict[str, Any]
Reason = TypeVar("Reason", bound=StrEnum)

REGENERATE = "proxmox-vm-operator apidoc > docs/api.md"

# ------------------------------------------------------------------------ what the code sets

# The Secret spec.connectionRef names (docs/design.md, "The credentials Secret").
SECRET_KEYS: tuple[tuple[str, bool, str], ...] = (
    ("endpoint", True, "The Proxmox VE API, e.g. `https://pve.example.org:8006`."),
    ("tokenId", True, "The API token's id, `user@realm!name`."),
    (
        "tokenSecret",
        True,
        "The API token's secret. It never appears in logs, events, status or metrics.",
    ),
    ("caCert", False, "PEM certificate(s) to verify the endpoint with, for a private CA."),
    (
        "insecureSkipTLSVerify",
        False,
        '`"true"` turns TLS verification off (tests only). TLS is verified by default.',
    ),
)

# Complete examples: every spec field appears in one of them. A test validates them against
# the models and the CRD's schema.
EXAMPLE_SECRET: JSON = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "pve-lab", "namespace": "lab"},
    "type": "Opaque",
    "stringData": {
        "endpoint": "https://pve.example.org:8006",
        "tokenId": "k8s@pve!operator",
        "tokenSecret": "00000000-0000-0000-0000-000000000000",
        "caCert": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
    },
}

EXAMPLE_CLONE: JSON = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": KIND,
    "metadata": {"name": "web-1", "namespace": "lab"},
    "spec": {
        "connectionRef": {"name": "pve-lab"},
        "node": "pve1",
        "vmid": 1201,
        "name": "web-1",
        "source": {
            "cloneFrom": {"vmid": 9000, "node": "pve1", "full": True, "storage": "local-lvm"}
        },
        "cores": 2,
        "sockets": 1,
        "cpuType": "host",
        "memoryMiB": 4096,
        "networks": [{"slot": "net0", "model": "virtio", "bridge": "vmbr0", "vlan": 10}],
        "cloudInit": {
            "user": "ubuntu",
            "sshKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnly ops@example.org"],
            "ipConfig": ["ip=10.0.10.21/24,gw=10.0.10.1"],
        },
        "tags": ["web", "lab"],
        "description": "front end, managed by proxmox-vm-operator",
        "onBoot": True,
        "agent": True,
        "powerState": "Running",
        "deletionPolicy": "Delete",
        "destroy": {
            "mode": "Shutdown",
            "shutdownTimeoutSeconds": 300,
            "purge": True,
            "destroyUnreferencedDisks": True,
        },
    },
}

EXAMPLE_EMPTY: JSON = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": KIND,
    "metadata": {"name": "scratch", "namespace": "lab"},
    "spec": {
        "connectionRef": {"name": "pve-lab"},
        "node": "pve2",
        "disks": [
            {"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 32},
            {"slot": "scsi1", "storage": "local-lvm", "sizeGiB": 100},
        ],
        "networks": [{"slot": "net0"}],
        "powerState": "Stopped",
        "adopt": False,
        "deletionPolicy": "Orphan",
    },
}

EXAMPLE_STATUS: JSON = {
    "observedGeneration": 4,
    "vmid": 1201,
    "node": "pve1",
    "phase": "Deleting",
    "powerState": "Running",
    "conditions": [
        {
            "type": DELETING,
            "status": "True",
            "reason": "ShuttingDown",
            "message": "waiting for VM 1201 to shut down",
            "lastTransitionTime": "2025-01-01T10:00:00Z",
            "observedGeneration": 4,
        },
        {
            "type": DELETION_STALLED,
            "status": "False",
            "reason": "Progressing",
            "message": "",
            "lastTransitionTime": "2025-01-01T10:00:00Z",
            "observedGeneration": 4,
        },
    ],
    "destroy": {
        "startedAt": "2025-01-01T10:00:00Z",
        "mode": "Shutdown",
        "step": "WaitingForShutdown",
        "taskUpid": "UPID:pve1:0000A1B2:0001C3D4:67750000:qmshutdown:1201:k8s@pve!operator:",
        "shutdownDeadline": "2025-01-01T10:05:00Z",
        "taskSucceeded": False,
        "fallbackUsed": False,
        "attempts": 2,
        "lastError": "",
    },
}

EXAMPLES: tuple[JSON, ...] = (EXAMPLE_CLONE, EXAMPLE_EMPTY)


# ------------------------------------------------------------------------------ the schema


@dataclass(frozen=True)
class FieldRow:
    path: str
    type: str
    required: bool
    default: str
    allowed: str
    description: str


def _type(schema: Mapping[str, Any]) -> str:
    kind = str(schema.get("type", ""))
    if kind == "array":
        return "[]" + _type(schema.get("items", {}))
    return kind


def _text(text: str) -> str:
    """Plain text safe in a Markdown table cell: no pipes, no HTML, no line breaks."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _code(text: object) -> str:
    """A code span; inside one only the table's pipe needs escaping."""
    return "`" + str(text).replace("|", "\\|") + "`"


def _default(schema: Mapping[str, Any]) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    return _code(value if isinstance(value, str) and value else json.dumps(value))


def _bounds(schema: Mapping[str, Any]) -> list[str]:
    parts: list[str] = []
    if "enum" in schema:
        parts.append(", ".join(_code(value) for value in schema["enum"]))
    for low, high, unit in (
        ("minimum", "maximum", ""),
        ("minLength", "maxLength", "length "),
        ("minItems", "maxItems", "items "),
    ):
        if low in schema and high in schema:
            parts.append(f"{unit}{schema[low]} to {schema[high]}")
        elif low in schema:
            parts.append(f"{unit}≥ {schema[low]}")
        elif high in schema:
            parts.append(f"{unit}≤ {schema[high]}")
    if "pattern" in schema:
        parts.append(f"pattern {_code(schema['pattern'])}")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(_code(key) for key in schema.get("x-kubernetes-list-map-keys", []))
        parts.append(f"one entry per {keys}")
    return parts


def _allowed(schema: Mapping[str, Any]) -> str:
    parts = _bounds(schema)
    items = schema.get("items", {})
    if schema.get("type") == "array" and items.get("type") != "object":
        parts += [f"each: {part}" for part in _bounds(items)]
    return "; ".join(parts)


def schema_fields(schema: Mapping[str, Any], prefix: str) -> Iterator[FieldRow]:
    """Every field under an object schema, depth first, in the models' order."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}.{name}"
        description = str(prop.get("description", ""))
        items = prop.get("items", {})
        if not description and items.get("type") == "object":
            description = str(items.get("description", ""))
        yield FieldRow(
            path=path,
            type=_type(prop),
            required=name in required,
            default=_default(prop),
            allowed=_allowed(prop),
            description=description,
        )
        if prop.get("type") == "object":
            yield from schema_fields(prop, path)
        elif prop.get("type") == "array" and items.get("type") == "object":
            yield from schema_fields(items, f"{path}[]")


# ---------------------------------------------------------------------------- the markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _field_table(rows: Sequence[FieldRow]) -> str:
    return _table(
        ("Field", "Type", "Required", "Default", "Allowed values", "Description"),
        [
            (
                _code(row.path),
                _code(row.type),
                "yes" if row.required else "",
                row.default,
                row.allowed,
                _text(row.description),
            )
            for row in rows
        ],
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a PEM certificate) as literal blocks, the way people write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_Dumper.add_representer(str, _represent_str)


def _yaml(*documents: JSON) -> str:
    text = "---\n".join(
        yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100) for document in documents
    )
    return f"```yaml\n{text}```\n"


def _version(crd: JSON) -> JSON:
    versions: list[JSON] = crd["spec"]["versions"]
    return next(v for v in versions if v["name"] == VERSION)


def _resource_section(crd: JSON) -> str:
    spec, version = crd["spec"], _version(crd)
    names = spec["names"]
    schema = version["schema"]["openAPIV3Schema"]
    overview = _table(
        ("", ""),
        [
            ("API group", f"`{spec['group']}`"),
            ("Version", f"`{version['name']}`"),
            ("Kind", f"`{names['kind']}` (list: `{names['listKind']}`)"),
            ("Plural / singular", f"`{names['plural']}` / `{names['singular']}`"),
            ("Short names", ", ".join(f"`{n}`" for n in names.get("shortNames", []))),
            ("Categories", ", ".join(f"`{c}`" for c in names.get("categories", []))),
            ("Scope", spec["scope"]),
            ("Subresources", ", ".join(f"`{s}`" for s in version.get("subresources", {}))),
            ("CustomResourceDefinition", f"`{crd['metadata']['name']}`"),
        ],
    )
    columns = _table(
        ("Column", "Type", "JSON path"),
        [
            (c["name"], c["type"], f"`{c['jsonPath']}`")
            for c in version.get("additionalPrinterColumns", [])
        ],
    )
    return (
        "## The resource\n\n"
        f"{_text(schema.get('description', ''))}\n\n"
        f"{overview}\n"
        "`kubectl get proxmoxvms` (or `kubectl get pvm`, or `kubectl get proxmox` for the "
        "category) prints these columns:\n\n"
        f"{columns}"
    )


def _rules(schema: Mapping[str, Any], path: str) -> str:
    rules = schema.get("x-kubernetes-validations", [])
    if not rules:
        return ""
    rows = [(_code(path), _text(r.get("message", "")), _code(r["rule"])) for r in rules]
    return "\nThe API server also enforces these rules (CEL):\n\n" + _table(
        ("On", "Message", "Rule"), rows
    )


def _fields_section(crd: JSON) -> str:
    schema = _version(crd)["schema"]["openAPIV3Schema"]
    spec, status = schema["properties"]["spec"], schema["properties"]["status"]
    return (
        "## Spec\n\n"
        f"{_text(spec.get('description', ''))} `spec` is required.\n\n"
        "Nested fields are required only when their parent is set. Defaults are applied by "
        "the API server, so `kubectl get -o yaml` shows them.\n\n"
        f"{_field_table(list(schema_fields(spec, 'spec')))}"
        f"{_rules(spec, 'spec')}\n"
        "## Status\n\n"
        f"{_text(status.get('description', ''))} Users do not write it; the `status` "
        "subresource keeps spec updates from changing it.\n\n"
        f"{_field_table(list(schema_fields(status, 'status')))}"
    )


def _reason_table(reasons: type[Reason], meanings: Mapping[Reason, str]) -> str:
    """One row per member of the reason enum, in its declared order; each must have one."""
    return _table(("Reason", "Meaning"), [(f"`{r.value}`", _text(meanings[r])) for r in reasons])


def _conditions_section() -> str:
    return (
        "## Conditions\n\n"
        "`status.conditions` holds conditions in the shape of `metav1.Condition`, one per "
        "type. `lastTransitionTime` moves only when `status` changes.\n\n"
        f"### {READY}\n\n"
        f"Set as soon as the operator first sees the object. `True` when the VM exists, matches "
        f"the spec and is in the desired power state; `False` while it is being brought "
        f"there or cannot be; `Unknown` when the operator cannot tell (Proxmox VE unreachable, "
        f"the VM locked). `kubectl wait "
        f"--for=condition={READY} pvm/NAME` waits for a VM to be ready.\n\n"
        + _reason_table(ReadyReason, READY_MEANINGS)
        + f"\n### {RECONCILING} and {STALLED}\n\n"
        f'They summarise `{READY}` for tools that read these "abnormal-true" conditions '
        f"(Flux's kstatus, `kubectl wait`), and carry `{READY}`'s reason and message. "
        f"`{RECONCILING}=True`: the operator is working towards the spec, or retrying an error "
        f"that heals alone. `{STALLED}=True`: nothing moves until the object, its Secret or "
        f"the VM in Proxmox VE changes (for example `InvalidSpec`, `NotOwned`, a refused "
        f"token). Both are `False` once `{READY}` is `True`.\n\n"
        f"### {DELETING}\n\n"
        f"Set to `True` once the object is being deleted and a destroy is under way; the "
        f"reason names the current step of the destroy (also in `status.destroy.step`).\n\n"
        + _reason_table(DeletingReason, DELETING_MEANINGS)
        + f"\n### {DELETION_STALLED}\n\n"
        f"Set while the object is being deleted. `False` (reason `Progressing`) while the "
        f"destroy moves; `True` when it cannot progress, with one of these reasons. The "
        f"finalizer stays in place: the VM is never assumed gone.\n\n"
        + _reason_table(StallReason, STALL_MEANINGS)
    )


def _metadata_section() -> str:
    modes = " or ".join(f"`{m.value}`" for m in DestroyMode)
    annotations = _table(
        ("Annotation", "Value", "Effect"),
        [
            (
                f"`{DESTROY_MODE_ANNOTATION}`",
                modes,
                "Overrides `spec.destroy.mode`, also on an object already being deleted: the "
                "way to cut a long graceful shutdown short (set it to `Stop`). Other values "
                "are ignored.",
            ),
            (
                f"`{FORCE_RELEASE_ANNOTATION}`",
                '`"true"`',
                "Break-glass: on an object being deleted, the finalizer is released without "
                "touching Proxmox VE, with a Warning event. The VM, if any, is left behind.",
            ),
        ],
    )
    return (
        "## Metadata\n\n"
        "### Annotations\n\n"
        f"{annotations}\n"
        f"The operator also keeps its own bookkeeping in annotations under `{GROUP}/` (the "
        f"progress of its handlers and the last configuration it handled). Do not edit them.\n\n"
        "### Finalizer\n\n"
        f"`{FINALIZER}` is added to every object. Deleting the object runs the destroy "
        f"described by `spec.destroy` (unless `spec.deletionPolicy` is `Orphan`) and removes "
        f"the finalizer only when Proxmox VE reports the VM gone, when the VM is not the "
        f"object's to destroy, or on `{FORCE_RELEASE_ANNOTATION}`.\n\n"
        "### Ownership tag\n\n"
        f"Every VM the operator creates or adopts carries the Proxmox VE tag "
        f"`{OWNERSHIP_TAG_PREFIX}<metadata.uid>`. A VM without the object's tag is never "
        f"changed or destroyed; `spec.adopt: true` adds the tag to an untagged VM.\n"
    )


def _secret_section() -> str:
    rows = [
        (f"`{key}`", "yes" if required else "", _text(text))
        for key, required, text in (SECRET_KEYS)
    ]
    return (
        "## The credentials Secret\n\n"
        "`spec.connectionRef.name` names a Secret in the object's namespace. The operator "
        "reads it with its own service account and picks up changes to it.\n\n"
        + _table(("Key", "Required", "Value"), rows)
    )


def _examples_section() -> str:
    for example in EXAMPLES:
        ProxmoxVMSpec.model_validate(example["spec"])  # an example that fails here is wrong
    ProxmoxVMStatus.model_validate(EXAMPLE_STATUS)
    return (
        "## Examples\n\n"
        "A VM cloned from a template, with cloud-init, destroyed by a graceful shutdown of "
        "at most five minutes, and the Secret with its credentials:\n\n"
        f"{_yaml(EXAMPLE_SECRET, EXAMPLE_CLONE)}\n"
        "An empty VM with two disks, kept stopped, and kept in Proxmox VE when the object "
        "is deleted:\n\n"
        f"{_yaml(EXAMPLE_EMPTY)}\n"
        "The status of the first one a minute into its destroy (its `Ready`, `Reconciling` "
        "and `Stalled` conditions, as they were before the deletion, left out):\n\n"
        f"{_yaml({'status': EXAMPLE_STATUS})}"
    )


def render_api_reference() -> str:
    crd = custom_resource_definition()
    sections = (
        f"# {KIND} API reference\n\n"
        f"<!-- Generated from the CRD by `{REGENERATE}`. Do not edit: change the models in "
        "operator/proxmox_vm_operator/domain/model.py or the generator "
        "operator/proxmox_vm_operator/apidoc.py, and regenerate. -->\n\n"
        f"`{GROUP}/{VERSION}` · `kubectl explain {crd['spec']['names']['plural']}.spec` shows "
        "the same descriptions.\n",
        _resource_section(crd),
        _fields_section(crd),
        _conditions_section(),
        _metadata_section(),
        _secret_section(),
        _examples_section(),
    )
    return "\n".join(sections)


def main() -> int:
    sys.stdout.write(render_api_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
