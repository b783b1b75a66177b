"""A stand-in for the operator's /metrics, for the render test.

Every scrape first moves some made-up activity through the real objects of
`proxmox_vm_operator.metrics` (destroys, API calls, tasks, reconciles), then serves the default
registry, so each scrape sees counters grow. Prints its port, then serves until killed.
"""

from __future__ import annotations

import itertools
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from proxmox_vm_operator import metrics
from proxmox_vm_operator.proxmox import ApiCall

STARTED = time.time()
destroys = metrics.DestroyTracker()
watched = metrics.ObjectTracker()
ticks = itertools.count()


def advance() -> None:
    n = next(ticks)
    destroys.update("lab", "web-1", STARTED - 300, "WaitingForShutdown", None)
    destroys.update("lab", "db-1", STARTED - 1500, "DeletingVM", "VMLocked")
    for uid, phase in (("a", "Running"), ("b", "Running"), ("c", "Deleting"), ("d", "Stopped")):
        watched.seen(uid, phase)
    metrics.destroy_duration.labels("Stop", "deleted").observe(4 + n % 9)
    metrics.destroy_duration.labels("Shutdown", "deleted").observe(90 + n % 60)
    metrics.destroy_duration.labels("Stop", "already_absent").observe(0.5)
    metrics.destroy_fallbacks.inc()
    metrics.destroy_errors.labels("VMLocked").inc()
    for method, endpoint, code, seconds in (
        ("GET", "/cluster/resources", 200, 0.03 + n % 5 / 100),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/stop", 200, 0.2),
        ("GET", "/nodes/{node}/tasks/{upid}/status", 500, 0.1),
        ("DELETE", "/nodes/{node}/qemu/{vmid}", None, 10.0),
    ):
        metrics.observe_api_call(ApiCall(method, endpoint, code, seconds))
    metrics.observe_task("qmstop", True, 3 + n % 4)
    metrics.observe_task("qmdestroy", n % 4 != 0, 12)
    metrics.reconciles.labels("ready").inc(3)
    metrics.reconciles.labels("progressing").inc()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        advance()
        body = generate_latest(REGISTRY)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
