"""Steer a simulator in another process or pod: a plain-HTTP control endpoint and its client.

``POST /control/<method>`` with a JSON object of keyword arguments calls one of the
whitelisted :class:`~.server.Simulator` control methods and answers ``{"result": ...}``;
``GET /control/vm/<vmid>``, ``GET /control/requests`` and ``GET /control/tasks`` (and
``GET /control/tasks/<upid>/log``) read its state. Failures answer ``{"error": "..."}`` with
a 4xx status. Values JSON cannot carry travel in a plain form: an :class:`Unreachable` as its
value (``"hang"``), a :class:`GuestBehaviour` as an object of its fields.

The endpoint never shows credentials: token secrets and passwords are not reachable through
it, and recorded requests hold neither. It is off unless asked for and binds to loopback by
default; it is a test fixture, without authentication of its own.

:class:`SimulatorControl` is the client: its methods mirror the Simulator's, so a test can
take either object.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .api import RecordedRequest
from .faults import Unreachable
from .state import ConfigValue, GuestBehaviour

if TYPE_CHECKING:
    from .server import Simulator

# The Simulator methods the endpoint may call: control and seeding, nothing that reveals
# credentials or stops the simulator.
CONTROL_METHODS = frozenset(
    {
        "add_container",
        "add_pool",
        "add_vm",
        "advance",
        "clear_faults",
        "clear_requests",
        "fail_next",
        "fail_task",
        "grant",
        "hold_flock",
        "make_unreachable",
        "pause",
        "refresh_cluster_resources",
        "restore",
        "revoke",
        "set_guest",
        "set_latency",
        "set_lock",
        "set_node_online",
        "set_pool",
        "set_privsep",
        "set_protection",
        "set_quorum",
        "set_time_scale",
        "set_token",
        "start_task_as",
        # Read-only, but answered by a call like the rest.
        "max_tasks_running",
        "vm_ids",
    }
)
# Arguments whose JSON form needs turning back into the object the method takes.
_GUEST_ARGUMENTS = frozenset({"guest", "default_guest"})


def to_json(value: Any) -> Any:
    """The plain-JSON form of a control argument or result."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    return value


def _decode_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    decoded = dict(arguments)
    for name in _GUEST_ARGUMENTS & decoded.keys():
        if isinstance(decoded[name], Mapping):
            decoded[name] = GuestBehaviour(**decoded[name])
    return decoded


