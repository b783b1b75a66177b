"""The simulator as an object: serves over TLS from its own thread, steered from tests.

Every control method is safe to call from any thread: it runs on the simulator's loop and
returns once the change is made, so a test that injects a fault and then calls the API sees
the fault.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from . import schema
from .api import Access, ProxmoxApi, RecordedRequest
from .clock import SimClock
from .cluster import Cluster, Params
from .control import ControlServer
from .errors import ApiError
from .faults import Faults, InjectedFailure, InjectedTaskFailure, Latency, Unreachable
from .permissions import TOKEN_ID
from .state import CONFIG_LOCKS, ConfigValue, GuestBehaviour, HAResource, Timings
from .tls import CertificateFiles, write_certificates
from .versions import DEFAULT_VERSION, PveVersion

T = TypeVar("T")

# What start_task_as can start: the API call's schema and the cluster method behind it.
TASK_ACTIONS: dict[str, tuple[schema.Schema, Callable[[Cluster, str, Params], Any]]] = {
    "start": (schema.START, Cluster.start),
    "stop": (schema.STOP, Cluster.stop),
    "shutdown": (schema.SHUTDOWN, Cluster.shutdown),
    "reboot": (schema.REBOOT, Cluster.reboot),
    "destroy": (schema.DESTROY, Cluster.destroy),
}


class Simulator:
    """A Proxmox VE API on a loopback port, with a scriptable cluster behind it."""

    def __init__(
        self,
        *,
        nodes: Iterable[str] = ("pve1",),
        tokens: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        timings: Timings | None = None,
        cert_dir: str | Path | None = None,
        auth_failure_delay: float = 0.0,
        seed: int | None = None,
        default_guest: GuestBehaviour | None = None,
        tls_hosts: Iterable[str] = (),
        pve_version: str = DEFAULT_VERSION,
        control_host: str = "127.0.0.1",
        control_port: int | None = None,
    ) -> None:
        """``tls_hosts``: more names the server certificate is valid for (besides ``host``,
        127.0.0.1 and localhost), such as the DNS name clients reach it by.

        ``pve_version``: the Proxmox VE release to behave as (7.4 up to 9.x).
        ``control_port``: serve the plain-HTTP control endpoint (see :mod:`.control`) on
        ``control_host``; 0 picks a free port; None (the default) serves none.
        """
        self.host = host
        self.tls_hosts = list(tls_hosts)
        self._requested_port = port
        self.port = port
        self.clock = SimClock(time_scale)
        self.faults = Faults()
        self.cluster = Cluster(
            list(nodes),
            self.clock,
            timings or Timings(),
            self.faults,
            seed,
            default_guest,
            PveVersion.parse(pve_version),
        )
        self.access = Access(dict(tokens or {}), dict(users or {}), auth_failure_delay)
        self.api = ProxmoxApi(self.cluster, self.access, self.faults)
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._own_cert_dir: Path | None = None
        self.certificates: CertificateFiles | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._ssl: ssl.SSLContext | None = None
        self._stopping: asyncio.Event | None = None
        self._restore_job: asyncio.Task[None] | None = None
        self.control_host = control_host
        self.control_port = control_port
        self._control: ControlServer | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        if self.certificates is None:
            raise RuntimeError("the simulator is not started")
        return self.certificates.ca_file

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("already started")
        directory = self._cert_dir
        if directory is None:
            directory = self._own_cert_dir = Path(tempfile.mkdtemp(prefix="pve-sim-"))
        self.certificates = write_certificates(directory, [*self.tls_hosts, self.host])
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(self.certificates.cert_file, self.certificates.key_file)

        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="pve-simulator", daemon=True
        )
        self._thread.start()
        started.result(timeout=30)
        if self.control_port is not None:
            self._control = ControlServer(self, self.control_host, self.control_port)
            self.control_port = self._control.port
        return self

    @property
    def control_endpoint(self) -> str | None:
        """``http://host:port`` of the control endpoint, if one is served."""
        if self._control is None:
            return None
        host = f"[{self.control_host}]" if ":" in self.control_host else self.control_host
        return f"http://{host}:{self.control_port}"

    @property
    def pve_version(self) -> str:
        return str(self.cluster.version_info)

    def _serve(self, started: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(started))
        except BaseException as exc:  # report start-up failures to the starting thread
            if not started.done():
                started.set_exception(exc)
        finally:
            loop.close()

    async def _main(self, started: Future[None]) -> None:
        self._stopping = asyncio.Event()
        # Replies still pending at shutdown get a second, not aiohttp's default minute.
        self._runner = web.AppRunner(self.api.application(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen(self._requested_port)
        rrd = self.cluster.background(self.cluster.rrd_loop())
        started.set_result(None)
        await self._stopping.wait()
        # Release every waiting handler: hung replies, latency and auth delays end now.
        self.api.reachable.set()
        self.clock.set_scale(0)
        rrd.cancel()
        await self.cluster.close()
        await self._runner.cleanup()

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(
            self._runner, self.host, port, ssl_context=self._ssl, reuse_address=True
        )
        await self._site.start()
        self.port = self._runner.addresses[-1][1]  # the bound port, when 0 was asked for

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._thread is None or self._loop is None:
            return
        stopping = self._stopping
        if stopping is not None:
            self._loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout=30)
        self._thread = None
        if self._own_cert_dir is not None:
            shutil.rmtree(self._own_cert_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the simulator stops (used by the command line)."""
        if self._thread is not None:
            self._thread.join()

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the simulator's loop and return its result."""
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the simulator is not started")
        if threading.current_thread() is self._thread:
            return function()

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    # ---------------------------------------------------------------- seeding

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
        """Put a VM on ``node`` as if someone had created it long ago."""
        values: dict[str, ConfigValue] = {"name": name or f"vm{vmid}", **(config or {})}
        if tags:
            values["tags"] = ";".join(tags)
        if protection:
            values["protection"] = 1
        if template:
            values["template"] = 1
        if lock:
            values["lock"] = lock

        def add() -> None:
            self.cluster.add_vm(
                vmid, node, values, running=running, guest=guest or GuestBehaviour()
            )
            if ha_state is not None:
                service = "started" if running else "stopped"
                self.cluster.ha[vmid] = HAResource(vmid, ha_state, service)
            self.cluster.refresh_rrd()

        self.call(add)

    def add_container(self, vmid: int, node: str = "pve1") -> None:
        """An LXC container: it takes a vmid and shows in /cluster/resources as type lxc."""
        self.call(lambda: self.cluster.containers.__setitem__(vmid, node))

    def set_guest(self, vmid: int, guest: GuestBehaviour) -> None:
        def change() -> None:
            self.cluster.vms[vmid].guest = guest

        self.call(change)

    def set_lock(self, vmid: int, lock: str | None) -> None:
        """Set or clear the config ``lock:`` (what vzdump does during a backup)."""
        if lock is not None and lock not in CONFIG_LOCKS:
            raise ValueError(f"unknown lock {lock!r}")

        def change() -> None:
            config = self.cluster.vms[vmid].config
            if lock is None:
                config.pop("lock", None)
            else:
                config["lock"] = lock

        self.call(change)

    def hold_flock(self, vmid: int, seconds: float) -> None:
        """Hold the vmid's file lock for ``seconds`` (a long task of someone else's).

        The lock exists per vmid, so it can be held for a vmid that has no VM yet.
        """
        acquired: Future[None] = Future()

        async def hold() -> None:
            lock = self.cluster.flock_of(vmid)
            await lock.acquire()
            try:
                acquired.set_result(None)
                await self.clock.sleep(seconds)
            finally:
                await lock.release()

        self.call(lambda: self.cluster.background(hold()))
        acquired.result(timeout=30)

    def pause(self, vmid: int) -> None:
        def change() -> None:
            vm = self.cluster.vms[vmid]
            if not vm.running:
                raise ValueError(f"VM {vmid} is not running")
            vm.paused = True

        self.call(change)

    def set_protection(self, vmid: int, protection: bool = True) -> None:
        """Set or clear ``protection: 1`` (destroy refuses a protected VM)."""

        def change() -> None:
            config = self.cluster.vms[vmid].config
            if protection:
                config["protection"] = 1
            else:
                config.pop("protection", None)

        self.call(change)

    def start_task_as(self, user: str, vmid: int, action: str = "shutdown", **params: Any) -> str:
        """Start a power or destroy task on ``vmid`` as ``user`` (``alice@pve`` or a token id),
        as if that user had called the API; returns its UPID.

        ``action``: start, stop, shutdown, reboot or destroy; ``params`` are that call's
        parameters (``timeout=600``, ``forceStop=1``). No permission check is made: this is
        someone else's task, such as a long shutdown holding the VM's config flock.
        Synchronous refusals raise ``ValueError`` with PVE's message.
        """
        chosen = TASK_ACTIONS.get(action)
        if chosen is None:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(TASK_ACTIONS)}")
        call_schema, method = chosen
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the simulator is not started")

        async def start() -> str:
            vm = self.cluster.vms.get(vmid)
            if vm is None:
                raise ValueError(f"no VM {vmid}")
            raw = {**{k: str(v) for k, v in params.items()}, "node": vm.node, "vmid": str(vmid)}
            try:
                values = call_schema.validate(raw, user, self.cluster.version_info)
                upid: str = await method(self.cluster, user, dict(values))
            except ApiError as refused:
                raise ValueError(f"{refused.status} {refused.message}: {refused.errors}") from None
            return upid

        return asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)

    # ------------------------------------------------------------ permissions

    def grant(
        self, principal: str, path: str, privileges: Iterable[str], *, propagate: bool = True
    ) -> None:
        """Grant ``principal`` (``user@realm`` or a token id ``user@realm!name``) privileges
        (``VM.Audit``) or built-in roles (``PVEVMUser``) on an ACL path such as ``/``,
        ``/vms/100``, ``/pool/NAME``, ``/nodes/pve1`` or ``/storage/local-lvm``.

        ``root@pam`` always holds everything; so do tokens without privilege separation of a
        user who does. Grants on one path add up; a deeper entry replaces higher ones.
        """
        chosen = [privileges] if isinstance(privileges, str) else list(privileges)
        self.call(
            lambda: self.cluster.permissions.grant(principal, path, chosen, propagate=propagate)
        )

    def revoke(self, principal: str, path: str) -> None:
        """Remove ``principal``'s ACL entry on ``path``."""
        self.call(lambda: self.cluster.permissions.revoke(principal, path))

    def set_privsep(self, token_id: str, privsep: bool) -> None:
        """With privilege separation a token holds only what both it and its user are
        granted; without (the default here), exactly what its user holds."""
        if not TOKEN_ID.fullmatch(token_id):
            raise ValueError(f"not a token id (user@realm!name): {token_id!r}")

        def change() -> None:
            tokens = self.cluster.permissions.privsep_tokens
            if privsep:
                tokens.add(token_id)
            else:
                tokens.discard(token_id)

        self.call(change)

    def add_pool(self, pool: str) -> None:
        """Create an empty pool (create and clone refuse an unknown ``pool``)."""
        self.call(lambda: self.cluster.permissions.pools.add(pool))

    def set_pool(self, vmid: int, pool: str | None) -> None:
        """Put ``vmid`` in ``pool`` (created if new), or take it out with None."""
        self.call(lambda: self.cluster.permissions.set_pool(vmid, pool))

    def refresh_cluster_resources(self) -> None:
        """Publish current VM status to /cluster/resources now instead of at the next tick."""
        self.call(self.cluster.refresh_rrd)

    # ------------------------------------------------------------- inspection

    def vm(self, vmid: int) -> dict[str, Any] | None:
        """A snapshot of one VM: node, running, paused, config, pending, lock; None if absent."""

        def snapshot() -> dict[str, Any] | None:
            vm = self.cluster.vms.get(vmid)
            if vm is None:
                return None
            return {
                "vmid": vm.vmid,
                "node": vm.node,
                "running": vm.running,
                "paused": vm.paused,
                "config": dict(vm.config),
                "pending": dict(vm.pending),
                "lock": vm.lock,
                "ha": self.cluster.ha[vmid].service_state if vmid in self.cluster.ha else None,
                "pool": self.cluster.permissions.pool_of.get(vmid),
            }

        return self.call(snapshot)

    def vm_exists(self, vmid: int) -> bool:
        return self.vm(vmid) is not None

    def vm_ids(self, *, tag: str | None = None) -> list[int]:
        """Every VMID of the cluster, or those whose config carries ``tag``."""

        def listing() -> list[int]:
            return sorted(
                vm.vmid
                for vm in self.cluster.vms.values()
                if tag is None or tag in (vm.tags() or "").split(";")
            )

        return self.call(listing)

    def set_token(self, token_id: str, secret: str) -> None:
        """Give the token a new secret (as `pveum user token` regenerating it, or removing and
        re-adding it): clients still sending the old one get 401 until told the new one."""
        self.call(lambda: self.access.tokens.__setitem__(token_id, secret))

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.call(lambda: list(self.api.records))

    def requests_to(self, pattern: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path matches the regular expression ``pattern``."""
        compiled = re.compile(pattern)
        return [
            r
            for r in self.requests
            if compiled.search(r.path) and (method is None or r.method == method)
        ]

    def clear_requests(self) -> None:
        self.call(self.api.records.clear)

    def tasks(self) -> list[dict[str, Any]]:
        return self.call(lambda: [t.status_reply() for t in self.cluster.tasks.values()])

    def task_log(self, upid: str) -> list[str]:
        return self.call(lambda: list(self.cluster.tasks[upid].log))

    def max_tasks_running(self) -> dict[str, int]:
        """The most tasks that ran at once on each node since the start."""
        return self.call(lambda: {n.name: n.max_tasks_running for n in self.cluster.nodes.values()})

    # ------------------------------------------------------------------ faults

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
        """The next ``times`` calls whose path matches the regex ``path`` fail with ``status``."""
        failure = InjectedFailure(re.compile(path), method, times, status, message, errors)
        self.call(lambda: self.faults.failures.append(failure))

    def fail_task(
        self, task_type: str, *, vmid: int | None = None, times: int = 1, message: str
    ) -> None:
        """The next ``times`` tasks of ``task_type`` (for ``vmid``) end with ``message``."""
        failure = InjectedTaskFailure(
            task_type, None if vmid is None else str(vmid), times, message
        )
        self.call(lambda: self.faults.task_failures.append(failure))

    def set_latency(self, seconds: float, *, path: str | None = None) -> None:
        """Every reply (or those whose path matches ``path``) is delayed by ``seconds``."""
        latency = Latency(seconds, re.compile(path) if path else None)
        self.call(lambda: self.faults.latencies.append(latency))

    def clear_faults(self) -> None:
        def clear() -> None:
            self.faults.failures.clear()
            self.faults.task_failures.clear()
            self.faults.latencies.clear()

        self.call(clear)

    def make_unreachable(
        self, mode: Unreachable | str = Unreachable.REFUSE, *, for_seconds: float | None = None
    ) -> None:
        """Cut the API off: refuse connections, reset them, or never answer.

        With ``for_seconds`` (simulated) it comes back by itself; otherwise call :meth:`restore`.
        """
        chosen = Unreachable(mode)
        loop = self._loop
        assert loop is not None

        async def cut() -> None:
            self.faults.unreachable = chosen
            self.api.reachable.clear()
            if chosen is Unreachable.REFUSE and self._site is not None:
                await self._site.stop()
                self._site = None
            self.api.close_connections()
            if for_seconds is not None:
                self._restore_job = self.cluster.background(self._restore_after(for_seconds))

        asyncio.run_coroutine_threadsafe(cut(), loop).result(timeout=30)

    async def _restore_after(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        await self._restore()

    async def _restore(self) -> None:
        if self.faults.unreachable is Unreachable.REFUSE:
            await self._listen(self.port)
        self.faults.unreachable = None
        self.api.reachable.set()

    def restore(self) -> None:
        """Make the API reachable again after :meth:`make_unreachable`."""
        loop = self._loop
        assert loop is not None
        if self._restore_job is not None:
            loop.call_soon_threadsafe(self._restore_job.cancel)
            self._restore_job = None
        asyncio.run_coroutine_threadsafe(self._restore(), loop).result(timeout=30)

    def set_node_online(self, node: str, online: bool) -> None:
        """An offline node answers every /nodes/{node}/... call with 595."""

        def change() -> None:
            self.cluster.nodes[node].online = online

        self.call(change)

    def set_quorum(self, quorate: bool) -> None:
        def change() -> None:
            self.cluster.quorate = quorate

        self.call(change)

    # ------------------------------------------------------------------- clock

    def advance(self, seconds: float) -> None:
        """Move simulated time forward: tasks waiting on it finish as if it had passed.

        Work already started (a worker just forked by the last call) first runs up to its
        next wait, so its deadlines count from before the jump, as they would in real time;
        what the jump wakes up runs to its next wait before this returns.
        """

        async def step() -> None:
            await _settle()
            self.clock.advance(seconds)
            await _settle()

        self._run(step)

    def set_time_scale(self, scale: float) -> None:
        async def change() -> None:
            await _settle()
            self.clock.set_scale(scale)

        self._run(change)

    def _run(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the simulator is not started")
        asyncio.run_coroutine_threadsafe(step(), loop).result(timeout=30)


async def _settle(rounds: int = 200) -> None:
    """Let the loop run until nothing is ready any more (every task waits on something)."""
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        await asyncio.sleep(0)
        if not getattr(loop, "_ready", None):
            return
