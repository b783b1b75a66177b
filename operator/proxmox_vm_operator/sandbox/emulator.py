"""The stateful layer over kmock 0.8: objects, resourceVersions, finalizers, watches, CRDs.

kmock's KubernetesScaffold parses requests, serves discovery and renders errors; kmock's own
KubernetesEmulator lacks most apiserver rules (no resourceVersion, uid or generation, no
watch from a resourceVersion, no selectors, no PUT, a 500 where a JSON-patch test fails, CRDs
stored but never served), so this handler keeps its own store and answers every request for
a resource from a low-priority fallback. kmock reactions (``emulator['patch'] << 500``) still
take precedence, e.g. to inject faults.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import functools
import gzip
import hashlib
import importlib.resources
import itertools
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
from kmock._internal import parsing
from kmock._internal.rendering import Response

from .apimachinery import (
    Body,
    Selector,
    api_error,
    dig,
    generate_name,
    human_age,
    json_patch,
    merge_patch,
    now_rfc3339,
    status_body,
    version_priority,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
Key = tuple[kmock.resource, str | None, str]  # (storage resource, namespace, name)

NAMESPACES = kmock.resource("", "v1", "namespaces")
SECRETS = kmock.resource("", "v1", "secrets")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
# The finalizers that DELETE with a propagationPolicy adds and the garbage collector removes.
GC_FINALIZERS = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}
# Metadata that only the server sets: clients' values are ignored on updates.
SYSTEM_METADATA = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "generation", "resourceVersion")  # fmt: skip
CRD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
MERGE_PATCH_TYPES = (
    "application/merge-patch+json", "application/json", "application/strategic-merge-patch+json"
)  # fmt: skip
JSON_HEADERS = {"Content-Type": "application/json"}
NOT_FOUND = "the server could not find the requested resource"
NS_NOT_FOUND = 'namespaces "{name}" not found'


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock 0.8 crashes on /api/v1/namespaces[/NAME[/status|finalize]]; parse those here."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    ):
        name, subresource = [*parts[3:], None, None][:2]
        return parsing.ParsedPath("", "v1", "namespaces", None, name, subresource)
    return _kmock_parse_path(path)


# kmock's Request._parse looks the function up at call time; patch once even if re-imported.
_kmock_parse_path = getattr(parsing.parse_path, "__wrapped__", parsing.parse_path)
_parse_path.__wrapped__ = _kmock_parse_path  # type: ignore[attr-defined]
parsing.parse_path = _parse_path


@attrs.frozen
class Served:
    """A resource as requested (group/version/plural) and where its objects are stored."""

    resource: kmock.resource
    storage: kmock.resource  # a CRD's storage version: all its served versions share objects
    info: kmock.ResourceInfo

    @property
    def group(self) -> str:
        return self.resource.group or ""

    @property
    def plural(self) -> str:
        return self.resource.plural or ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.resource.version}" if self.group else f"{self.resource.version}"

    @property
    def kind(self) -> str:
        return self.info.kind or self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.info.subresources

    def error(self, code: int, reason: str, name: str, message: str) -> kmock.KubernetesError:
        """An error about one object, worded as apiserver words it: `pvms.g "x" not found`."""
        qualified = f"{self.plural}.{self.group}" if self.group else self.plural
        fields = {"{qualified}": qualified, "{name}": name, "{kind}": self.kind}
        for placeholder, value in fields.items():  # not str.format: user data may hold braces
            message = message.replace(placeholder, value)
        return api_error(code, reason, message, name=name, group=self.group, kind=self.plural)

    def render(self, obj: Body) -> Body:
        """The object as seen through this served version."""
        same = obj["apiVersion"] == self.api_version
        return obj if same else {**obj, "apiVersion": self.api_version}


@attrs.frozen
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    storage: kmock.resource
    namespace: str | None
    obj: Body
    old: Body | None  # the previous state: objects can enter or leave a watch's selector
    committed_at: float = 0.0  # time.monotonic() when it was stored


@functools.cache
def _bundled_resources() -> bytes:
    """kmock's dump of a K3s cluster's built-in resources (its load_bundled() warns on 3.11)."""
    return gzip.decompress(
        importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes()
    )


def _is_resource_request(request: kmock.Request) -> bool:
    return request.resource is not None and request.resource.plural is not None


def _header(request: kmock.Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _is_blocked(obj: Body) -> bool:
    """Whether a deleted object stays: finalizers left (a namespace also has spec.finalizers)."""
    spec_finalizers = obj["spec"].get("finalizers") if obj["kind"] == "Namespace" else None
    return bool(obj["metadata"].get("finalizers") or spec_finalizers)


@attrs.define(kw_only=True)
class KubeAPIEmulator(kmock.KubernetesScaffold):
    """A kmock handler with an object store, an event log and kube-apiserver's rules."""

    bookmark_interval: float = 30.0  # seconds between BOOKMARKs on watches that allow them
    event_log_size: int = 10_000  # watching from before the oldest kept event gets 410 Expired
    # A slow API server: every watch event reaches its watchers this many seconds after the
    # change (reads stay current), so controllers act on copies that are already stale.
    watch_lag: float = 0.0
    # kmock keeps every request for assertions and scans that log on each new request, so a
    # long-lived emulator (the demo, the e2e process) slows down; keep only the newest ones.
    # None keeps them all, for tests that assert on kmock's request views.
    request_log_size: int | None = None

    _objects: kmock.ObjectsArray = attrs.field(factory=kmock.ObjectsArray, init=False)
    _storage_of: dict[kmock.resource, kmock.resource] = attrs.field(factory=dict, init=False)
    _crd_versions: dict[kmock.resource, Body] = attrs.field(factory=dict, init=False)
    _events: collections.deque[WatchEvent] = attrs.field(init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _last_rv: int = attrs.field(default=0, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._events = collections.deque(maxlen=self.event_log_size)
        self.resources.load_data(_bundled_resources())
        self.fallback[_is_resource_request] << self._serve_resource_request
        self.fallback["get", re.compile(r"/openapi/v3(/.*)?")] << self._serve_openapi
        for name in (*PROTECTED_NAMESPACES, "kube-node-lease"):
            self._create(self._served(NAMESPACES), None, {"metadata": {"name": name}})

    async def __call__(self, raw_request: Any) -> Any:
        try:
            return await super().__call__(raw_request)
        finally:
            self._forget_old_requests()

    def _forget_old_requests(self) -> None:
        keep = self.request_log_size
        if keep is None:
            return
        for log in (self._requests, *(p._requests for p in self._payloads)):
            if len(log) > keep:
                del log[: len(log) - keep]

    # Python access, with the same rules as HTTP: for seeding and assertions --------------------

    @property
    def objects(self) -> kmock.ObjectsArray:
        """kmock's view of all objects and their histories, by (resource, namespace, name)."""
        return self._objects

    def get_object(self, resource: str, name: str, namespace: str | None = None) -> Body | None:
        """A copy of the object as it is now, or None."""
        storage = self._served(kmock.resource(resource)).storage
        return copy.deepcopy(self._live((storage, namespace, name)))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Body]:
        served = self._served(kmock.resource(resource))
        return [
            copy.deepcopy(served.render(o)) for _, o in self._live_items(served.storage, namespace)
        ]

    def create_object(self, resource: str, body: Body, namespace: str | None = None) -> Body:
        return copy.deepcopy(self._create(self._served(kmock.resource(resource)), namespace, body))

    def history(self, resource: str, name: str, namespace: str | None = None) -> list[Body | None]:
        """Every stored version of an object, oldest first; None marks a deletion."""
        key = (self._served(kmock.resource(resource)).storage, namespace, name)
        versions = self._objects[key].history if key in self._objects else []
        return [None if version is None else copy.deepcopy(version.raw) for version in versions]

    async def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until `predicate()` is truthy, re-checking after every change of any object."""
        async with asyncio.timeout(timeout):
            while not (result := predicate()):
                await self._changed.wait()
            return result

    def close(self) -> None:
        """End all watch streams and background controllers (before the HTTP server stops)."""
        self._closing = True
        self._notify()
        for task in self._tasks:
            task.cancel()

    # Store --------------------------------------------------------------------------------------

    def _served(self, resource: kmock.resource) -> Served:
        if resource.plural is None or resource not in self.resources:
            raise api_error(404, "NotFound", NOT_FOUND)
        return Served(resource, self._storage_of.get(resource, resource), self.resources[resource])

    def _live(self, key: Key) -> Body | None:
        found = key in self._objects and not self._objects[key].deleted
        return self._objects[key].raw if found else None

    def _live_items(
        self, storage: kmock.resource, namespace: str | None
    ) -> Iterator[tuple[Key, Body]]:
        in_order = sorted(self._objects.items(), key=lambda item: (item[0][1] or "", item[0][2]))
        for key, obj in in_order:  # by namespace and name, as etcd lists them
            if key[0] == storage and not obj.deleted and namespace in (None, key[1]):
                yield key, obj.raw

    def _require(self, served: Served, namespace: str | None, name: str) -> Body:
        obj = self._live((served.storage, namespace, name))
        if obj is None:
            raise served.error(404, "NotFound", name, '{qualified} "{name}" not found')
        return obj

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _commit(self, served: Served, event_type: str, obj: Body, old: Body | None = None) -> Body:
        """Store a new state with the next resourceVersion, log the event, wake the watchers."""
        self._last_rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._last_rv)
        key = (served.storage, meta.get("namespace"), meta["name"])
        if key not in self._objects:
            self._objects[key] = obj
        elif event_type == "ADDED":
            self._objects[key].create(obj)
        else:
            self._objects[key].history.append(obj)  # for DELETED: the final state, then None
        if event_type == "DELETED":
            self._objects[key].delete()
            if served.storage == CRDS:
                self._unregister_crd(obj)
        self._events.append(
            WatchEvent(
                self._last_rv, event_type, served.storage, key[1], obj, old, time.monotonic()
            )
        )
        self._notify()
        logger.debug("%s %s %s/%s rv=%s", event_type, served.plural, key[1], key[2], self._last_rv)
        return served.render(obj)

    def _run_soon(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run an emulated controller in the background, as a real cluster would."""
        with contextlib.suppress(RuntimeError):  # no loop: synchronous set-up, nothing to run
            task = asyncio.get_running_loop().create_task(job())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # Create -------------------------------------------------------------------------------------

    def _create(
        self, served: Served, namespace: str | None, body: Any, dry_run: bool = False
    ) -> Body:
        if not isinstance(body, dict):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj["metadata"] = dict(obj.get("metadata") or {})
        if served.info.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise api_error(400, "BadRequest", "the object's namespace does not match the URL's")
        self._check_accepts_objects(served, namespace)
        if not meta.get("name") and not meta.get("generateName"):
            message = "metadata.name: Required value: name or generateName is required"
            raise api_error(422, "Invalid", message)
        name = meta.get("name") or generate_name(meta["generateName"])
        if self._live((served.storage, namespace, name)) is not None:
            raise served.error(409, "AlreadyExists", name, '{qualified} "{name}" already exists')

        meta = obj["metadata"] = {k: v for k, v in meta.items() if k not in SYSTEM_METADATA}
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        meta.update({"namespace": namespace} if served.info.namespaced else {})
        obj["apiVersion"], obj["kind"] = served.api_version, served.kind
        if served.has_status:  # only the status subresource writes the status
            obj.pop("status", None)
        if served.storage == NAMESPACES:
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
            obj.update(spec={"finalizers": ["kubernetes"]}, status={"phase": "Active"})
        elif served.storage == CRDS:
            self._validate_crd(obj)
            meta["finalizers"] = [*(meta.get("finalizers") or []), CRD_CLEANUP_FINALIZER]
            obj["status"] = self._crd_status(obj)
        self._normalize(served, obj)
        if dry_run:
            return obj
        if served.storage == CRDS:
            self._register_crd(obj)
        return self._commit(served, "ADDED", obj)

    def _check_accepts_objects(self, served: Served, namespace: str | None) -> None:
        """Nothing new in a missing or terminating namespace, or for a terminating CRD."""
        ns = self._live((NAMESPACES, None, namespace or "")) if served.info.namespaced else {}
        if ns is None:
            raise self._served(NAMESPACES).error(404, "NotFound", namespace or "", NS_NOT_FOUND)
        if ns.get("metadata", {}).get("deletionTimestamp"):
            message = f"unable to create new content in namespace {namespace}: it is terminating"
            raise api_error(403, "Forbidden", message, name=namespace, kind="namespaces")
        crd = self._live((CRDS, None, f"{served.plural}.{served.group}")) if served.group else None
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            message = "create not allowed while custom resource definition is terminating"
            raise api_error(405, "MethodNotAllowed", message)

    @staticmethod
    def _normalize(served: Served, obj: Body) -> None:
        """What apiserver's encoding does to stored objects: no empty metadata lists, etc."""
        meta = obj["metadata"]
        for field in ("finalizers", "labels", "annotations", "ownerReferences"):
            if field in meta and not meta[field]:
                del meta[field]
        if served.storage == SECRETS:
            string_data = obj.pop("stringData", None) or {}
            encoded = {k: base64.b64encode(str(v).encode()) for k, v in string_data.items()}
            obj["data"] = {**(obj.get("data") or {}), **{k: v.decode() for k, v in encoded.items()}}
            obj.setdefault("type", "Opaque")

    # Update: PATCH, PUT -------------------------------------------------------------------------

    def _update(
        self,
        served: Served,
        namespace: str | None,
        name: str,
        change: Callable[[Body], Any],
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Body:
        current = self._require(served, namespace, name)
        candidate = change(copy.deepcopy(current))
        if not isinstance(candidate, dict):
            raise api_error(422, "Invalid", "the resulting object must be a JSON object")
        meta = current["metadata"]
        new_meta: Body = candidate.get("metadata") or {}
        if new_meta.get("name", name) != name or new_meta.get("namespace", namespace) != namespace:
            raise api_error(400, "BadRequest", "the name or namespace differs from the URL's")
        if new_meta.get("resourceVersion") not in (None, "", meta["resourceVersion"]):
            message = (
                'Operation cannot be fulfilled on {qualified} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again"
            )
            raise served.error(409, "Conflict", name, message)

        if subresource == "status":  # the status endpoint changes nothing but the status
            new, status = copy.deepcopy(current), candidate.get("status")
        else:  # and the main endpoint ignores the status
            new, status = candidate, (current if served.has_status else candidate).get("status")
            new["metadata"] = {k: v for k, v in new_meta.items() if k not in SYSTEM_METADATA}
            new["metadata"].update({k: meta[k] for k in SYSTEM_METADATA if k in meta})
        new.pop("status", None)
        new.update({"status": copy.deepcopy(status)} if status is not None else {})
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        self._normalize(served, new)

        added = set(new["metadata"].get("finalizers", [])) - set(meta.get("finalizers", []))
        if meta.get("deletionTimestamp") and added:
            message = (
                '{kind} "{name}" is invalid: metadata.finalizers: Forbidden: no new finalizers '
                f"can be added if the object is being deleted, found new finalizers {sorted(added)}"
            )
            raise served.error(422, "Invalid", name, message)
        if new == current:  # apiserver skips no-op writes: no new resourceVersion, no event
            return served.render(current)
        unversioned = {"metadata", "status"} if served.has_status else {"metadata"}
        if any(new.get(k) != current.get(k) for k in (new.keys() | current.keys()) - unversioned):
            new["metadata"]["generation"] = meta.get("generation", 0) + 1
        if dry_run:
            return served.render(new)
        if served.storage == CRDS:
            self._validate_crd(new)
            self._register_crd(new)
        deleted = meta.get("deletionTimestamp") and not _is_blocked(new)
        return self._commit(served, "DELETED" if deleted else "MODIFIED", new, current)

    def _patch(self, served: Served, request: kmock.Request, dry_run: bool) -> Body:
        content_type = _header(request, "Content-Type").split(";")[0].strip()
        patch = copy.deepcopy(self._body(request))
        is_json_patch = content_type == "application/json-patch+json" or (
            content_type == "application/json" and isinstance(patch, list)
        )
        # Strategic merge needs Go structs' patch strategies; without schemas it is a merge here.
        if not is_json_patch and content_type not in MERGE_PATCH_TYPES:
            message = f"the body of the request was in an unknown format: {content_type}"
            raise api_error(415, "UnsupportedMediaType", message)

        def change(obj: Body) -> Any:
            return json_patch(obj, patch) if is_json_patch else merge_patch(obj, patch)

        name, subresource = request.name or "", request.subresource
        return self._update(served, request.namespace, name, change, subresource, dry_run)

    # Delete -------------------------------------------------------------------------------------

    def _delete(
        self, served: Served, namespace: str | None, name: str, options: Mapping[str, Any]
    ) -> Body:
        current = self._require(served, namespace, name)
        for field, expected in (options.get("preconditions") or {}).items():
            if expected not in (None, current["metadata"].get(field)):
                raise served.error(409, "Conflict", name, f"Precondition failed: {field}")
        if served.storage == NAMESPACES and name in PROTECTED_NAMESPACES:
            message = 'namespaces "{name}" is forbidden: this namespace may not be deleted'
            raise served.error(403, "Forbidden", name, message)
        if current["metadata"].get("deletionTimestamp"):  # already being deleted: a no-op
            return served.render(current)

        new = copy.deepcopy(current)
        meta = new["metadata"]
        orphan = options.get("orphanDependents") in (True, "true")
        policy = options.get("propagationPolicy") or ("Orphan" if orphan else None)
        if policy in GC_FINALIZERS:
            meta["finalizers"] = [*meta.get("finalizers", []), GC_FINALIZERS[policy]]
        if options.get("dryRun"):
            return served.render(new)
        if not _is_blocked(new):
            return self._commit(served, "DELETED", new, current)
        meta.update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
        meta["generation"] = meta.get("generation", 0) + 1
        if served.storage == NAMESPACES:
            new["status"] = {**new.get("status", {}), "phase": "Terminating"}
        result = self._commit(served, "MODIFIED", new, current)

        # The controllers that a real cluster runs for these deletions:
        if policy in GC_FINALIZERS:  # the garbage collector; dependents are not tracked here
            self._run_soon(lambda: self._release(served, namespace, name, GC_FINALIZERS[policy]))
        if served.storage == NAMESPACES:  # the namespace controller: empty it, then drop it
            self._run_soon(lambda: self._empty_then_release(served, name, "kubernetes"))
        elif served.storage == CRDS:  # the CRD controller: delete its objects, then drop it
            self._run_soon(lambda: self._empty_then_release(served, name, CRD_CLEANUP_FINALIZER))
        return result

    async def _release(
        self, served: Served, namespace: str | None, name: str, finalizer: str
    ) -> None:
        def without_finalizer(obj: Body) -> Body:
            finalizers = obj["metadata"].get("finalizers", [])
            obj["metadata"]["finalizers"] = [f for f in finalizers if f != finalizer]
            if finalizer == "kubernetes":  # a namespace's own finalizer is in its spec
                obj["spec"]["finalizers"] = []
            return obj

        with contextlib.suppress(kmock.KubernetesError):  # e.g. gone meanwhile
            self._update(served, namespace, name, without_finalizer)

    async def _empty_then_release(self, owner: Served, name: str, finalizer: str) -> None:
        """Delete the objects of a namespace or a CRD, wait until all are gone, release it."""
        crd = self._require(owner, None, name) if owner.storage == CRDS else None
        storage = self._crd_storage(crd) if crd else None

        def members() -> list[Key]:
            keys = [k for k, obj in self._objects.items() if not obj.deleted]
            return [k for k in keys if (k[0] == storage if storage else k[1] == name)]

        for key in members():
            with contextlib.suppress(kmock.KubernetesError):
                self._delete(self._served(key[0]), key[1], key[2], {})
        await self.wait_for(lambda: not members())  # their own finalizers may take a while
        await self._release(owner, None, name, finalizer)

    # CRDs ---------------------------------------------------------------------------------------

    @staticmethod
    def _validate_crd(crd: Body) -> None:
        spec = crd.get("spec") or {}
        names, versions = spec.get("names") or {}, spec.get("versions") or []
        name = crd["metadata"]["name"]
        storage_versions = [v for v in versions if v.get("storage")]
        plural, kind = names.get("plural"), names.get("kind")
        failures = {
            "spec.group: Required value": not spec.get("group"),
            "spec.names: plural and kind are required": not (plural and kind),
            "spec.scope: Unsupported value": spec.get("scope") not in ("Namespaced", "Cluster"),
            "spec.versions: exactly one must be storage": len(storage_versions) != 1,
            "metadata.name: must be <plural>.<group>": name != f"{plural}.{spec.get('group')}",
        }
        if problems := [message for message, failed in failures.items() if failed]:
            message = f'CustomResourceDefinition "{name}" is invalid: {"; ".join(problems)}'
            raise api_error(422, "Invalid", message, name=name, group=CRDS.group, kind=CRDS.plural)

    @staticmethod
    def _crd_status(crd: Body) -> Body:
        now, spec = now_rfc3339(), crd["spec"]
        condition = {"status": "True", "lastTransitionTime": now}
        return {
            "conditions": [
                {"type": "NamesAccepted", **condition, "reason": "NoConflicts",
                 "message": "no conflicts found"},
                {"type": "Established", **condition, "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted"},
            ],
            "acceptedNames": {"singular": spec["names"]["kind"].lower(), **spec["names"]},
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
        }  # fmt: skip

    @staticmethod
    def _crd_storage(crd: Body) -> kmock.resource:
        spec = crd["spec"]
        storage_version = next(v["name"] for v in spec["versions"] if v.get("storage"))
        return kmock.resource(spec["group"], storage_version, spec["names"]["plural"])

    def _register_crd(self, crd: Body) -> None:
        self._unregister_crd(crd)
        spec, names = crd["spec"], crd["spec"]["names"]
        for version in (v for v in spec["versions"] if v.get("served", True)):
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[resource] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec["scope"] == "Namespaced",
                verbs=CRD_VERBS,
                shortnames=names.get("shortNames") or (),
                categories=names.get("categories") or (),
                subresources=set(version.get("subresources") or {}) & {"status", "scale"},
            )
            self._storage_of[resource] = self._crd_storage(crd)
            self._crd_versions[resource] = version

    def _unregister_crd(self, crd: Body) -> None:
        group_plural = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        for resource in [kmock.resource(r) for r in self.resources]:
            if (resource.group, resource.plural) == group_plural:
                del self.resources[resource]
                self._storage_of.pop(resource, None)
                self._crd_versions.pop(resource, None)

    # HTTP ---------------------------------------------------------------------------------------

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        if request.data is None and request.body:
            message = (
                f"only JSON bodies are emulated, not {_header(request, 'Content-Type')}; kubectl's "
                "`create secret|namespace|...` send protobuf: apply a manifest instead, e.g. "
                "`kubectl create secret ... --dry-run=client -o yaml | kubectl apply -f -`"
            )
            raise api_error(415, "UnsupportedMediaType", message)
        return request.data

    @staticmethod
    def _check_url(served: Served, request: kmock.Request) -> None:
        namespaced, method, sub = bool(served.info.namespaced), request.method, request.subresource
        spans_namespaces = request.name is None and method == kmock.method.GET  # list or watch
        if (request.namespace is not None) != namespaced and not (namespaced and spans_namespaces):
            raise api_error(404, "NotFound", NOT_FOUND)
        if sub not in (None, "status") or (sub and not served.has_status):
            raise api_error(404, "NotFound", NOT_FOUND)
        if sub and method not in (kmock.method.GET, kmock.method.PATCH, kmock.method.PUT):
            raise api_error(405, "MethodNotAllowed", f"{method.value} is not allowed on {sub}")

    async def _serve_resource_request(self, request: kmock.Request) -> kmock.Payload:
        # kmock keeps the status and headers of a returned Response on the reaction for the
        # next requests: so every answer sets both, and the body is always JSON.
        status, payload = self._answer(request)
        return Response(status=status, headers=JSON_HEADERS, payload=payload)

    def _answer(self, request: kmock.Request) -> tuple[int, kmock.Payload]:
        assert request.resource is not None
        served, method, namespace, name = (
            self._served(request.resource), request.method, request.namespace, request.name
        )  # fmt: skip
        self._check_url(served, request)
        dry_run = request.params.get("dryRun") == "All"
        # `kubectl get` asks for server-side printing: a Table with the CRD's printer columns.
        table = self._table(served) if "as=Table" in _header(request, "Accept") else None
        show = table or served.render

        if request.action == kmock.action.WATCH:
            return 200, self._watch(served, request, show)
        if method == kmock.method.GET and name is None:
            return 200, self._list(served, request, table)
        if method == kmock.method.GET and name is not None:
            return 200, show(self._require(served, namespace, name))
        if method == kmock.method.POST and name is None:
            return 201, self._create(served, namespace, self._body(request), dry_run)
        if method == kmock.method.PATCH and name is not None:
            return 200, self._patch(served, request, dry_run)
        if method == kmock.method.PUT and name is not None:
            body, subresource = self._body(request), request.subresource
            replace = lambda _: copy.deepcopy(body)  # noqa: E731
            return 200, self._update(served, namespace, name, replace, subresource, dry_run)
        if method == kmock.method.DELETE and name is not None:
            body = self._body(request)
            options = {**(body if isinstance(body, dict) else {}), **request.params}
            options["dryRun"] = dry_run or options.get("dryRun") == ["All"]
            return 200, self._delete(served, namespace, name, options)
        raise api_error(405, "MethodNotAllowed", f"{method.value} is not supported on this URL")

    def _selector(self, served: Served, request: kmock.Request) -> Callable[[Body], bool]:
        labels, fields = (
            request.params.get("labelSelector", ""),
            request.params.get("fieldSelector", ""),
        )
        selector, name = Selector.parse(labels, fields, served.plural), request.name
        return lambda obj: name in (None, obj["metadata"]["name"]) and selector.matches(obj)

    def _list(
        self, served: Served, request: kmock.Request, table: Callable[..., Body] | None
    ) -> Body:
        selected = self._selector(served, request)
        objs = [
            obj for _, obj in self._live_items(served.storage, request.namespace) if selected(obj)
        ]
        if table is not None:
            return table(*objs)
        kind, meta = f"{served.kind}List", {"resourceVersion": str(self._last_rv)}
        items = [served.render(obj) for obj in objs]
        return {"apiVersion": served.api_version, "kind": kind, "metadata": meta, "items": items}

    def _table(self, served: Served) -> Callable[..., Body]:
        age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        name = {"name": "Name", "type": "string", "format": "name", "jsonPath": ".metadata.name"}
        printer_columns = self._crd_versions.get(served.resource, {}).get(
            "additionalPrinterColumns"
        )
        columns = [name, *(printer_columns or [age])]
        fields = ("name", "type", "format", "description", "priority")
        definitions = [{k: c.get(k, 0 if k == "priority" else "") for k in fields} for c in columns]

        def cell(obj: Body, column: Body) -> Any:  # only plain .dotted.paths are evaluated
            value = dig(obj, column["jsonPath"].lstrip("."))
            return human_age(value) if value and column.get("type") == "date" else value

        def table(*objs: Body) -> Body:
            rows = [
                {"cells": [cell(o, c) for c in columns], "object": served.render(o)} for o in objs
            ]
            meta = {"resourceVersion": str(self._last_rv)}
            return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                    "columnDefinitions": definitions, "rows": rows}  # fmt: skip

        return table

    async def _watch(
        self, served: Served, request: kmock.Request, show: Callable[[Body], Body]
    ) -> AsyncIterator[kmock.Payload]:
        selected, params, namespace = (
            self._selector(served, request),
            request.params,
            request.namespace,
        )
        since, loop = params.get("resourceVersion") or "0", asyncio.get_running_loop()
        if not since.isdigit():
            raise api_error(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        timeout = float(params.get("timeoutSeconds") or 0)
        deadline = loop.time() + timeout if timeout > 0 else math.inf
        bookmarks = params.get("allowWatchBookmarks") == "true"
        initial_events = params.get("sendInitialEvents") == "true"

        def bookmark(**annotations: str) -> Body:
            meta: Body = {"resourceVersion": str(self._last_rv)}
            meta.update({"annotations": annotations} if annotations else {})
            kind = {"apiVersion": served.api_version, "kind": served.kind}
            return {"type": "BOOKMARK", "object": {**kind, "metadata": meta}}

        yield b""  # send the headers now: clients wait for them before anything else
        cursor = int(since)
        if cursor == 0 or initial_events:  # the current state first, as synthetic ADDED events
            cursor = self._last_rv
            for _, obj in list(self._live_items(served.storage, namespace)):
                if selected(obj):
                    yield {"type": "ADDED", "object": show(obj)}
            if initial_events:
                yield bookmark(**{"k8s.io/initial-events-end": "true"})
        elif self._events and cursor < self._events[0].resource_version - 1:
            message = f"too old resource version: {cursor} ({self._events[0].resource_version - 1})"
            yield {"type": "ERROR", "object": status_body(410, "Expired", message)}
            return

        next_bookmark = loop.time() + self.bookmark_interval if bookmarks else math.inf
        while not self._closing:
            changed = self._changed
            for event in self._events_after(cursor):
                cursor = event.resource_version
                wanted = event.storage == served.storage and namespace in (None, event.namespace)
                if wanted and (event_type := self._visible_type(event, selected)):
                    if (late := event.committed_at + self.watch_lag - time.monotonic()) > 0:
                        await asyncio.sleep(late)  # a lagging watch cache; order is kept
                    yield {"type": event_type, "object": show(event.obj)}
            if (now := loop.time()) >= next_bookmark or (bookmarks and now >= deadline):
                yield bookmark()
                next_bookmark = now + self.bookmark_interval
            if now >= deadline:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(deadline, next_bookmark, now + 60) - now)

    def _events_after(self, rv: int) -> list[WatchEvent]:
        return list(itertools.takewhile(lambda e: e.resource_version > rv, reversed(self._events)))[
            ::-1
        ]

    @staticmethod
    def _visible_type(event: WatchEvent, selected: Callable[[Body], bool]) -> str | None:
        """Like apiserver's watch cache: objects entering/leaving a selection are ADDED/DELETED."""
        now_in, was_in = selected(event.obj), event.old is not None and selected(event.old)
        if event.type != "MODIFIED":
            return event.type if now_in else None
        transitions = {(True, True): "MODIFIED", (True, False): "ADDED", (False, True): "DELETED"}
        return transitions.get((now_in, was_in))

    # Discovery: kmock's has no preferred-version order, says "/v1" for core, and repeats the
    # parent's shortNames on subresources (kubectl then warns about ambiguous short names).

    def _group_versions(self) -> dict[str, list[str]]:
        versions: dict[str, set[str]] = collections.defaultdict(set)
        for resource in map(kmock.resource, self.resources):
            versions[resource.group or ""].add(resource.version or "")
        return {group: sorted(vs, key=version_priority) for group, vs in sorted(versions.items())}

    @staticmethod
    def _api_group(group: str, versions: list[str]) -> Body:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    async def _serve_apis(self, request: kmock.Request) -> kmock.Payload:
        groups = [self._api_group(g, vs) for g, vs in self._group_versions().items() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    async def _serve_group(self, request: kmock.Request) -> kmock.Payload:
        group = request.resource.group if request.resource else None
        if not group or group not in (group_versions := self._group_versions()):
            raise api_error(404, "NotFound", NOT_FOUND)
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            **self._api_group(group, group_versions[group]),
        }

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        group, version = request.resource.group or "", request.resource.version
        entries: list[Body] = []
        for resource in sorted(map(kmock.resource, self.resources), key=lambda r: r.plural or ""):
            if (resource.group or "", resource.version) != (group, version):
                continue
            info = self.resources[resource]
            common = {"namespaced": bool(info.namespaced), "kind": info.kind or resource.plural}
            entries.append({
                "name": resource.plural, "singularName": info.singular or "", **common,
                "verbs": sorted(info.verbs),
                **({"shortNames": sorted(info.shortnames)} if info.shortnames else {}),
                **({"categories": sorted(info.categories)} if info.categories else {}),
            })  # fmt: skip
            for sub in sorted(info.subresources):  # with no shortNames: they'd be ambiguous
                verbs = ["get", "patch", "update"] if sub in ("status", "scale") else ["get"]
                entries.append(
                    {
                        "name": f"{resource.plural}/{sub}",
                        "singularName": "",
                        **common,
                        "verbs": verbs,
                    }
                )
        if not entries:
            raise api_error(404, "NotFound", NOT_FOUND)
        group_version = f"{group}/{version}" if group else f"{version}"
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": entries,
        }

    async def _serve_openapi(self, request: kmock.Request) -> kmock.Payload:
        """Just enough OpenAPI v3 for kubectl: `explain` of CRDs, and no client-side validation.

        kubectl validates manifests itself (with OpenAPI v2, which needs protobuf) unless OpenAPI
        v3 says that the server does it: a `fieldValidation` parameter on PATCH. The emulator
        then accepts any fields, as the CRD schemas are not enforced anyway.
        """
        documents = self._openapi_documents()
        group_version = request.url.path.removeprefix("/openapi/v3").strip("/")
        if not group_version:
            index = {}
            for gv, document in documents.items():
                digest = hashlib.sha256(json.dumps(document).encode()).hexdigest()
                index[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
            return {"paths": index}
        if group_version not in documents:
            raise api_error(404, "NotFound", NOT_FOUND)
        return documents[group_version]

    def _openapi_documents(self) -> dict[str, Body]:
        documents: dict[str, Body] = collections.defaultdict(
            lambda: {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "emulated"},
                     "paths": {}, "components": {"schemas": {}}}
        )  # fmt: skip
        validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        for resource in map(kmock.resource, self.resources):
            info, group, version = self.resources[resource], resource.group or "", resource.version
            prefix = f"apis/{group}/{version}" if group else f"api/{version}"
            gvk = {"group": group, "version": version, "kind": info.kind}
            scope = "namespaces/{namespace}/" if info.namespaced else ""
            patch = {"x-kubernetes-group-version-kind": gvk, "parameters": [validation]}
            documents[prefix]["paths"][f"/{prefix}/{scope}{resource.plural}/{{name}}"] = {
                "patch": {**patch, "responses": {}}
            }
            crd_version = self._crd_versions.get(resource, {})
            if schema := crd_version.get("schema", {}).get("openAPIV3Schema"):
                name = ".".join([*reversed(group.split(".")), f"{version}", f"{info.kind}"])
                schema = {**schema, "x-kubernetes-group-version-kind": [gvk]}
                documents[prefix]["components"]["schemas"][name] = schema
        return dict(documents)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            # An API answer, not a failure: keep `self.errors` for the emulator's own failures.
            with contextlib.suppress(IndexError, ValueError):
                self._errors[-1].remove(exc)
            body = status_body(exc.status, exc.reason or "", exc.message or "", exc.details)
            return aiohttp.web.json_response(body, status=exc.status)
        logger.error("The emulator failed on a request", exc_info=exc)
        return aiohttp.web.json_response(status_body(500, "InternalError", repr(exc)), status=500)
