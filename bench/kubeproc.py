"""The Kubernetes API emulator as the benchmark's process, with a request log.

``python -m bench.kubeproc --kubeconfig PATH --namespace NS`` serves the sandbox's emulator
(`proxmox_vm_operator.sandbox.kubeapi`) as its own ``__main__`` does, with two differences:

* kmock's own request log, which kmock scans on every request, keeps one request instead of
  the sandbox's 200: with 200 kept every request cost the emulator tens of milliseconds of
  CPU, and a bulk run measured the emulator instead of the operator;
* every request is noted with its moment (``time.monotonic()``, one clock for every process
  of this machine), method, path, watch flag and User-Agent, and
  ``GET /_bench/requests?since=I`` hands the notes out. The User-Agent tells the operator's
  requests (kopf, the ``kubernetes`` client) from kubectl's and the benchmark's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import signal
import time
from typing import Any

import aiohttp.web

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIEmulator, write_kubeconfig

BENCH_PREFIX = "/_bench/"


class RequestLog:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def note(self, request: aiohttp.web.BaseRequest) -> None:
        self.rows.append(
            {
                "t": time.monotonic(),
                "method": request.method,
                "path": request.path,
                "watch": request.query.get("watch") in ("1", "true"),
                "agent": request.headers.get("User-Agent", ""),
            }
        )

    def since(self, index: int) -> dict[str, Any]:
        rows = self.rows[index:]
        return {"next": index + len(rows), "requests": rows}


async def serve(args: argparse.Namespace) -> None:
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    log = RequestLog()
    emulator = KubeAPIEmulator(bookmark_interval=30.0, request_log_size=args.request_log_size)

    async def handler(request: aiohttp.web.BaseRequest) -> Any:
        if request.path.startswith(BENCH_PREFIX):
            if request.path == f"{BENCH_PREFIX}requests":
                payload = log.since(int(request.query.get("since", "0")))
                return aiohttp.web.Response(
                    text=json.dumps(payload), content_type="application/json"
                )
            return aiohttp.web.Response(status=404)
        log.note(request)
        return await emulator(request)

    async with emulator:
        runner = aiohttp.web.ServerRunner(
            aiohttp.web.Server(handler, handler_cancellation=True), shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await aiohttp.web.TCPSite(runner, "127.0.0.1", args.port).start()
            host, port = runner.addresses[0][:2]
            url = f"http://{host}:{port}"
            write_kubeconfig(args.kubeconfig, url, args.namespace)
            print(url, flush=True)
            await stopping.wait()
        finally:
            emulator.close()
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubeproc", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=pathlib.Path, required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument(
        "--request-log-size",
        type=int,
        default=1,
        help="requests kmock keeps (the sandbox keeps 200): kmock scans the kept ones on "
        "every request, which made the emulator, not the operator, the bottleneck",
    )
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
