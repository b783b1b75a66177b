"""docs/api.md: generated from the CRD, complete, and in step with what the operator sets."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from proxmox_vm_operator import apidoc
from proxmox_vm_operator.crd import custom_resource_definition
from proxmox_vm_operator.domain import conditions, model, reasons
from proxmox_vm_operator.proxmox import settings

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"


@pytest.fixture(scope="module")
def document() -> str:
    return API_MD.read_text()


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = custom_resource_definition()["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    return schema


def _paths(schema: Mapping[str, Any], prefix: str) -> Iterator[str]:
    """Every field path below an object schema (independent of the generator's own walk)."""
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}.{name}"
        yield path
        if "properties" in prop:
            yield from _paths(prop, path)
        if "properties" in prop.get("items", {}):
            yield from _paths(prop["items"], f"{path}[]")


def _example_paths(value: Any, prefix: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield f"{prefix}.{key}"
            yield from _example_paths(inner, f"{prefix}.{key}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield from _example_paths(item, f"{prefix}[]")


def test_docs_api_md_is_what_the_generator_writes(document: str) -> None:
    assert document == apidoc.render_api_reference(), (
        f"docs/api.md is stale: regenerate it with `{apidoc.REGENERATE}`"
    )


def test_every_spec_and_status_field_of_the_crd_is_in_the_reference(document: str) -> None:
    properties = _schema()["properties"]
    fields = [*_paths(properties["spec"], "spec"), *_paths(properties["status"], "status")]
    assert "spec.destroy.shutdownTimeoutSeconds" in fields
    assert "spec.disks[].sizeGiB" in fields
    missing = [path for path in fields if f"| `{path}` |" not in document]
    assert missing == []


def test_the_reference_gives_defaults_enums_and_bounds_from_the_schema(document: str) -> None:
    row = next(line for line in document.splitlines() if line.startswith("| `spec.destroy.mode`"))
    assert "`Stop`" in row and "`Shutdown`" in row
    row = next(line for line in document.splitlines() if line.startswith("| `spec.vmid`"))
    assert f"{model.VMID_MIN} to {model.VMID_MAX}" in row
    row = next(line for line in document.splitlines() if line.startswith("| `spec.node`"))
    assert "| yes |" in row


def test_the_examples_use_every_spec_field() -> None:
    used = {path for example in apidoc.EXAMPLES for path in _example_paths(example["spec"], "spec")}
    assert set(_paths(_schema()["properties"]["spec"], "spec")) - used == set()


@pytest.mark.parametrize("example", apidoc.EXAMPLES, ids=lambda e: e["metadata"]["name"])
def test_each_example_is_valid_for_the_crd_and_the_models(example: dict[str, Any]) -> None:
    jsonschema.validate(example, _schema())
    model.ProxmoxVMSpec.model_validate(example["spec"])


def test_the_example_status_is_valid_for_the_crd_and_the_models() -> None:
    jsonschema.validate(apidoc.EXAMPLE_STATUS, _schema()["properties"]["status"])
    model.ProxmoxVMStatus.model_validate(apidoc.EXAMPLE_STATUS)


def test_a_broken_example_is_caught_by_the_schema() -> None:
    broken = {**apidoc.EXAMPLE_EMPTY, "spec": {**apidoc.EXAMPLE_EMPTY["spec"], "cores": 0}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _schema())


def test_every_condition_type_has_a_section(document: str) -> None:
    types = [
        value
        for name, value in vars(conditions).items()
        if name.isupper() and isinstance(value, str) and value[:1].isupper()
    ]
    assert {"Ready", "Deleting", "DeletionStalled"} <= set(types)
    for type_ in types:
        assert re.search(rf"^### (.* and )?{type_}( and .*)?$", document, re.M), type_


def test_the_annotations_and_the_finalizer_are_documented(document: str) -> None:
    for name in (
        model.FINALIZER,
        model.DESTROY_MODE_ANNOTATION,
        model.FORCE_RELEASE_ANNOTATION,
        model.OWNERSHIP_TAG_PREFIX,
    ):
        assert f"`{name}" in document, name


def test_the_secret_keys_marked_required_are_the_ones_the_operator_requires() -> None:
    documented = {key for key, required, _ in apidoc.SECRET_KEYS if required}
    assert documented == set(settings._REQUIRED)


# ----------------------------------------------- condition reasons: every enum member, documented


REASON_ENUMS = [
    (reasons.ReadyReason, reasons.READY_MEANINGS, conditions.READY),
    (reasons.DeletingReason, reasons.DELETING_MEANINGS, conditions.DELETING),
    (reasons.StallReason, reasons.STALL_MEANINGS, conditions.DELETION_STALLED),
]


@pytest.mark.parametrize(
    ("enum", "meanings", "condition"), REASON_ENUMS, ids=[c for _, _, c in REASON_ENUMS]
)
def test_every_reason_has_a_meaning_in_its_conditions_section(
    document: str, enum: type[StrEnum], meanings: Mapping[StrEnum, str], condition: str
) -> None:
    assert set(meanings) == set(enum)
    section = document.split(f"### {condition}\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([A-Za-z]+)` \| (.+) \|$", section, re.M)
    assert [reason for reason, _ in rows] == [member.value for member in enum]
    assert all(meaning.strip() for _, meaning in rows)


def test_every_reason_is_a_valid_condition_reason() -> None:
    """metav1.Condition's reason pattern, which the CRD enforces on status writes."""
    for enum, _, type_ in REASON_ENUMS:
        for member in enum:
            model.Condition.model_validate(
                {
                    "type": type_,
                    "status": "False",
                    "reason": member.value,
                    "lastTransitionTime": "2030-01-01T00:00:00Z",
                }
            )
