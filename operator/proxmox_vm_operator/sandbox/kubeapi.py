"""A Kubernetes API emulator for tests and the sandbox demo: kmock 0.8 plus apiserver's rules.

No real kube-apiserver can run on the project's machines (no package registry they reach ships
one, and there is no container engine to run one in), so this is the most real API there is.
Three ways to serve it:

* in the caller's event loop: ``async with serve() as (emulator, url): ...``;
* from its own thread and loop, for synchronous tests and ``kopf.testing.KopfRunner``:
  ``with KubeAPIServer() as server: server.write_kubeconfig(path) ...``;
* as a process, for kubectl and the demo:
  ``python -m proxmox_vm_operator.sandbox.kubeapi --port 8765 --kubeconfig kubeconfig.yaml``
  prints the URL, then serves until SIGTERM or SIGINT.

kubectl works as against a cluster (`kubectl explain` too), except that its imperative
generators (`kubectl create secret|namespace|configmap ...`) send protobuf, which the emulator
cannot read: apply a manifest instead (`... --dry-run=client -o yaml | kubectl apply -f -`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import pathlib
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Self, TypeVar

import aiohttp.web
import yaml

from .apimachinery import Body
from .emulator import CRDS, NAMESPACES, SECRETS, KubeAPIEmulator

__all__ = [
    "CRDS",
    "NAMESPACES",
    "SECRETS",
    "KubeAPIEmulator",
    "KubeAPIServer",
    "serve",
    "write_kubeconfig",
]
T = TypeVar("T")


@contextlib.asynccontextmanager
async def serve(
    host: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[tuple[KubeAPIEmulator, str]]:
    """Serve a new emulator over HTTP from the current loop; yields the emulator and its URL.

    `options` go to `KubeAPIEmulator`: `bookmark_interval`, `event_log_size`,
    `request_log_size`.
    """
    emulator = KubeAPIEmulator(**options)
    async with emulator:
        # Not kmock.Server: it patches aiohttp's resolver process-wide, which conflicts when
        # servers start and stop in several threads. Handler cancellation ends the watch
        # streams of clients that went away.
        runner = aiohttp.web.ServerRunner(
            aiohttp.web.Server(emulator, handler_cancellation=True), shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await aiohttp.web.TCPSite(runner, host, port).start()
            bound_host, bound_port = runner.addresses[0][:2]
            bound_host = f"[{bound_host}]" if ":" in bound_host else bound_host  # IPv6
            yield emulator, f"http://{bound_host}:{bound_port}"
        finally:
            emulator.close()
            await runner.cleanup()


def write_kubeconfig(
    path: str | pathlib.Path, url: str, namespace: str = "default"
) -> pathlib.Path:
    """A kubeconfig for kubectl, kopf and the `kubernetes` client: plain HTTP, no credentials."""
    name = "kubeapi-emulator"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
    }
    path = pathlib.Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class KubeAPIServer:
    """The emulator served from its own thread and event loop, for synchronous tests.

    kopf runs in yet another thread (`kopf.testing.KopfRunner`), never in pytest's loop. Tests
    read the store with `call()`, `get_object()`, `list_objects()` or `history()`, which run in
    the server's loop, and wait for changes with `wait_for()` instead of sleeping::

        with KubeAPIServer() as server:
            kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
            server.create_object(CRDS, crd)
            vms = "proxmox.vmop.dev/v1alpha1/proxmoxvms"
            server.wait_for(lambda api: api.get_object(vms, "vm1", "default") is None)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self._host, self._port, self._options = host, port, options
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._emulator: KubeAPIEmulator | None = None
        self._url: str | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._url is not None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The Kubernetes API emulator is not running.")
        return self._url

    @property
    def emulator(self) -> KubeAPIEmulator:
        """The emulator itself; use it only inside `call()`, i.e. in its own loop."""
        if self._emulator is None:
            raise RuntimeError("The Kubernetes API emulator is not running.")
        return self._emulator

    def start(self, timeout: float = 10.0) -> Self:
        self._started, self._failure = threading.Event(), None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="kubeapi", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout) or self._url is None:
            raise RuntimeError("The Kubernetes API emulator did not start.") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout)
        self._loop = self._stopping = self._emulator = self._url = None

    async def _serve(self) -> None:
        try:
            async with serve(self._host, self._port, **self._options) as (emulator, url):
                self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
                self._emulator, self._url = emulator, url
                self._started.set()
                await self._stopping.wait()
        except BaseException as e:  # reported by start()
            self._failure = e
        finally:
            self._started.set()

    def write_kubeconfig(
        self, path: str | pathlib.Path, namespace: str = "default"
    ) -> pathlib.Path:
        return write_kubeconfig(path, self.url, namespace)

    def call(self, fn: Callable[[KubeAPIEmulator], T], timeout: float = 10.0) -> T:
        """Run `fn(emulator)` in the server's loop; return its result or raise its error."""

        async def run() -> T:
            return fn(self.emulator)

        assert self._loop is not None, "The Kubernetes API emulator is not running."
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def wait_for(self, predicate: Callable[[KubeAPIEmulator], T], timeout: float = 10.0) -> T:
        """Block until `predicate(emulator)` is truthy, checked after each change; return it."""
        assert self._loop is not None, "The Kubernetes API emulator is not running."
        waiting = self.emulator.wait_for(lambda: predicate(self.emulator), timeout)
        return asyncio.run_coroutine_threadsafe(waiting, self._loop).result()

    # Shortcuts; resources are "group/version/plural" ("v1/secrets" for the core group).

    def get_object(self, resource: str, name: str, namespace: str | None = None) -> Body | None:
        return self.call(lambda api: api.get_object(resource, name, namespace))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Body]:
        return self.call(lambda api: api.list_objects(resource, namespace))

    def create_object(self, resource: str, body: Body, namespace: str | None = None) -> Body:
        return self.call(lambda api: api.create_object(resource, body, namespace))

    def history(self, resource: str, name: str, namespace: str | None = None) -> list[Body | None]:
        return self.call(lambda api: api.history(resource, name, namespace))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proxmox_vm_operator.sandbox.kubeapi",
        description="Serve the Kubernetes API emulator until SIGTERM or SIGINT. It prints its "
        "URL once it serves.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    parser.add_argument(
        "--kubeconfig", type=pathlib.Path, help="write a kubeconfig for this server"
    )
    parser.add_argument("--namespace", default="default", help="the kubeconfig's default namespace")
    parser.add_argument("--bookmark-interval", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument(
        "--watch-lag",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="deliver every watch event this late, as a slow API server does",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and changes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.verbose:
        logging.getLogger("aiohttp.access").setLevel(logging.INFO)
        logging.getLogger(__package__ or "").setLevel(logging.DEBUG)

    async def serve_until_signalled() -> None:
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
        options = {
            "bookmark_interval": args.bookmark_interval,
            "request_log_size": 200,
            "watch_lag": args.watch_lag,
        }
        async with serve(args.host, args.port, **options) as (_, url):
            if args.kubeconfig:
                write_kubeconfig(args.kubeconfig, url, args.namespace)
            print(url, flush=True)
            await stopping.wait()

    asyncio.run(serve_until_signalled())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