class ControlServer:
    """The control endpoint of one simulator, served from its own threads.

    Each request calls the Simulator's thread-safe methods, which hand the work to the
    simulator's loop; so a control call that waits (hold_flock, advance) blocks only itself.
    """

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        self.simulator = simulator
        handler = type("Handler", (_ControlHandler,), {"control": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pve-simulator-control", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def get(self, path: str) -> Any:
        sim = self.simulator
        if path in ("", "/"):
            return {"methods": sorted(CONTROL_METHODS), "pve_version": sim.pve_version}
        if path == "/requests":
            return to_json(sim.requests)
        if path == "/tasks":
            return sim.tasks()
        match = re.fullmatch(r"/vm/(\d+)", path)
        if match:
            return to_json(sim.vm(int(match[1])))
        match = re.fullmatch(r"/tasks/([^/]+)/log", path)
        if match:
            return sim.task_log(urllib.parse.unquote(match[1]))
        raise LookupError(f"no such control path: GET /control{path}")

    def post(self, method: str, arguments: Mapping[str, Any]) -> Any:
        if method not in CONTROL_METHODS:
            raise LookupError(f"no such control method: {method!r}")
        function: Callable[..., Any] = getattr(self.simulator, method)
        return to_json(function(**_decode_arguments(arguments)))


class _ControlHandler(BaseHTTPRequestHandler):
    control: ControlServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the base's parameter names
        """Quiet: the simulator's own output is its start-up banner."""

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith("/control"):
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})
            return
        self._answer(lambda: self.control.get(path.removeprefix("/control")))

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        match = re.fullmatch(r"/control/([a-z_]+)", path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if match is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})
            return
        try:
            arguments = json.loads(body) if body.strip() else {}
        except ValueError:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body is not JSON"})
            return
        if not isinstance(arguments, dict):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object"})
            return
        self._answer(lambda: self.control.post(match[1], arguments))

    def _answer(self, call: Callable[[], Any]) -> None:
        try:
            result = call()
        except LookupError as exc:
            status = HTTPStatus.NOT_FOUND if "no such control" in str(exc) else HTTPStatus.CONFLICT
            self._reply(status, {"error": _describe(exc)})
        except (TypeError, ValueError, RuntimeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": _describe(exc)})
        except Exception as exc:  # anything else still gets an answer, not a dropped socket
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": _describe(exc)})
        else:
            self._reply(HTTPStatus.OK, {"result": result})

    def _reply(self, status: HTTPStatus, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _describe(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return f"{type(exc).__name__}: {text}"


class ControlError(Exception):
    """The control endpoint refused a call: ``status`` and its ``{"error": ...}`` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class SimulatorControl:
    """A client of the control endpoint, with the Simulator's control methods."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    # ------------------------------------------------------------ transport

    def _send(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - http(s) URL given by the caller
            f"{self.base_url}/control{path}",
            data=body,
            method=method,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                payload = json.loads(reply.read())
        except urllib.error.HTTPError as refused:
            try:
                message = str(json.loads(refused.read()).get("error", refused.reason))
            except ValueError:
                message = str(refused.reason)
            raise ControlError(refused.code, message) from None
        return payload["result"]

    def call(self, control_method: str, /, **arguments: Any) -> Any:
        """``POST /control/<control_method>`` with ``arguments`` in their plain-JSON form."""
        body = json.dumps(to_json(arguments)).encode()
        return self._send("POST", f"/{control_method}", body)

    def _get(self, path: str) -> Any:
        return self._send("GET", path)

    # --------------------------------------------------------------- seeding

    def add_vm(
        self,
        vmid: int,
        node: str = "pve1",
        *,
        name: str | None = None,
        running: bool = False,
        tags: Iterable[str] = (),
        config: Mapping[str, ConfigValue] | None = None,
        guest: GuestBehaviour | None = None,
        protection: bool = False,
        template: bool = False,
        lock: str | None = None,
        ha_state: str | None = None,
    ) -> None:
        self.call(
            "add_vm",
            vmid=vmid,
            node=node,
            name=name,
            running=running,
            tags=list(tags),
            config=dict(config or {}),
            guest=guest,
            protection=protection,
            template=template,
            lock=lock,
            ha_state=ha_state,
        )

    def add_container(self, vmid: int, node: str = "pve1") -> None:
        self.call("add_container", vmid=vmid, node=node)

    def set_guest(self, vmid: int, guest: GuestBehaviour) -> None:
        self.call("set_guest", vmid=vmid, guest=guest)

    def set_lock(self, vmid: int, lock: str | None) -> None:
        self.call("set_lock", vmid=vmid, lock=lock)

    def set_protection(self, vmid: int, protection: bool = True) -> None:
        self.call("set_protection", vmid=vmid, protection=protection)

    def hold_flock(self, vmid: int, seconds: float) -> None:
        self.call("hold_flock", vmid=vmid, seconds=seconds)

    def pause(self, vmid: int) -> None:
        self.call("pause", vmid=vmid)

    def start_task_as(self, user: str, vmid: int, action: str = "shutdown", **params: Any) -> str:
        upid: str = self.call("start_task_as", user=user, vmid=vmid, action=action, **params)
        return upid

    def refresh_cluster_resources(self) -> None:
        self.call("refresh_cluster_resources")

    # ----------------------------------------------------------- permissions

    def grant(
        self, principal: str, path: str, privileges: Iterable[str], *, propagate: bool = True
    ) -> None:
        chosen = [privileges] if isinstance(privileges, str) else list(privileges)
        self.call("grant", principal=principal, path=path, privileges=chosen, propagate=propagate)

    def revoke(self, principal: str, path: str) -> None:
        self.call("revoke", principal=principal, path=path)

    def set_privsep(self, token_id: str, privsep: bool) -> None:
        self.call("set_privsep", token_id=token_id, privsep=privsep)

    def add_pool(self, pool: str) -> None:
        self.call("add_pool", pool=pool)

    def set_pool(self, vmid: int, pool: str | None) -> None:
        self.call("set_pool", vmid=vmid, pool=pool)

    # ------------------------------------------------------------ inspection

    def vm(self, vmid: int) -> dict[str, Any] | None:
        snapshot: dict[str, Any] | None = self._get(f"/vm/{vmid}")
        return snapshot

    def vm_exists(self, vmid: int) -> bool:
        return self.vm(vmid) is not None

    def vm_ids(self, *, tag: str | None = None) -> list[int]:
        return [int(vmid) for vmid in self.call("vm_ids", tag=tag)]

    def max_tasks_running(self) -> dict[str, int]:
        return {str(node): int(count) for node, count in self.call("max_tasks_running").items()}

    def set_token(self, token_id: str, secret: str) -> None:
        self.call("set_token", token_id=token_id, secret=secret)

    @property
    def requests(self) -> list[RecordedRequest]:
        return [RecordedRequest(**row) for row in self._get("/requests")]

    def requests_to(self, pattern: str, method: str | None = None) -> list[RecordedRequest]:
        compiled = re.compile(pattern)
        return [
            r
            for r in self.requests
            if compiled.search(r.path) and (method is None or r.method == method)
        ]

    def clear_requests(self) -> None:
        self.call("clear_requests")

    def tasks(self) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self._get("/tasks")
        return tasks

    def task_log(self, upid: str) -> list[str]:
        lines: list[str] = self._get(f"/tasks/{urllib.parse.quote(upid, safe='')}/log")
        return lines

    # ---------------------------------------------------------------- faults

    def fail_next(
        self,
        path: str,
        *,
        method: str | None = None,
        times: int = 1,
        status: int = 500,
        message: str = "simulated failure",
        errors: dict[str, str] | None = None,
    ) -> None:
        self.call(
            "fail_next",
            path=path,
            method=method,
            times=times,
            status=status,
            message=message,
            errors=errors,
        )

    def fail_task(
        self, task_type: str, *, vmid: int | None = None, times: int = 1, message: str
    ) -> None:
        self.call("fail_task", task_type=task_type, vmid=vmid, times=times, message=message)

    def set_latency(self, seconds: float, *, path: str | None = None) -> None:
        self.call("set_latency", seconds=seconds, path=path)

    def clear_faults(self) -> None:
        self.call("clear_faults")

    def make_unreachable(
        self, mode: Unreachable | str = Unreachable.REFUSE, *, for_seconds: float | None = None
    ) -> None:
        self.call("make_unreachable", mode=Unreachable(mode), for_seconds=for_seconds)

    def restore(self) -> None:
        self.call("restore")

    def set_node_online(self, node: str, online: bool) -> None:
        self.call("set_node_online", node=node, online=online)

    def set_quorum(self, quorate: bool) -> None:
        self.call("set_quorum", quorate=quorate)

    # ----------------------------------------------------------------- clock

    def advance(self, seconds: float) -> None:
        self.call("advance", seconds=seconds)

    def set_time_scale(self, scale: float) -> None:
        self.call("set_time_scale", scale=scale)
