"""The HTTP face of the simulator: /api2/json with PVE's envelope, auth and error shapes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import socket
import struct
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import schema
from .cluster import Cluster, Listing, Params
from .errors import ApiError, param_error
from .faults import Faults, Unreachable
from .permissions import VM_CONFIG_PRIVILEGES, AllOf, AnyOf, Check, Perm

BASE = "/api2/json"
TICKET_LIFETIME = 2 * 3600
Handler = Callable[[Cluster, str, Params], Awaitable[Any]]


@dataclass(frozen=True)
class RecordedRequest:
    """One API call as the simulator saw it (the credentials themselves are never kept)."""

    method: str
    path: str
    params: dict[str, Any]
    user: str | None
    status: int
    reason: str


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    schema: schema.Schema
    handler: Handler
    # The route's ``permissions => { check => ... }``; None is ``user => 'all'``.
    permission: Check | None = None

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        want = self.template.strip("/").split("/")
        got = path.strip("/").split("/")
        if len(want) != len(got):
            return None
        found: dict[str, str] = {}
        for pattern, segment in zip(want, got, strict=True):
            if pattern.startswith("{"):
                found[pattern[1:-1]] = urllib.parse.unquote(segment)
            elif pattern != segment:
                return None
        return found


async def _version(c: Cluster, user: str, p: Params) -> Any:
    return c.version()


async def _nodes(c: Cluster, user: str, p: Params) -> Any:
    return c.list_nodes(user)


async def _resources(c: Cluster, user: str, p: Params) -> Any:
    return c.cluster_resources(p.get("type"), user)


async def _nextid(c: Cluster, user: str, p: Params) -> Any:
    return c.next_id(p.get("vmid"))


async def _vm_list(c: Cluster, user: str, p: Params) -> Any:
    return c.list_vms(p["node"], user)


async def _create(c: Cluster, user: str, p: Params) -> Any:
    return await c.create_vm(user, p)


async def _clone(c: Cluster, user: str, p: Params) -> Any:
    return await c.clone_vm(user, p)


async def _config_get(c: Cluster, user: str, p: Params) -> Any:
    return c.config(p["node"], p["vmid"], bool(p.get("current")))


async def _config_post(c: Cluster, user: str, p: Params) -> Any:
    return await c.update_config(user, p, synchronous=False)


async def _config_put(c: Cluster, user: str, p: Params) -> Any:
    return await c.update_config(user, p, synchronous=True)


async def _pending(c: Cluster, user: str, p: Params) -> Any:
    return c.pending(p["node"], p["vmid"])


async def _status_current(c: Cluster, user: str, p: Params) -> Any:
    return c.status_current(p["node"], p["vmid"])


async def _start(c: Cluster, user: str, p: Params) -> Any:
    return await c.start(user, p)


async def _stop(c: Cluster, user: str, p: Params) -> Any:
    return await c.stop(user, p)


async def _shutdown(c: Cluster, user: str, p: Params) -> Any:
    return await c.shutdown(user, p)


async def _reboot(c: Cluster, user: str, p: Params) -> Any:
    return await c.reboot(user, p)


async def _destroy(c: Cluster, user: str, p: Params) -> Any:
    return await c.destroy(user, p)


async def _task_list(c: Cluster, user: str, p: Params) -> Any:
    return c.task_list(p["node"], p, user)


async def _task_status(c: Cluster, user: str, p: Params) -> Any:
    return c.task(p["node"], p["upid"], user).status_reply()


async def _task_log(c: Cluster, user: str, p: Params) -> Any:
    return c.task_log(p["node"], p["upid"], p.get("start", 0), p.get("limit", 50), user)


async def _task_kill(c: Cluster, user: str, p: Params) -> Any:
    c.kill_task(p["node"], p["upid"], user)


async def _ha_list(c: Cluster, user: str, p: Params) -> Any:
    return c.ha_resources()


async def _ha_get(c: Cluster, user: str, p: Params) -> Any:
    return c.ha_resource(p["sid"])


async def _ha_add(c: Cluster, user: str, p: Params) -> Any:
    c.ha_add(p)


async def _ha_delete(c: Cluster, user: str, p: Params) -> Any:
    c.ha_remove(p["sid"])


VM = "/nodes/{node}/qemu/{vmid}"
# Each route's permission check, from its ``permissions`` in pve-manager PVE/API2.pm,
# PVE/API2/Cluster.pm, PVE/API2/Tasks.pm, pve-ha-manager PVE/API2/HA/Resources.pm and
# qemu-server PVE/API2/Qemu.pm; None (user => 'all') routes filter or check inside.
VM_AUDIT = Perm("/vms/{vmid}", ("VM.Audit",))
VM_POWER = Perm("/vms/{vmid}", ("VM.PowerMgmt",))
VM_CONFIG_ANY = Perm("/vms/{vmid}", VM_CONFIG_PRIVILEGES, any=True)
# Qemu.pm clone_vm: VM.Clone on the source, VM.Allocate on the new vmid or on the pool.
CLONE_CHECK = AllOf(
    (
        Perm("/vms/{vmid}", ("VM.Clone",)),
        AnyOf(
            (
                Perm("/vms/{newid}", ("VM.Allocate",)),
                Perm("/pool/{pool}", ("VM.Allocate",), require_param="pool"),
            )
        ),
    )
)
HA_AUDIT = Perm("/", ("Sys.Audit",))
HA_MODIFY = Perm("/", ("Sys.Console",))
ROUTES = (
    Route("GET", "/version", schema.EMPTY, _version),
    Route("GET", "/nodes", schema.EMPTY, _nodes),
    Route("GET", "/cluster/resources", schema.RESOURCES, _resources),
    Route("GET", "/cluster/nextid", schema.NEXTID, _nextid),
    Route("GET", "/cluster/ha/resources", schema.HA_LIST, _ha_list, HA_AUDIT),
    Route("POST", "/cluster/ha/resources", schema.HA_CREATE, _ha_add, HA_MODIFY),
    Route("GET", "/cluster/ha/resources/{sid}", schema.HA_SID, _ha_get, HA_AUDIT),
    Route("DELETE", "/cluster/ha/resources/{sid}", schema.HA_SID, _ha_delete, HA_MODIFY),
    Route("GET", "/nodes/{node}/qemu", schema.VM_LIST, _vm_list),
    Route("POST", "/nodes/{node}/qemu", schema.CREATE_VM, _create),
    Route("DELETE", VM, schema.DESTROY, _destroy, Perm("/vms/{vmid}", ("VM.Allocate",))),
    Route("GET", f"{VM}/config", schema.CONFIG_GET, _config_get, VM_AUDIT),
    Route("POST", f"{VM}/config", schema.CONFIG_POST, _config_post, VM_CONFIG_ANY),
    Route("PUT", f"{VM}/config", schema.CONFIG_PUT, _config_put, VM_CONFIG_ANY),
    Route("GET", f"{VM}/pending", schema.VM_PATH, _pending, VM_AUDIT),
    Route("GET", f"{VM}/status/current", schema.VM_PATH, _status_current, VM_AUDIT),
    Route("POST", f"{VM}/status/start", schema.START, _start, VM_POWER),
    Route("POST", f"{VM}/status/stop", schema.STOP, _stop, VM_POWER),
    Route("POST", f"{VM}/status/shutdown", schema.SHUTDOWN, _shutdown, VM_POWER),
    Route("POST", f"{VM}/status/reboot", schema.REBOOT, _reboot, VM_POWER),
    Route("POST", f"{VM}/clone", schema.CLONE, _clone, CLONE_CHECK),
    Route("GET", "/nodes/{node}/tasks", schema.TASK_LIST, _task_list),
    Route("GET", "/nodes/{node}/tasks/{upid}/status", schema.TASK_PATH, _task_status),
    Route("GET", "/nodes/{node}/tasks/{upid}/log", schema.TASK_LOG, _task_log),
    Route("DELETE", "/nodes/{node}/tasks/{upid}", schema.TASK_PATH, _task_kill),
)

TOKEN_ID = re.compile(r"([^\s:@!]+@[A-Za-z][A-Za-z0-9.\-_]*)!([A-Za-z][A-Za-z0-9.\-_]*)")


@dataclass
class Access:
    """API tokens, users with passwords, and the tickets handed out to them."""

    tokens: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    auth_failure_delay: float = 0.0
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def issue_ticket(self, user: str, now: float) -> tuple[str, str]:
        stamp = f"{int(now):08X}"
        plain = f"PVE:{user}:{stamp}"
        ticket = f"{plain}::{self._sign(plain)}"
        csrf = f"{stamp}:{self._sign('csrf:' + user + ':' + stamp)}"
        return ticket, csrf

    def verify_ticket(self, ticket: str, now: float) -> tuple[str, str] | None:
        """The ticket's user and timestamp, or None if forged or expired."""
        plain, _, signature = ticket.partition("::")
        parts = plain.split(":")
        if (
            len(parts) != 3
            or parts[0] != "PVE"
            or not hmac.compare_digest(signature, self._sign(plain))
        ):
            return None
        user, stamp = parts[1], parts[2]
        if now - int(stamp, 16) > TICKET_LIFETIME:
            return None
        return user, stamp

    def verify_csrf(self, user: str, stamp: str, token: str | None) -> bool:
        expected = f"{stamp}:{self._sign('csrf:' + user + ':' + stamp)}"
        return token is not None and hmac.compare_digest(token, expected)

    def verify_token(self, value: str) -> str | None:
        """The identity ``user@realm!tokenid`` for ``USER@REALM!TOKENID=SECRET``, or None.

        PVE splits the value at its last ``=`` (``/^(.*)=(.*)$/``).
        """
        token_id, sep, secret = value.rpartition("=")
        if not sep or not TOKEN_ID.fullmatch(token_id):
            return None
        expected = self.tokens.get(token_id)
        if expected is None or not hmac.compare_digest(secret, expected):
            return None
        return token_id


