"""Kubernetes API conventions that need no server state: errors, selectors, patches, names.

Each function does what kube-apiserver does with the same input, as far as kopf, kubectl and the
`kubernetes` client depend on it.
"""

from __future__ import annotations

import copy
import datetime
import re
import secrets
from collections.abc import Mapping
from typing import Any

import attrs
import jsonpatch
import kmock

Body = dict[str, Any]


def api_error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """An error that the emulator renders as a Kubernetes `Status` body."""
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def status_body(code: int, reason: str, message: str, details: Any = None) -> Body:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    return {**body, "message": message, "reason": reason, "code": code, "details": details or {}}


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_age(timestamp: str) -> str:
    """How `kubectl get` prints ages (apimachinery's HumanDuration): 90s, 5m3s, 47m, 5h, 3d."""
    created = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - created).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{hours}h" if hours < 48 else f"{days}d"


def generate_name(prefix: str) -> str:
    # apiserver's alphabet for generateName suffixes: no vowels, no look-alike characters.
    return prefix + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of API versions in Kubernetes' order: v2, v1, v1beta2, v1beta1, v1alpha1, foo."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if match is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stage, -int(match[1]), -int(match[3] or 0), version)


# Selectors ------------------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_LABEL_EQUALITY = re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})")
_LABEL_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^)]*)\)")
_LABEL_EXISTS = re.compile(rf"(!?)\s*({_KEY})")
_FIELD_EQUALITY = re.compile(r"([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)")

# Fields that every resource can be selected by; some core kinds add theirs, as apiserver does
# (events by involvedObject for `kubectl describe`, secrets by type, namespaces by phase).
_SELECTABLE_FIELDS = ("metadata.name", "metadata.namespace")
_EXTRA_SELECTABLE_FIELDS = {
    "events": ("involvedObject.", "reason", "type", "source", "reportingComponent"),
    "secrets": ("type",),
    "namespaces": ("status.phase",),
}


def _split_requirements(text: str) -> list[str]:
    """Split on the commas between requirements, not on those inside `in (a,b)`."""
    parts: list[str] = []
    depth, current = 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts, current = [*parts, current], ""
        else:
            current += char
    return [part.strip() for part in [*parts, current] if part.strip()]


@attrs.frozen
class Selector:
    """A parsed `labelSelector` plus `fieldSelector`; requirements are ANDed."""

    # (key, positive, values): positive `in`/`=`/exists, negative `notin`/`!=`/`!key`.
    labels: tuple[tuple[str, bool, frozenset[str]], ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()  # (dotted path, positive, value)

    @classmethod
    def parse(cls, label_selector: str, field_selector: str, plural: str) -> Selector:
        labels = []
        for requirement in _split_requirements(label_selector):
            if match := _LABEL_EQUALITY.fullmatch(requirement):
                labels.append((match[1], match[2] != "!=", frozenset({match[3]})))
            elif match := _LABEL_SET.fullmatch(requirement):
                values = frozenset(value.strip() for value in match[3].split(","))
                labels.append((match[1], match[2] == "in", values))
            elif match := _LABEL_EXISTS.fullmatch(requirement):
                labels.append((match[2], not match[1], frozenset()))
            else:
                raise api_error(400, "BadRequest", f"unable to parse requirement: {requirement!r}")
        fields = []
        allowed = _SELECTABLE_FIELDS + _EXTRA_SELECTABLE_FIELDS.get(plural, ())
        for requirement in _split_requirements(field_selector):
            if not (match := _FIELD_EQUALITY.fullmatch(requirement)):
                raise api_error(400, "BadRequest", f"invalid field selector: {requirement!r}")
            if not any(match[1] == f or (f[-1] == "." and match[1].startswith(f)) for f in allowed):
                raise api_error(400, "BadRequest", f"field label not supported: {match[1]}")
            fields.append((match[1], match[2] != "!=", match[3]))
        return cls(tuple(labels), tuple(fields))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(
            (key in labels and (not values or labels[key] in values)) == positive
            for key, positive, values in self.labels
        ) and all(
            (str(dig(obj, path) or "") == value) == positive
            for path, positive, value in self.fields
        )


def dig(obj: Any, dotted_path: str) -> Any:
    for key in dotted_path.split("."):
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


# Patches --------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Body, operations: Any) -> Any:
    """RFC 6902 JSON patch; a failed `test` is 422 (kopf's finalizer patches rely on that)."""
    try:
        return jsonpatch.apply_patch(target, operations)
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        LookupError,
        TypeError,
    ) as e:
        raise api_error(
            422, "Invalid", f"the server rejected our request due to an error: {e}"
        ) from e
