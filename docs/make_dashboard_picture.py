"""Make the dashboard picture for the README from a real run, without Grafana.

    .venv/bin/python docs/make_dashboard_picture.py --out docs/dashboard.png

It starts the end-to-end sandbox of tests/e2e (a Kubernetes API emulator process, the Proxmox
VE simulator in this process, the real operator as a process, the real kubectl), and Debian's
`prometheus` scraping the operator's metrics port every second under the dashboard's default
job. Then it plays about three and a half minutes of traffic through kubectl and the
simulator's fault injection:

* nine VMs created across two nodes (two of them Stopped) and one with an invalid spec, which
  the operator refuses (a stalled reconcile, phase Failed) and which stays; a busy node fails
  two status reads with HTTP 500;
* deletes under the default Stop policy, of a running VM and of a stopped one;
* two deletes with `destroy: {mode: Shutdown, shutdownTimeoutSeconds: 5}` of guests that
  ignore ACPI: the graceful wait runs out and a forced stop follows (shutdown fallbacks);
* a delete during a Proxmox outage (connections refused): DeletionStalled ProxmoxUnreachable
  after the operator's --stall-after (10 s here), then Proxmox is back and the destroy ends;
* a new VM replacing an old one, which shuts down gracefully when asked, and at the end a
  graceful destroy with a one-hour timeout of a guest that ignores ACPI, still in flight when
  the picture is taken (destroys in flight, the age table).

Finally docs/render_dashboard.py queries every panel over the whole run and writes the PNG.
Every process it started is stopped at the end, also after Ctrl-C or SIGTERM. Needs kubectl
and prometheus on PATH (exit code 2 without them). Run it from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import shutil
import signal
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

# tests/ is not installed: the repository root goes on the path, as pytest puts it there.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import render_dashboard  # beside this script, in docs/
from PIL import Image
from tests.e2e.harness import Cluster, KubeAPI, SandboxOptions, dig
from tests.prometheus_server import PrometheusServer

from proxmox_vm_operator.monitoring.dashboard import DEFAULT_JOB
from proxmox_vm_operator.simulator import GuestBehaviour, Timings

REPO = pathlib.Path(__file__).resolve().parents[1]
STALL_AFTER = 10  # the operator's --stall-after: 600 s in production
# Proxmox task times of a small, idle cluster, in real seconds (time scale 1).
TIMINGS = Timings(create=4.0, start=2.0, stop=1.5, destroy=3.0)
IGNORES_ACPI = GuestBehaviour(obeys_acpi=False)
# Proxmox over a LAN rather than loopback (the simulator adds up every match): cheap reads,
# slower cluster-wide listings, slower still the calls that fork a worker.
LATENCIES = (
    (0.004, None),
    (0.004, r"/status/current$"),
    (0.010, r"/config$"),
    (0.030, r"/cluster/resources$"),
    (0.060, r"/status/(start|stop|shutdown)$"),
    (0.080, r"/qemu/\d+$"),
    (0.150, r"/qemu$"),
)
SCRAPE_INTERVAL = 1.0  # PrometheusServer's
# Grafana's $__rate_interval would be four scrapes, 4 s: every event a spike. A 20 s window
# draws a few minutes as a dashboard draws a few hours.
RATE_WINDOW = 20.0
MAX_PNG_BYTES = 400_000


@dataclass(frozen=True)
class VM:
    name: str
    vmid: int
    node: str = "pve1"
    cores: int = 2
    memory: int = 2048
    stopped: bool = False
    shutdown_timeout: int | None = None  # destroy mode Shutdown with this timeout
    ignores_acpi: bool = False
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "vmid": self.vmid,
            "node": self.node,
            "cores": self.cores,
            "memoryMiB": self.memory,
            "disks": [{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 16}],
            "networks": [{"slot": "net0", "bridge": "vmbr0"}],
        }
        if self.tags:
            spec["tags"] = list(self.tags)
        if self.stopped:
            spec["powerState"] = "Stopped"
        if self.shutdown_timeout is not None:
            spec["destroy"] = {"mode": "Shutdown", "shutdownTimeoutSeconds": self.shutdown_timeout}
        return {**spec, **self.extra}


WEB_1 = VM("web-1", 101, shutdown_timeout=60, tags=("web",))  # shuts down when asked
WEB_2 = VM("web-2", 102, node="pve2", tags=("web",))
DB_1 = VM("db-1", 103, cores=4, memory=8192, tags=("db",))
CACHE_1 = VM("cache-1", 104, node="pve2", stopped=True)
ARCHIVE_1 = VM("archive-1", 105, stopped=True)
BATCH_1 = VM("batch-1", 106, shutdown_timeout=5, ignores_acpi=True, tags=("batch",))
BATCH_2 = VM("batch-2", 107, node="pve2", shutdown_timeout=5, ignores_acpi=True, tags=("batch",))
WORKER_1 = VM("worker-1", 108, node="pve2")
INSTALLER = VM("installer-1", 109, shutdown_timeout=3600, ignores_acpi=True)
WEB_3 = VM("web-3", 110, node="pve2", tags=("web",))
INVALID = VM("bad-memory", 111, memory=1)  # below the CRD's minimum of 16 MiB
FIRST_WAVE = (WEB_1, WEB_2, DB_1, CACHE_1, ARCHIVE_1, BATCH_1, BATCH_2, WORKER_1, INSTALLER)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM."""


