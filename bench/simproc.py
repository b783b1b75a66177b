"""The Proxmox VE simulator as the benchmark's process: fixed task times, timestamps on everything.

``python -m bench.simproc --nodes pve1,pve2 --timings create=1,start=0.5 --port P
--control-port C --bench-port B --token ID=SECRET --cert-dir DIR`` serves the simulator
(`proxmox_vm_operator.simulator.Simulator`) exactly as ``proxmox-vm-operator simulator`` does,
with its usual control endpoint, plus what the command line cannot give a benchmark:

* task times chosen at start (``--timings``) and changed at run time (``POST /bench/timings``);
* every task's real start and end (``time.monotonic()``, which is the same clock in every
  process of this machine), node, type and id (``GET /bench/tasks``): the simulator's own
  task records carry whole seconds only;
* every API request with the moment it was answered (``GET /bench/requests?since=I``);
* every power-off with its moment (``GET /bench/power-offs``).

Nothing in the simulator's files is changed for this: the records are hooked onto one
simulator object in this process only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from proxmox_vm_operator.simulator import RecordedRequest, Simulator, Timings
from proxmox_vm_operator.simulator.state import VM, Task

TIMING_FIELDS = frozenset(f.name for f in dataclasses.fields(Timings))


def parse_timings(text: str, base: Timings | None = None) -> Timings:
    """``create=1,start=0.5`` on top of ``base`` (the simulator's defaults)."""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in TIMING_FIELDS:
            known = ", ".join(sorted(TIMING_FIELDS))
            raise ValueError(f"--timings wants NAME=SECONDS with NAME one of {known}: {item!r}")
        values[name] = float(value)
    return dataclasses.replace(base or Timings(), **values)


class StampedRecords(list[RecordedRequest]):
    """The simulator's request log, with the moment each request was answered beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: RecordedRequest) -> None:
        super().append(item)
        self.times.append(time.monotonic())

    def clear(self) -> None:
        super().clear()
        self.times.clear()


class Recorder:
    """Hooks onto one `Simulator` before it starts; read on the simulator's loop only."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.tasks: list[dict[str, Any]] = []
        self.power_offs: list[dict[str, Any]] = []
        self.records = StampedRecords()
        simulator.api.records = self.records
        cluster = simulator.cluster
        run_task = cluster._run_task
        power_off = cluster._power_off

        async def timed_task(task: Task, work: Any, cleanup: Any) -> None:
            started = time.monotonic()
            try:
                await run_task(task, work, cleanup)
            finally:
                self.tasks.append(
                    {
                        "node": task.node,
                        "type": task.type,
                        "id": task.id,
                        "user": task.user,
                        "start": started,
                        "end": time.monotonic(),
                        "exitstatus": task.exitstatus,
                    }
                )

        def timed_power_off(vm: VM) -> None:
            power_off(vm)
            self.power_offs.append({"vmid": vm.vmid, "t": time.monotonic()})

        # Instance attributes: only this simulator object, only in this process.
        cluster._run_task = timed_task  # type: ignore[method-assign]
        cluster._power_off = timed_power_off  # type: ignore[method-assign]

    def requests_since(self, index: int) -> dict[str, Any]:
        rows = [
            {
                "t": stamp,
                "method": request.method,
                "path": request.path,
                "status": request.status,
                "reason": request.reason,
                "user": request.user,
            }
            for request, stamp in zip(self.records[index:], self.records.times[index:], strict=True)
        ]
        return {"next": index + len(rows), "requests": rows}

    def set_timings(self, values: Mapping[str, float]) -> dict[str, float]:
        unknown = set(values) - TIMING_FIELDS
        if unknown:
            raise ValueError(f"no such timings: {', '.join(sorted(unknown))}")
        cluster = self.simulator.cluster
        cluster.timings = dataclasses.replace(
            cluster.timings, **{k: float(v) for k, v in values.items()}
        )
        return dataclasses.asdict(cluster.timings)


class BenchEndpoint:
    """``/bench/...`` on its own loopback port, answered from the simulator's loop."""

    def __init__(self, recorder: Recorder, port: int) -> None:
        self.recorder = recorder
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def get(self, path: str, query: Mapping[str, list[str]]) -> Any:
        recorder = self.recorder
        call = recorder.simulator.call
        if path == "/bench/tasks":
            return call(lambda: list(recorder.tasks))
        if path == "/bench/power-offs":
            return call(lambda: list(recorder.power_offs))
        if path == "/bench/requests":
            since = int(query.get("since", ["0"])[0])
            return call(lambda: recorder.requests_since(since))
        if path == "/bench/timings":
            return call(lambda: dataclasses.asdict(recorder.simulator.cluster.timings))
        raise LookupError(path)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        recorder = self.recorder
        if path == "/bench/timings":
            return recorder.simulator.call(lambda: recorder.set_timings(body))
        raise LookupError(path)


class _Handler(BaseHTTPRequestHandler):
    endpoint: BenchEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self._answer(lambda: self.endpoint.get(url.path, query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        path = urllib.parse.urlsplit(self.path).path
        self._answer(lambda: self.endpoint.post(path, body))

    def _answer(self, call: Callable[[], Any]) -> None:
        try:
            status, payload = HTTPStatus.OK, {"result": call()}
        except LookupError as exc:
            status, payload = HTTPStatus.NOT_FOUND, {"error": f"no such path: {exc}"}
        except (TypeError, ValueError) as exc:
            status, payload = HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc", description=__doc__)
    parser.add_argument("--nodes", default="pve1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--bench-port", type=int, required=True)
    parser.add_argument("--cert-dir", required=True)
    parser.add_argument("--token", action="append", default=[], metavar="ID=SECRET")
    parser.add_argument("--timings", default="", help="NAME=SECONDS,... (simulated seconds)")
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    tokens: dict[str, str] = {}
    for token in args.token:
        token_id, _, secret = token.rpartition("=")
        tokens[token_id] = secret
    simulator = Simulator(
        nodes=[n for n in args.nodes.split(",") if n],
        tokens=tokens,
        port=args.port,
        time_scale=args.time_scale,
        timings=parse_timings(args.timings),
        cert_dir=args.cert_dir,
        control_port=args.control_port,
    )
    recorder = Recorder(simulator)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator:
        endpoint = BenchEndpoint(recorder, args.bench_port)
        print(f"endpoint: {simulator.endpoint}", flush=True)
        print(f"control: {simulator.control_endpoint}", flush=True)
        print(f"bench: http://127.0.0.1:{args.bench_port}/bench", flush=True)
        try:
            stop.wait()
        finally:
            endpoint.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
