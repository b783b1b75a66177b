"""How kube-apiserver authorizes a request with RBAC, for checking a ClusterRole offline.

`request_attributes` reads an HTTP request the way the API server's RequestInfoFactory does
(verb, API group, resource, subresource, namespace, name, or a non-resource URL);
`rule_allows` is RBAC's rule matching. Only ClusterRoles bound cluster-wide are modelled.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# Subresources of a namespace itself: /api/v1/namespaces/NAME/status is not a resource "status".
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_SPECIAL_VERBS = {"proxy", "watch"}
# Every authenticated client may call these (the bootstrap ClusterRoles system:discovery and
# system:public-info-viewer, bound to system:authenticated), so no role has to grant them.
DISCOVERY_NON_RESOURCE_URLS = (
    "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
    "/readyz", "/version", "/version/",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What RBAC decides on; `path` is set (and the rest empty) for a non-resource request."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_resource_request(self) -> bool:
        return not self.path

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        if not self.is_resource_request:
            return f"{self.verb} {self.path}"
        where = f" in {self.namespace}" if self.namespace else ""
        named = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {self.api_group or 'core'}/{self.full_resource}{named}{where}"


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The authorization attributes of one HTTP request (kube-apiserver's reading)."""
    verb = method.lower()
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return Attributes(verb=verb, path=path)
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return Attributes(verb=verb, path=path)
        group, parts = parts[0], parts[1:]
    parts = parts[1:]  # the version
    if parts[0] in _SPECIAL_VERBS:
        verb, parts = parts[0], parts[1:]
    else:
        verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method.upper(), "")  # fmt: skip
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) > 1 else ""
    subresource = parts[2] if len(parts) > 2 and verb != "proxy" else ""
    if not name and verb == "get":
        watch = query.get("watch")
        verb = "watch" if watch is not None and watch.lower() not in ("false", "0") else "list"
    if not name and verb in ("list", "watch"):
        # A list or watch of one object by field selector is authorized as that object.
        for term in query.get("fieldSelector", "").split(","):
            key, equals, value = term.partition("=")
            if equals and not key.endswith("!") and key.strip() == "metadata.name":
                name = value.removeprefix("=").strip()
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, group, resource, subresource, namespace, name)


def _matches(values: Iterable[str], value: str) -> bool:
    values = list(values)
    return "*" in values or value in values


def rule_allows(rule: Mapping[str, Any], attributes: Attributes) -> bool:
    """RBAC's PolicyRule matching for one request."""
    if not attributes.is_resource_request:
        urls = rule.get("nonResourceURLs") or []
        return _matches(rule.get("verbs", []), attributes.verb) and any(
            url == attributes.path or (url.endswith("*") and fnmatch.fnmatch(attributes.path, url))
            for url in urls
        )
    if rule.get("nonResourceURLs"):
        return False
    resources = rule.get("resources", [])
    resource_ok = (
        "*" in resources
        or attributes.full_resource in resources
        or (attributes.subresource and f"*/{attributes.subresource}" in resources)
    )
    names = rule.get("resourceNames") or []
    return bool(
        _matches(rule.get("verbs", []), attributes.verb)
        and _matches(rule.get("apiGroups", []), attributes.api_group)
        and resource_ok
        and (not names or attributes.name in names)
    )


def role_allows(role: Mapping[str, Any], attributes: Attributes) -> bool:
    return any(rule_allows(rule, attributes) for rule in role.get("rules", []))


def discovery_allows(attributes: Attributes) -> bool:
    """Whether the default discovery roles let any authenticated client make this request."""
    rule = {"nonResourceURLs": list(DISCOVERY_NON_RESOURCE_URLS), "verbs": ["get"]}
    return rule_allows(rule, attributes)


@dataclasses.dataclass(frozen=True)
class Grant:
    """One verb on one resource of one rule: the unit a least-privilege check accounts for."""

    rule: int
    api_group: str
    resource: str
    verb: str
    resource_names: tuple[str, ...]

    def covers(self, attributes: Attributes) -> bool:
        single = {
            "apiGroups": [self.api_group],
            "resources": [self.resource],
            "verbs": [self.verb],
            "resourceNames": list(self.resource_names),
        }
        return rule_allows(single, attributes)

    def __str__(self) -> str:
        names = f" {list(self.resource_names)}" if self.resource_names else ""
        return f"rule {self.rule}: {self.verb} {self.api_group or 'core'}/{self.resource}{names}"


def grants(role: Mapping[str, Any]) -> Iterator[Grant]:
    for index, rule in enumerate(role.get("rules", [])):
        names = tuple(rule.get("resourceNames") or ())
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    yield Grant(index, group, resource, verb, names)
