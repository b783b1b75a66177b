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

from .api import Access, ProxmoxApi, RecordedRequest
from .clock import SimClock
from .cluster import Cluster
from .faults import Faults, InjectedFailure, InjectedTaskFailure, Latency, Unreachable
from .state import CONFIG_LOCKS, ConfigValue, GuestBehaviour, HAResource, Timings
from .tls import CertificateFiles, write_certificates

T = TypeVar("T")


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
    ) -> None:
        """``tls_hosts``: more names the server certificate is valid for (besides ``host``,
        127.0.0.1 and localhost), such as the DNS name clients reach it by."""
        self.host = host
        self.tls_hosts = list(tls_hosts)
        self._requested_port = port
        self.port = port
        self.clock = SimClock(time_scale)
        self.faults = Faults()
        self.cluster = Cluster(
            list(nodes), self.clock, timings or Timings(), self.faults, seed, default_guest
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
        return self

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
            }

        return self.call(snapshot)

    def vm_exists(self, vmid: int) -> bool:
        return self.vm(vmid) is not None

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