def _interrupt(signum: int, frame: types.FrameType | None) -> NoReturn:
    """Stop the story; the clean-up that follows is not cut short by a second signal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


class Story:
    """The traffic, step by step, printed with the time since it started."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 60) -> None:
        self.cluster.wait_for(predicate, timeout=timeout, what=what, interval=0.25)

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def until(self, elapsed: float) -> None:
        """Sleep until `elapsed` seconds after the start of the story."""
        time.sleep(max(0.0, self.started + elapsed - time.monotonic()))

    def create(self, vm: VM) -> None:
        self.say(f"kubectl apply {vm.name} ({'Stopped' if vm.stopped else 'Running'})")
        self.cluster.apply_vm(vm.name, vm.spec())

    def delete(self, vm: VM) -> None:
        self.say(f"kubectl delete {vm.name}")
        self.cluster.delete_vm(vm.name)

    def phase(self, vm: VM) -> str | None:
        phase = dig(self.cluster.get_vm(vm.name), "status.phase")
        return None if phase is None else str(phase)

    def settled(self, vm: VM) -> None:
        want = "Stopped" if vm.stopped else "Running"
        self.wait(lambda: self.phase(vm) == want, f"{vm.name} {want}")

    def gone(self, vm: VM, timeout: float = 60) -> None:
        self.wait(lambda: self.cluster.get_vm(vm.name) is None, f"{vm.name} gone", timeout)
        self.say(f"{vm.name} released")

    def condition(self, vm: VM, type_: str) -> tuple[str, str] | None:
        for entry in dig(self.cluster.get_vm(vm.name), "status.conditions", []) or []:
            if entry.get("type") == type_:
                return str(entry.get("status")), str(entry.get("reason"))
        return None

    def destroy_step(self, vm: VM) -> str | None:
        step = dig(self.cluster.get_vm(vm.name), "status.destroy.step")
        return None if step is None else str(step)


def play(story: Story) -> None:
    """About three and a half minutes of traffic; the last destroy is left in flight.

    A fresh operator exports a labelled counter or histogram only from its first event, so
    Prometheus's first sample of it already holds that event and rate() never shows it: the
    first release of each (mode, outcome), the first reconcile of each result, the first error
    of each reason or code are missing from the picture (and from a dashboard after every
    restart of the operator). The unlabelled fallback counter is exported from the start.
    """
    sim = story.cluster.sim
    story.say("idle operator, nothing to watch yet")
    story.pause(6)

    for vm in FIRST_WAVE:
        story.create(vm)
        story.pause(2.5)
    story.create(INVALID)
    for vm in FIRST_WAVE:
        story.settled(vm)
        if vm.ignores_acpi:
            sim.set_guest(vm.vmid, IGNORES_ACPI)
    story.wait(lambda: story.phase(INVALID) == "Failed", f"{INVALID.name} refused")
    story.say(f"all VMs settled; {INVALID.name} refused (InvalidSpec)")
    # A busy node: db-1's next two status reads fail, as pveproxy's "got timeout" does.
    busy = rf"/qemu/{DB_1.vmid}/status/current$"
    sim.fail_next(busy, method="GET", times=2, status=500, message="got timeout")
    story.until(50)

    # The default policy: a hard stop, gone in seconds, running or not. Apart, so that the two
    # releases fall in different scrapes (see the note on first increments in play()).
    story.delete(CACHE_1)
    story.gone(CACHE_1)
    story.pause(4)
    story.delete(WEB_2)
    story.gone(WEB_2)
    story.until(65)

    # Shutdown with a 5 s timeout, guests that ignore ACPI: the deadline, then a forced stop.
    story.delete(BATCH_1)
    story.pause(10)
    story.delete(BATCH_2)
    story.gone(BATCH_1)
    story.gone(BATCH_2)
    story.until(92)

    # Proxmox goes away; a delete arrives meanwhile and stalls until it is back.
    story.say("Proxmox unreachable (connections refused)")
    sim.make_unreachable("refuse")
    story.pause(3)
    story.delete(WORKER_1)
    story.wait(
        lambda: story.condition(WORKER_1, "DeletionStalled") == ("True", "ProxmoxUnreachable"),
        f"{WORKER_1.name} DeletionStalled ProxmoxUnreachable",
        timeout=STALL_AFTER + 30,
    )
    story.say(f"{WORKER_1.name}: DeletionStalled=True ProxmoxUnreachable")
    story.pause(15)
    story.say("Proxmox back")
    sim.restore()
    story.gone(WORKER_1)
    story.until(140)

    # Ordinary churn: a replacement comes up, the old VM shuts down gracefully and goes.
    story.create(WEB_3)
    story.settled(WEB_3)
    story.delete(WEB_1)
    story.gone(WEB_1)
    story.until(160)

    # A graceful destroy with an hour to go, of a guest that will never shut down.
    story.delete(INSTALLER)
    story.wait(
        lambda: story.destroy_step(INSTALLER) == "WaitingForShutdown",
        f"{INSTALLER.name} waiting for its shutdown",
    )
    story.say(f"{INSTALLER.name}: WaitingForShutdown (timeout 3600 s), left in flight")
    story.until(205)


