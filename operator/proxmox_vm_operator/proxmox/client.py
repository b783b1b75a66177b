"""The asynchronous Proxmox VE client: the only place that talks to proxmoxer and requests.

proxmoxer is blocking, and the operator lives in kopf's asyncio loop, so every HTTP call runs
in this client's own worker threads (one proxmoxer session per thread: requests sessions are
not thread-safe). All calls go through `_call`, which validates path parts, encodes parameters
the way PVE accepts them, reports to the metrics observer and classifies every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from proxmoxer import ProxmoxAPI

from .errors import RejectedError, UnreachableError, classify
from .models import (
    ActiveTask,
    ProxmoxVersion,
    TaskStatus,
    Upid,
    VmConfig,
    VmResource,
    VmStatus,
    parse_upid,
)
from .settings import ConnectionSettings

log = logging.getLogger(__name__)

ParamValue = str | int | float | bool | None
T = TypeVar("T")

_NODE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?")
_VMID_RANGE = range(100, 1_000_000_000)  # pve-vmid
_VM = "/nodes/{node}/qemu/{vmid}"
# root@pam-only; a token is always refused, and bypassing a lock is never our call to make.
_FORBIDDEN_PARAMS = frozenset({"skiplock"})


@dataclass(frozen=True)
class ApiCall:
    """One HTTP exchange, for metrics. `endpoint` is the path template, never a raw id."""

    method: str
    endpoint: str  # e.g. /nodes/{node}/qemu/{vmid}/status/stop
    status_code: int | None  # None when no HTTP answer came back
    duration_seconds: float


ApiCallObserver = Callable[[ApiCall], None]


def encode_params(params: Mapping[str, ParamValue]) -> dict[str, str | int | float]:
    """Parameters as PVE accepts them: booleans as 1/0 (proxmoxer would send "True", which PVE
    refuses with 400), None dropped, and never a `skiplock`."""
    forbidden = _FORBIDDEN_PARAMS.intersection(params)
    if forbidden:
        raise RejectedError(f"refusing to send {', '.join(sorted(forbidden))}")
    encoded: dict[str, str | int | float] = {}
    for name, value in params.items():
        if isinstance(value, bool):
            encoded[name] = int(value)
        elif value is not None:
            encoded[name] = value
    return encoded


@dataclass
class _Outcome:
    data: Any
    error: Exception | None
    duration_seconds: float


@dataclass(frozen=True)
class _VmListing:
    """A successful `/cluster/resources?type=vm` answer. `sent_at` is on the client's clock,
    read just before the request was handed to a worker: never later than the real send, so
    the listing is never taken for fresher than it is."""

    sent_at: float
    vms: tuple[VmResource, ...]  # VmResource is frozen: safe to hand to every caller


@dataclass(frozen=True)
class _VmListingRequest:
    sent_at: float
    answer: asyncio.Task[_VmListing]


class ProxmoxClient:
    """Typed, non-blocking access to one Proxmox VE cluster.

    Every method returns a successful answer or raises a `ProxmoxError` (see `errors`).
    Use as `async with ProxmoxClient(settings) as client:` or call `close()`.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        observer: ApiCallObserver | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_concurrent_calls: int = 4,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``monotonic``: the clock listing ages and ``asked_after`` moments are read on."""
        self.settings = settings
        self.monotonic = monotonic
        self._observer = observer
        self._timeout = (connect_timeout, read_timeout)
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_concurrent_calls, thread_name_prefix="proxmox")
        # The CA from the Secret, in a file because requests wants a path; private (mkstemp).
        self.ca_file: str | None = None
        if settings.ca_cert_pem:
            fd, self.ca_file = tempfile.mkstemp(prefix="proxmox-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as handle:
                handle.write(settings.ca_cert_pem)
        self._verify = self.ca_file or not settings.insecure_skip_tls_verify
        # Read once per connection (this client), again when Proxmox refuses a parameter.
        self._version: ProxmoxVersion | None = None
        # One cluster listing serves every caller of this client (see `list_vms`).
        self._vm_listing: _VmListing | None = None
        self._vm_listing_in_flight: _VmListingRequest | None = None
        # The event loop keeps only weak references to tasks.
        self._vm_listing_tasks: set[asyncio.Task[_VmListing]] = set()
        # The listing that starts when the one in flight ends (see `_next_vm_listing`).
        self._vm_listing_follow_up: asyncio.Task[_VmListing] | None = None
        self._finalizer = weakref.finalize(self, _release, self._executor, self.ca_file)

    def __repr__(self) -> str:
        return f"ProxmoxClient({self.settings.endpoint}, token {self.settings.token_id})"

    async def __aenter__(self) -> ProxmoxClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads and remove the CA file. Idempotent."""
        self._finalizer()

    # -- reads -------------------------------------------------------------------------------

    async def version(self) -> ProxmoxVersion:
        """Read `/version` now; the operator asks `known_version`, which caches it."""
        return await self._call(ProxmoxVersion.from_api, "GET", "/version")

    async def known_version(self, *, refresh: bool = False) -> ProxmoxVersion:
        """The cluster's version, read once per client (``refresh``: read it again)."""
        if self._version is None or refresh:
            self._version = await self.version()
        return self._version

    async def knows_overrule_shutdown(self) -> bool:
        """Whether `status/stop` takes `overrule-shutdown` (PVE 8.2 and later)."""
        return (await self.known_version()).knows_overrule_shutdown

    async def active_tasks(self, node: str) -> list[ActiveTask]:
        """The tasks running on ``node`` that this token may see: its own, and everyone's
        with Sys.Audit on the node (pve-manager Tasks.pm node_tasks)."""
        params: dict[str, ParamValue] = {"source": "active", "limit": 500}
        return await self._call(
            lambda rows: [ActiveTask.from_api(row) for row in rows],
            "GET",
            "/nodes/{node}/tasks",
            params,
            node=node,
        )

    async def list_vms(
        self, *, max_age: float = 0.0, asked_after: float | None = None
    ) -> list[VmResource]:
        """Every QEMU VM of the cluster (LXC containers are left out), from one listing that
        serves every caller of this client.

        Freshness is the caller's choice, in moments read from `client.monotonic()`:
        - ``max_age``: the last listing is good enough if its request was sent at most this
          many seconds ago. The default 0 always asks again; an id the caller merely wants to
          look up (presence, the node a VM lives on) may accept a few seconds.
        - ``asked_after``: only a listing whose request was sent at or after this moment will
          do. A decision that something is ABSENT must pass the moment that matters (e.g.
          when the delete task ended, or before the create was sent), so that an older
          listing never answers for a later state.
        A listing in flight is joined, whatever ``max_age``, when it was sent at or after
        ``asked_after``: nothing fresher could be had. Concurrent callers that need a new
        listing send one request between them. A failed listing is raised to every caller
        that joined it and is never kept.
        """
        listing = await self._shared_vm_listing(max_age=max_age, asked_after=asked_after)
        return list(listing.vms)

    async def find_vm(
        self, vmid: int, *, max_age: float = 0.0, asked_after: float | None = None
    ) -> VmResource | None:
        """The VM with this id anywhere in the cluster; None only when Proxmox answered and the
        answer lacks it (an LXC container with the id does not count as the VM).

        Freshness as in `list_vms`: a None that will be acted on as "absent" needs
        ``asked_after``; a presence lookup may accept ``max_age``."""
        listing = await self._shared_vm_listing(max_age=max_age, asked_after=asked_after)
        return next((vm for vm in listing.vms if vm.vmid == vmid), None)

    async def next_vmid(self) -> int:
        """The lowest free id; nothing is reserved, so a create may still lose it (TAKEN)."""
        return await self._call(_parse_vmid, "GET", "/cluster/nextid")

    async def vmid_unused(self, vmid: int) -> bool:
        """Whether no VM or container has ``vmid``. pve-manager PVE/API2/Cluster.pm nextid
        checks a given id and refuses a used one with 400 "VM N already exists"."""
        try:
            await self._call(_parse_vmid, "GET", "/cluster/nextid", {"vmid": vmid})
        except RejectedError as exc:
            if "already exists" in exc.message:
                return False
            raise
        return True

    async def vm_status(self, node: str, vmid: int) -> VmStatus:
        return await self._call(
            VmStatus.from_api, "GET", f"{_VM}/status/current", node=node, vmid=vmid
        )

    async def vm_config(self, node: str, vmid: int) -> VmConfig:
        return await self._call(VmConfig.from_api, "GET", f"{_VM}/config", node=node, vmid=vmid)

    async def pending_keys(self, node: str, vmid: int) -> list[str]:
        """Config keys whose change waits for the next start (`GET .../pending`)."""
        return await self._call(_parse_pending_keys, "GET", f"{_VM}/pending", node=node, vmid=vmid)

    async def task_status(self, upid: str) -> TaskStatus:
        """The task's state; an unparsable UPID is REJECTED without a request."""
        try:
            task = parse_upid(upid)
        except ValueError as exc:
            raise RejectedError(str(exc)) from None
        return await self._call(
            TaskStatus.from_api,
            "GET",
            "/nodes/{node}/tasks/{upid}/status",
            node=task.node,
            upid=task.raw,
        )

    # -- writes (each asynchronous one returns the UPID of its task) -------------------------

    async def create_vm(self, node: str, vmid: int, config: Mapping[str, ParamValue]) -> Upid:
        self._check_vmid(vmid)
        params = {**config, "vmid": vmid}
        return await self._call(parse_upid, "POST", "/nodes/{node}/qemu", params, node=node)

    async def clone_vm(
        self,
        node: str,
        vmid: int,
        newid: int,
        *,
        name: str | None = None,
        full: bool | None = None,
        storage: str | None = None,
        target: str | None = None,
    ) -> Upid:
        """Clone `vmid` to `newid`; the task's id field is the SOURCE vmid."""
        self._check_vmid(newid)
        params = {"newid": newid, "name": name, "full": full, "storage": storage, "target": target}
        return await self._vm_task("POST", "/clone", node, vmid, params)

    async def update_config(
        self,
        node: str,
        vmid: int,
        changes: Mapping[str, ParamValue],
        *,
        delete: Sequence[str] = (),
        digest: str | None = None,
    ) -> None:
        """PUT config: synchronous; on a running VM most keys stay pending until restart."""
        params = {**changes, "delete": ",".join(delete) or None, "digest": digest}
        await self._call(_ignore, "PUT", f"{_VM}/config", params, node=node, vmid=vmid)

    async def start_vm(self, node: str, vmid: int) -> Upid:
        return await self._vm_task("POST", "/status/start", node, vmid, {})

    async def stop_vm(self, node: str, vmid: int, *, overrule_shutdown: bool = False) -> Upid:
        """Hard stop. `overrule_shutdown` aborts running shutdown tasks first; it is sent only
        when true, because HA resources refuse the parameter, and only where the version knows
        it (see `knows_overrule_shutdown`): elsewhere a plain stop is sent, which waits for a
        running shutdown to end. A 400 naming the parameter (the cluster was downgraded, or
        answered for another node) re-reads the version and sends a plain stop."""
        if overrule_shutdown and await self.knows_overrule_shutdown():
            try:
                return await self._vm_task(
                    "POST", "/status/stop", node, vmid, {"overrule-shutdown": True}
                )
            except RejectedError as exc:
                if "overrule-shutdown" not in exc.errors:
                    raise
                if (await self.known_version(refresh=True)).knows_overrule_shutdown:
                    raise
                log.info("Proxmox refused overrule-shutdown: %s; sending a plain stop", exc)
        return await self._vm_task("POST", "/status/stop", node, vmid, {})

    async def shutdown_vm(
        self, node: str, vmid: int, *, timeout: int | None = None, force_stop: bool | None = None
    ) -> Upid:
        """Graceful shutdown. Without `force_stop` the task FAILS on timeout and the VM runs on."""
        params = {"timeout": timeout, "forceStop": force_stop}
        return await self._vm_task("POST", "/status/shutdown", node, vmid, params)

    async def delete_vm(
        self,
        node: str,
        vmid: int,
        *,
        purge: bool | None = None,
        destroy_unreferenced_disks: bool | None = None,
    ) -> Upid:
        params = {"purge": purge, "destroy-unreferenced-disks": destroy_unreferenced_disks}
        return await self._vm_task("DELETE", "", node, vmid, params)

    # -- plumbing ----------------------------------------------------------------------------

    async def _shared_vm_listing(self, *, max_age: float, asked_after: float | None) -> _VmListing:
        def sent_late_enough(sent_at: float) -> bool:
            return asked_after is None or sent_at >= asked_after

        kept = self._vm_listing
        # max_age 0 means "ask again" even when the clock has not moved since the last one.
        if (
            kept is not None
            and max_age > 0
            and self.monotonic() - kept.sent_at <= max_age
            and sent_late_enough(kept.sent_at)
        ):
            return kept
        request = self._vm_listing_in_flight
        if request is None or request.answer.get_loop() is not asyncio.get_running_loop():
            request = self._start_vm_listing()
        elif not sent_late_enough(request.sent_at):
            # One in flight, but too old for this caller: wait for the listing that starts
            # when it ends, shared by every caller in the same case. One listing at a time
            # stays in flight however many objects ask (500 destroys each proving absence
            # would otherwise send 500 listings of 500 VMs).
            return await asyncio.shield(self._next_vm_listing(request))
        # A cancelled caller must not cancel the request that others have joined.
        return await asyncio.shield(request.answer)

    def _next_vm_listing(self, current: _VmListingRequest) -> asyncio.Task[_VmListing]:
        follow_up = self._vm_listing_follow_up
        if follow_up is None or follow_up.done():
            follow_up = asyncio.create_task(self._listing_after(current))
            self._vm_listing_tasks.add(follow_up)
            follow_up.add_done_callback(self._vm_listing_done)
            self._vm_listing_follow_up = follow_up
        return follow_up

    async def _listing_after(self, current: _VmListingRequest) -> _VmListing:
        with contextlib.suppress(Exception):
            await asyncio.shield(current.answer)  # its outcome is its own callers'
        # Sent now: after every caller that joined this follow-up asked.
        self._vm_listing_follow_up = None
        request = self._start_vm_listing()
        return await asyncio.shield(request.answer)

    def _start_vm_listing(self) -> _VmListingRequest:
        sent_at = self.monotonic()
        answer = asyncio.create_task(self._fetch_vm_listing(sent_at))
        self._vm_listing_tasks.add(answer)
        answer.add_done_callback(self._vm_listing_done)
        # Replaces any older request still in flight: later callers join the newest.
        request = _VmListingRequest(sent_at, answer)
        self._vm_listing_in_flight = request
        return request

    async def _fetch_vm_listing(self, sent_at: float) -> _VmListing:
        try:
            vms = await self._call(_parse_vm_list, "GET", "/cluster/resources", {"type": "vm"})
        finally:
            # Cleared here rather than in a done callback, so that no caller can join a
            # request that has already failed.
            in_flight = self._vm_listing_in_flight
            if in_flight is not None and in_flight.answer is asyncio.current_task():
                self._vm_listing_in_flight = None
        listing = _VmListing(sent_at, tuple(vms))
        # Requests may end out of order; keep the one sent last.
        if self._vm_listing is None or self._vm_listing.sent_at <= sent_at:
            self._vm_listing = listing
        return listing

    def _vm_listing_done(self, answer: asyncio.Task[_VmListing]) -> None:
        self._vm_listing_tasks.discard(answer)
        if not answer.cancelled():
            # Its callers may all have been cancelled; retrieving the error here keeps
            # asyncio from logging it as never retrieved.
            answer.exception()

    async def _vm_task(
        self, method: str, suffix: str, node: str, vmid: int, params: Mapping[str, ParamValue]
    ) -> Upid:
        return await self._call(parse_upid, method, _VM + suffix, params, node=node, vmid=vmid)

    async def _call(
        self,
        parse: Callable[[Any], T],
        method: str,
        endpoint: str,
        params: Mapping[str, ParamValue] | None = None,
        **path: str | int,
    ) -> T:
        """Send one request and parse its answer; raise only `ProxmoxError`."""
        for name, value in path.items():
            if name == "node" and not (isinstance(value, str) and _NODE.fullmatch(value)):
                raise RejectedError(f"not a Proxmox node name: {value!r}")
            if name == "vmid":
                self._check_vmid(value)
        wire_params = encode_params(params or {})
        url_path = endpoint.format(**path)
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            self._executor, self._send, method, url_path, wire_params
        )
        code = getattr(outcome.error, "status_code", None) if outcome.error else 200
        self._observe(ApiCall(method, endpoint, code, outcome.duration_seconds))
        log.debug("%s %s -> %s in %.3fs", method, url_path, code, outcome.duration_seconds)
        request = f"{method} {url_path}"
        if outcome.error is not None:
            secret = self.settings.token_secret.get_secret_value()
            raise classify(outcome.error, request=request, secrets=[secret])
        try:
            return parse(outcome.data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Not a usable answer, and above all not evidence that something is absent.
            raise UnreachableError(
                f"{request}: unexpected reply ({type(exc).__name__}: {exc})"
            ) from None

    def _send(self, method: str, path: str, params: dict[str, str | int | float]) -> _Outcome:
        """Runs in a worker thread."""
        started = time.monotonic()
        try:
            resource = self._thread_api()(path.lstrip("/"))
            action = {
                "GET": resource.get,
                "POST": resource.post,
                "PUT": resource.put,
                "DELETE": resource.delete,
            }[method]
            data = action(**params)
        except Exception as exc:
            return _Outcome(None, exc, time.monotonic() - started)
        return _Outcome(data, None, time.monotonic() - started)

    def _thread_api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            s = self.settings
            api = ProxmoxAPI(
                f"[{s.host}]" if ":" in s.host else s.host,
                port=s.port,
                path_prefix=s.path_prefix,
                backend="https",
                service="PVE",
                user=s.token_user,
                token_name=s.token_name,
                token_value=s.token_secret.get_secret_value(),
                verify_ssl=self._verify,
                timeout=self._timeout,
            )
            self._local.api = api
        return api

    def _observe(self, call: ApiCall) -> None:
        if self._observer is None:
            return
        try:
            self._observer(call)
        except Exception:
            # Metrics must never break a call.
            log.exception("Proxmox API call observer failed")

    @staticmethod
    def _check_vmid(vmid: object) -> None:
        if not isinstance(vmid, int) or isinstance(vmid, bool) or vmid not in _VMID_RANGE:
            raise RejectedError(f"not a Proxmox VM id: {vmid!r}")


def _parse_pending_keys(entries: Any) -> list[str]:
    return sorted(
        str(entry["key"]) for entry in entries if "pending" in entry or entry.get("delete")
    )


def _parse_vm_list(entries: Any) -> list[VmResource]:
    if not isinstance(entries, list):
        raise TypeError(f"expected a list, got {type(entries).__name__}")
    return [VmResource.from_api(entry) for entry in entries if entry["type"] == "qemu"]


def _parse_vmid(value: Any) -> int:
    # PVE sends the id as a string; accept a number too.
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TypeError(f"expected a VM id, got {value!r}")
    return int(value)


def _ignore(data: Any) -> None:
    return None


def _release(executor: ThreadPoolExecutor, ca_file: str | None) -> None:
    executor.shutdown(wait=False, cancel_futures=True)
    if ca_file:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ca_file)
