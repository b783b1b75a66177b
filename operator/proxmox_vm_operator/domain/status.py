"""What a pass writes to ``.status``: one typed patch, serialised in one place.

kopf sends the status as a JSON merge patch (RFC 7386): a field left out keeps its old value
and only an explicit null clears it. So a patch says, for every field, one of three things:
keep it (``KEEP``, the default), clear it (``None``), or set it. Forgetting to clear a field
was a real bug (a finished task kept steering later passes); here clearing is a value the
type checker sees, and ``to_merge_patch`` is the only code that turns a patch into JSON.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from pydantic import BaseModel

from .model import (
    Condition,
    DestroyStatus,
    ObservedPower,
    Phase,
    ProxmoxVMStatus,
    TaskRef,
)


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP
Keep: TypeAlias = Literal[_Keep.KEEP]


@dataclass(frozen=True)
class Event:
    """A Kubernetes event to post on the object."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class StatusPatch:
    """A change to ``ProxmoxVMStatus``: its fields, each kept, cleared (None) or set."""

    observed_generation: int | Keep | None = KEEP
    vmid: int | Keep | None = KEEP
    node: str | Keep | None = KEEP
    phase: Phase | Keep | None = KEEP
    power_state: ObservedPower | Keep | None = KEEP
    conditions: Sequence[Condition] | Keep = KEEP
    task: TaskRef | Keep | None = KEEP
    destroy: DestroyStatus | Keep | None = KEEP

    def then(self, later: StatusPatch) -> StatusPatch:
        """This patch followed by ``later``: what ``later`` sets or clears wins."""
        changes = {
            f.name: getattr(later, f.name)
            for f in dataclasses.fields(later)
            if getattr(later, f.name) is not KEEP
        }
        return dataclasses.replace(self, **changes)

    def to_merge_patch(self, current: Mapping[str, object] | None = None) -> dict[str, object]:
        """The JSON merge patch for ``.status``, keyed as the CRD names the fields.

        Given the ``current`` status, a field it already holds as the patch would set it is
        left out, and so is clearing a field it does not have: a pass that changes nothing
        writes nothing (an idle object costs the API server no write per drift check)."""
        patch: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is KEEP:
                continue
            key = ProxmoxVMStatus.model_fields[f.name].alias or f.name
            rendered = _json(value)
            if current is not None and current.get(key) == rendered:
                continue  # also None for a field that is absent: nothing to clear
            patch[key] = rendered
        return patch


def _json(value: object) -> object:
    if isinstance(value, DestroyStatus):
        # Every field present, an unset one as an explicit null: a field left out of the
        # nested merge would keep its old value (status.destroy is merged, not replaced).
        return value.model_dump(by_alias=True, mode="json")
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    return value


def apply_merge_patch(
    current: Mapping[str, object], patch: Mapping[str, object]
) -> dict[str, object]:
    """``current`` after the JSON merge patch ``patch`` (RFC 7386): what the API server keeps."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            inner = merged[key]
            assert isinstance(inner, Mapping)
            merged[key] = apply_merge_patch(inner, value)
        elif isinstance(value, Mapping):
            merged[key] = apply_merge_patch({}, value)
        else:
            merged[key] = value
    return merged