def shrink_png(path: pathlib.Path) -> None:
    """A palette PNG: the picture has few colours, and the file shrinks several times over."""
    with Image.open(path) as image:
        quantized = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    quantized.save(path, optimize=True)


@contextlib.contextmanager
def sandbox(workdir: pathlib.Path, kubectl: str) -> Iterator[Cluster]:
    """The emulator, the simulator and the operator, stopped again in every case."""
    api = KubeAPI(workdir / "kubeapi", kubectl)
    try:
        api.start()
        options = SandboxOptions(
            time_scale=1,
            simulator={"timings": TIMINGS},
            namespace="apps",
            stall_after=STALL_AFTER,
        )
        with Cluster(api, workdir, options) as cluster:
            yield cluster
            if failures := cluster.emulator_failures():
                print(f"warning: the Kubernetes API emulator failed:\n{failures}", file=sys.stderr)
    finally:
        api.stop()


def run(out: pathlib.Path, workdir: pathlib.Path, rate_window: float) -> int:
    kubectl = shutil.which("kubectl")
    if kubectl is None or shutil.which("prometheus") is None:
        print("make_dashboard_picture: needs kubectl and prometheus on PATH", file=sys.stderr)
        return 2
    begun = time.monotonic()
    with sandbox(workdir, kubectl) as cluster:
        print(f"operator metrics on {cluster.operator.metrics_url}", flush=True)
        for seconds, path in LATENCIES:
            cluster.sim.set_latency(seconds, path=path)
        targets = {DEFAULT_JOB: [f"127.0.0.1:{cluster.operator.metrics_port}"]}
        (workdir / "prometheus").mkdir()
        with PrometheusServer(workdir / "prometheus", targets=targets) as prometheus:
            prometheus.wait_for(prometheus.targets_up, timeout=30, what="the operator scraped")
            start = time.time()
            print(f"prometheus on {prometheus.url}, scraping job {DEFAULT_JOB}", flush=True)
            play(Story(cluster))
            time.sleep(2 * SCRAPE_INTERVAL)  # the last state scraped
            end = time.time()
            # The renderer's rate windows are four scrape intervals, as Grafana's.
            report = render_dashboard.render(
                prometheus.url, start, end, out, DEFAULT_JOB, scrape_interval=rate_window / 4
            )
        print("rendered; stopping everything", flush=True)
    shrink_png(out)
    for title, count in report.items():
        print(f"{count:4d} series  {title}")
    empty = [title for title, count in report.items() if not count]
    size = out.stat().st_size
    print(f"wrote {out} ({size // 1000} kB), {end - start:.0f} s of traffic")
    print(f"done in {time.monotonic() - begun:.0f} s")
    if empty:
        print(f"warning: panels without data: {', '.join(empty)}", file=sys.stderr)
    if size > MAX_PNG_BYTES:
        print(f"warning: {out} is over {MAX_PNG_BYTES // 1000} kB", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "docs" / "dashboard.png")
    parser.add_argument(
        "--rate-window",
        type=float,
        default=RATE_WINDOW,
        help=f"seconds of samples behind each rate() (default {RATE_WINDOW:g})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory (logs, TSDB)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dashboard-picture-"))
    try:
        return run(args.out.resolve(), workdir, args.rate_window)
    except Interrupted as stop:
        print(f"{stop}: stopped, and so is every process this started", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