class ProxmoxApi:
    """aiohttp handler for every request under /api2/json."""

    def __init__(self, cluster: Cluster, access: Access, faults: Faults) -> None:
        self.cluster = cluster
        self.access = access
        self.faults = faults
        self.records: list[RecordedRequest] = []
        self.reachable = asyncio.Event()
        self.reachable.set()
        self.transports: set[asyncio.Transport] = set()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", BASE + "{tail:/.*}", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, reason="Not Found", text="")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            self.transports = {t for t in self.transports if not t.is_closing()}
            self.transports.add(request.transport)
        if self.faults.unreachable is Unreachable.RESET:
            self._reset(request)
            return web.Response(status=500)  # never delivered: the connection is gone
        if self.faults.unreachable is Unreachable.HANG:
            await self.reachable.wait()
        path = request.match_info["tail"]
        user: str | None = None
        params: dict[str, Any] = {}
        try:
            # pve-http-server authenticates first, then refuses a body on GET/DELETE.
            user = await self._authenticate(request, path)
            body = await request.read()
            if (request.content_length or body) and request.method not in ("POST", "PUT"):
                raise ApiError(
                    501, f"Unexpected content for method '{request.method}'", empty_body=True
                )
            params = self._parse_params(request, body)
            data = await self._dispatch(request.method, path, params, user)
            if isinstance(data, Listing):
                response = web.json_response({"data": data.rows, "total": data.total})
            else:
                response = web.json_response({"data": data})
        except ApiError as error:
            response = self._error_response(error)
        self.records.append(
            RecordedRequest(
                request.method,
                path,
                {k: v for k, v in params.items() if k != "password"},
                user,
                response.status,
                response.reason,
            )
        )
        return response

    def _reset(self, request: web.Request) -> None:
        """Abort the connection with a TCP reset, as a crashing proxy or firewall would."""
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    @staticmethod
    def _parse_params(request: web.Request, body: bytes) -> dict[str, Any]:
        """Body parameters, then the query string on top (pve-http-server ``extract_params``)."""
        params: dict[str, Any] = {}
        if body:
            if request.content_type == "application/json":
                try:
                    decoded = json.loads(body)
                except ValueError:
                    raise ApiError(400, "malformed JSON body") from None
                if not isinstance(decoded, dict):
                    raise ApiError(400, "JSON body must be an object")
                params.update(decoded)
            else:
                for key, value in urllib.parse.parse_qsl(body.decode(), keep_blank_values=True):
                    params[key] = value if key not in params else [*_as_list(params[key]), value]
        for key in request.query:
            values = request.query.getall(key)
            params[key] = values[0] if len(values) == 1 else list(values)
        return params

    async def _authenticate(self, request: web.Request, path: str) -> str | None:
        """The caller's identity; every refusal is a 401 with an empty body, after the delay."""
        if path == "/access/ticket" and request.method in ("GET", "POST"):
            return None
        try:
            return self._identify(request)
        except ApiError:
            await self._auth_failure_delay()
            raise

    def _identify(self, request: web.Request) -> str:
        authorization = request.headers.get("Authorization", "")
        # The cookie wins, then a ticket in the Authorization header, then an API token.
        ticket = _auth_value(request.headers.get("Cookie", ""), "PVEAuthCookie")
        if ticket is None:
            ticket = _auth_value(authorization, "PVEAuthCookie")
        if ticket is None:
            token = _auth_value(authorization, "PVEAPIToken")
            if token is not None:
                identity = self.access.verify_token(token)
                if identity is None:
                    raise ApiError(401, "Authentication failed!", empty_body=True)
                return identity
            raise ApiError(401, "No ticket", empty_body=True)
        verified = self.access.verify_ticket(ticket, self.cluster.clock.wall())
        if verified is None:
            raise ApiError(401, "Authentication failed!", empty_body=True)
        user, stamp = verified
        if request.method != "GET" and not self.access.verify_csrf(
            user, stamp, request.headers.get("CSRFPreventionToken")
        ):
            raise ApiError(401, "Permission denied - invalid csrf token", empty_body=True)
        return user

    async def _auth_failure_delay(self) -> None:
        if self.access.auth_failure_delay:
            await self.cluster.clock.sleep(self.access.auth_failure_delay)

    async def _dispatch(
        self, method: str, path: str, params: dict[str, Any], user: str | None
    ) -> Any:
        if path == "/access/ticket":
            # GET is a no-op that answers null (the GUI uses it); POST logs in.
            return await self._login(params) if method == "POST" else None
        assert user is not None
        for route in ROUTES:
            path_params = route.match(method, path)
            if path_params is not None:
                break
        else:
            raise ApiError(501, f"Method '{method} {path}' not implemented")
        latency = self.faults.latency_for(path)
        if latency:
            await self.cluster.clock.sleep(latency)
        failure = self.faults.take_failure(method, path)
        if failure is not None:
            raise ApiError(
                failure.status,
                failure.message,
                failure.errors,
                empty_body=failure.status in (401, 595, 596),
            )
        # pve-manager PVE/HTTPServer.pm rest_handler: a parameter may repeat a path value
        # only with the same value (since pve-manager a2beaf13, PVE 6.3).
        duplicates = {
            name: "duplicate parameter (already defined in URI) with conflicting values!"
            for name, value in params.items()
            if name in path_params and str(value) != path_params[name]
        }
        if duplicates:
            raise param_error(duplicates)
        # pve-manager PVE/HTTPServer.pm rest_handler: the route's permission check runs on the
        # raw parameters, before the call is proxied to its node and before the schema.
        raw_params = {k: v if isinstance(v, str) else str(v) for k, v in params.items()}
        self.cluster.permissions.check_route(route.permission, user, {**raw_params, **path_params})
        if "node" in path_params:
            # pveproxy forwards the call to {node} before the node checks the parameters: an
            # unknown node is a failed hostname lookup, an offline one a 595.
            self.cluster.node(path_params["node"])
        values = route.schema.validate({**params, **path_params}, user, self.cluster.version_info)
        return await route.handler(self.cluster, user, values)

    async def _login(self, params: dict[str, Any]) -> Any:
        values = schema.TICKET.validate(params, None)
        user = str(values["username"])
        if "@" not in user:
            user = f"{user}@{values.get('realm', 'pam')}"
        password = str(values["password"])
        now = self.cluster.clock.wall()
        if password.startswith("PVE:"):  # a valid ticket renews itself (proxmoxer does this)
            verified = self.access.verify_ticket(password, now)
            accepted = verified is not None and verified[0] == user
        else:
            expected = self.access.users.get(user)
            accepted = expected is not None and hmac.compare_digest(password, expected)
        if not accepted:
            await self._auth_failure_delay()
            # Raised by the handler, not the auth layer: a normal JSON error body.
            raise ApiError(401, "authentication failure")
        ticket, csrf = self.access.issue_ticket(user, now)
        return {"username": user, "ticket": ticket, "CSRFPreventionToken": csrf, "cap": {}}

    @staticmethod
    def _error_response(error: ApiError) -> web.Response:
        # PVE puts the first line of the message in the reason phrase; proxmoxer reads it there.
        reason = error.message.splitlines()[0] if error.message else "error"
        if error.empty_body:
            response = web.Response(status=error.status, reason=reason, body=b"")
        else:
            body: dict[str, Any] = {"data": None, "message": error.message + "\n"}
            if error.errors:
                body["errors"] = error.errors
            response = web.json_response(body, status=error.status, reason=reason)
        response.force_close()
        return response

    def close_connections(self) -> None:
        for transport in self.transports:
            transport.abort()
        self.transports.clear()


def _auth_value(header: str, key: str) -> str | None:
    """pve-http-server ``extract_auth_value``: ``KEY=value`` or ``KEY value``, URI-unescaped."""
    match = re.search(rf"(?:^|\s){re.escape(key)}(?:=| )([^;]*)", header)
    if match is None or not match.group(1):
        return None
    return urllib.parse.unquote(match.group(1))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
