"""``proxmox-vm-operator demo``: why the destroy policy matters, played on this machine alone.

The Proxmox VE simulator runs in this process, so the story can inject faults into it; the
Kubernetes API emulator and the operator run as child processes; every Kubernetes step goes
through the real kubectl, as a user would type it. Three acts:

1. a guest that ignores ACPI shutdown, deleted with the default policy (Stop): gone in seconds;
2. the same kind of guest with ``destroy: {mode: Shutdown, shutdownTimeoutSeconds: 5}``: one
   graceful shutdown, the deadline, a forced stop, reported;
3. Proxmox unreachable in the middle of a destroy: the object is held and the stall reported,
   and the destroy finishes once Proxmox is back.

Each act checks its own claims (see expectations.py); the exit code says whether they held:
0 yes, 1 no, 2 the demo cannot run here, 128 + the signal after SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO, TypeVar

import yaml

from ..simulator import GuestBehaviour, Simulator, Timings, Unreachable
from . import expectations
from .expectations import ActRecord, Check, ProxmoxCall
from .stack import (
    Child,
    Credentials,
    KubeAPIProcess,
    KubectlError,
    OperatorProcess,
    Sample,
    StartError,
    operator_command,
    stop_all,
    tail,
)
from .timeline import Timeline

T = TypeVar("T")

NAMESPACE = "demo"
SECRET_NAME = "pve-sandbox"  # noqa: S105 - the name of a Secret, not a secret
TOKEN_ID = "root@pam!demo"  # noqa: S105 - the id; the secret is random
NODE = "pve1"
STALL_AFTER = 5  # the operator's --stall-after: 600 s in production, 5 s for the story
SHUTDOWN_TIMEOUT = 5
RELEASED_WITHIN = 15.0  # act 1: "in seconds"; a graceful wait on this guest never ends
# The simulated cluster runs in real time with short tasks, as a small idle cluster would.
TIMINGS = Timings(create=1.0, start=1.0, stop=0.5, destroy=0.5)
IGNORES_ACPI = GuestBehaviour(obeys_acpi=False)
# Every wait is bounded; together they keep a failing run to a few minutes at worst.
START_TIMEOUT = 30.0
READY_TIMEOUT = 45.0
ACT_TIMEOUT = 45.0
POLL_INTERVAL = 0.25
# The timeline follows these; Ready, Reconciling and Stalled only echo them during a destroy.
DESTROY_CONDITIONS = ("Deleting", "DeletionStalled")
OPERATOR_LOG = "operator.log"


@dataclasses.dataclass(frozen=True)
class SampleVM:
    name: str
    vmid: int
    destroy: Mapping[str, Any] | None = None  # None: the defaults (mode Stop)


INSTALLER = SampleVM("frozen-installer", 101)
BATCH = SampleVM(
    "batch-worker", 102, {"mode": "Shutdown", "shutdownTimeoutSeconds": SHUTDOWN_TIMEOUT}
)
WEB = SampleVM("web-1", 103)
SAMPLES = (INSTALLER, BATCH, WEB)


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    interactive: bool  # a spinner and colours; off for --non-interactive or a pipe
    keep_running: bool = False


class Interrupted(BaseException):
    """SIGINT or SIGTERM: leave the story, clean up, exit with 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StoryError(Exception):
    """Something the story needs did not happen in time, or a tool failed."""


# ---------------------------------------------------------------------------------- signals


class Signals:
    """SIGINT and SIGTERM end the story at its next step, never in the middle of one.

    The handler only records the signal and wakes the story's waits; `check()` raises at a
    safe point. So no child can be started and then lost, and cleanup is never cut short.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._wakeup = threading.Event()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.received is None:
            self.received = signum
        self._wakeup.set()

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

    def sleep(self, seconds: float) -> None:
        self._wakeup.wait(seconds)
        self.check()

    def pause(self) -> None:
        """Wait for a signal (--keep-running)."""
        self._wakeup.wait()


# ---------------------------------------------------------------------------------- sandbox


def find_condition(vm: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for entry in vm.get("status", {}).get("conditions") or []:
        if entry.get("type") == type_:
            return dict(entry)
    return {}


def vm_spec(sample: SampleVM) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "node": NODE,
        "vmid": sample.vmid,
        "cores": 1,
        "memoryMiB": 1024,
        "disks": [{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 8}],
        "networks": [{"slot": "net0", "bridge": "vmbr0"}],
    }
    if sample.destroy is not None:
        spec["destroy"] = dict(sample.destroy)
    return spec


class Sandbox:
    """The simulator, the emulator and the operator (the same stack as the e2e tests'),
    started in that order and stopped in reverse, and the story's view of them: kubectl that
    heeds the signals, waits with a spinner, failures as `StoryError`.

    The simulator runs in this process, so the acts can inject faults into it and read its
    request log. Everything lives in ``workdir``: the kubeconfig, the simulator's CA, the logs.
    """

    def __init__(
        self, workdir: pathlib.Path, timeline: Timeline, signals: Signals, kubectl_binary: str
    ) -> None:
        self.workdir = workdir
        self.timeline = timeline
        self.signals = signals
        self.credentials = Credentials(NAMESPACE, SECRET_NAME, TOKEN_ID)
        self.sim = Simulator(
            nodes=[NODE],
            tokens=self.credentials.tokens,
            cert_dir=workdir / "pve",
            timings=TIMINGS,
        )
        # The kubeconfig defaults to the story's namespace: --keep-running hands it to the user.
        self.api = KubeAPIProcess(workdir, kubectl_binary, namespace=NAMESPACE, stop_timeout=5)
        self.operator = OperatorProcess(
            operator_command(stall_after=STALL_AFTER, clusterwide=True),
            namespace=NAMESPACE,
            kubeconfig=self.api.kubeconfig,
            log_path=workdir / OPERATOR_LOG,
            ready_timeout=START_TIMEOUT,
            stop_timeout=10,
        )
        self.kube = self.api.kubectl(workdir / "kube-cache")

    @property
    def metrics_url(self) -> str:
        return self.operator.metrics_url

    # -- lifecycle

    def start(self) -> None:
        mark = self.timeline.mark
        self.sim.start()
        mark(f"Proxmox VE simulator: {self.sim.endpoint} (node {NODE}, API token {TOKEN_ID})")
        with self._starting():
            self.api.start(START_TIMEOUT, pause=self._pause)
        mark(f"Kubernetes API emulator: {self.api.url}, ProxmoxVM CRD established")
        with self._starting():
            self.operator.start(pause=self._pause)
        mark(f"operator running: --stall-after {STALL_AFTER}, metrics on {self.metrics_url}")
        manifests = [self.credentials.proxmoxvm(s.name, vm_spec(s)) for s in SAMPLES]
        samples = yaml.safe_dump_all(manifests, sort_keys=False)
        (self.workdir / "samples.yaml").write_text(samples)
        credentials = self.credentials.manifests(self.sim.endpoint, self.sim.ca_file.read_text())
        self.kubectl("apply", "-f", "-", input=credentials + "---\n" + samples)
        mark(
            f"$ kubectl apply -f -   # namespace {NAMESPACE}, Secret {SECRET_NAME}, "
            f"ProxmoxVMs {', '.join(s.name for s in SAMPLES)}"
        )
        self._wait_ready()

    @contextlib.contextmanager
    def _starting(self) -> Iterator[None]:
        """A part of the stack starts at a safe point; if it fails, the story ends."""
        self.signals.check()
        try:
            yield
        except (StartError, KubectlError) as error:
            # Ctrl-C on a terminal interrupts kubectl too: that is the signal, not a failure.
            self.signals.check()
            raise StoryError(error.summary) from error
        except subprocess.TimeoutExpired as error:
            raise StoryError(f"kubectl did not return in {error.timeout:g} s") from error

    def _wait_ready(self) -> None:
        ready: set[str] = set()

        def all_ready() -> bool:
            for vm in self.kubectl_json("get", "proxmoxvms")["items"]:
                name, status = vm["metadata"]["name"], vm.get("status", {})
                if name not in ready and find_condition(vm, "Ready").get("status") == "True":
                    ready.add(name)
                    self.timeline.mark(
                        f"{name} Ready: VM {status.get('vmid')} {status.get('powerState')} "
                        f"on {status.get('node')}"
                    )
            return len(ready) == len(SAMPLES)

        self.wait_for("the sample VMs to be Ready", all_ready, READY_TIMEOUT)

    def close(self) -> None:
        stop_all(self.operator, self.api, self.sim)

    # -- waiting

    def wait_for(self, what: str, condition: Callable[[], T], timeout: float) -> T:
        """Poll ``condition`` until it is truthy and return it; StoryError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.signals.check()
            if value := condition():
                return value
            for child in (self.api, self.operator):
                if child.returncode is not None:
                    raise StoryError(f"the {child.name} exited with code {child.returncode}")
            if time.monotonic() > deadline:
                raise StoryError(f"waited {timeout:g} s for {what} in vain")
            self._pause(what)

    def _pause(self, what: str) -> None:
        """Between two polls: the spinner, and a safe point for the signals."""
        self.timeline.waiting(f"waiting for {what}")
        self.signals.sleep(POLL_INTERVAL)

    # -- kubectl and /metrics

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        self.signals.check()
        try:
            result = self.kube(*args, input=input, check=check)
        except subprocess.TimeoutExpired as exc:
            raise StoryError(f"`kubectl {' '.join(args)}` did not return in 30 s") from exc
        except KubectlError as error:
            # Ctrl-C on a terminal interrupts kubectl too: that is the signal, not a failure.
            self.signals.check()
            raise StoryError(error.summary) from error
        self.signals.check()
        return result

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def get_vm(self, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", "proxmoxvm", name, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise StoryError(f"`kubectl get proxmoxvm {name}` failed: {result.stderr.strip()}")
        vm: dict[str, Any] = json.loads(result.stdout)
        return vm

    def events(self, name: str) -> list[dict[str, Any]]:
        """The Events about one ProxmoxVM, oldest first."""
        selector = f"--field-selector=involvedObject.kind=ProxmoxVM,involvedObject.name={name}"
        items: list[dict[str, Any]] = self.kubectl_json("get", "events", selector)["items"]
        return sorted(items, key=lambda e: int(e["metadata"].get("resourceVersion") or 0))

    def metrics(self) -> list[Sample]:
        """The operator's proxmoxvm_* samples, as Prometheus scrapes them."""
        try:
            return self.operator.scrape()
        except OSError as exc:
            raise StoryError(f"could not read {self.metrics_url}: {exc}") from exc

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample's value; None when the operator does not export it."""
        found = [s.value for s in self.metrics() if (s.name, s.labels) == (name, labels)]
        return found[0] if found else None


# -------------------------------------------------------------------------------- watching


class Watch:
    """Follows one ProxmoxVM through its destroy, printing each change when first seen.

    It reads what a user can read (the object and its events, through kubectl) and what the
    operator asked of Proxmox (the simulator's request log), into an `ActRecord`.
    """

    def __init__(self, sandbox: Sandbox, sample: SampleVM) -> None:
        self.sandbox = sandbox
        self.sample = sample
        self.record = ActRecord(sample.vmid)
        self._requests_seen = len(sandbox.sim.requests)
        self._events_seen = {e["metadata"]["uid"] for e in sandbox.events(sample.name)}
        vm = sandbox.get_vm(sample.name) or {}
        self._conditions = {
            str(c.get("type")): (str(c.get("status")), str(c.get("reason")))
            for c in vm.get("status", {}).get("conditions") or []
        }
        self._commands: list[tuple[str, subprocess.Popen[str]]] = []

    def follow(self, label: str, process: subprocess.Popen[str]) -> None:
        """Also report when this background command returns."""
        self._commands.append((label, process))

    @property
    def done(self) -> bool:
        """The object is gone and every followed command has returned (and been reported)."""
        return self.record.released_at is not None and not self._commands

    def until(
        self, what: str, predicate: Callable[[], object], timeout: float = ACT_TIMEOUT
    ) -> None:
        """Poll (printing what changed) until ``predicate`` holds; StoryError after ``timeout``."""

        def polled() -> object:
            self.poll()
            return predicate()

        self.sandbox.wait_for(what, polled, timeout)

    def poll(self) -> None:
        self._poll_proxmox()
        self._poll_object()
        self._poll_events()
        self._poll_commands()

    def _poll_proxmox(self) -> None:
        requests = self.sandbox.sim.requests
        about = re.compile(rf"^/nodes/[^/]+/qemu/{self.sample.vmid}(/|$)")
        for request in requests[self._requests_seen :]:
            if request.method != "GET" and about.match(request.path):
                call = ProxmoxCall(
                    self.sandbox.timeline.elapsed, request.method, request.path, request.params
                )
                self.record.calls.append(call)
                self.sandbox.timeline.mark(f"operator -> Proxmox: {call}")
        self._requests_seen = len(requests)

    def _poll_object(self) -> None:
        if self.record.released_at is not None:
            return
        mark, record = self.sandbox.timeline.mark, self.record
        vm = self.sandbox.get_vm(self.sample.name)
        if vm is None:
            record.released_at = self.sandbox.timeline.elapsed
            mark(f"proxmoxvm/{self.sample.name} is gone: the finalizer was released")
            return
        status = vm.get("status", {})
        for entry in status.get("conditions") or []:
            type_, state = str(entry.get("type")), (str(entry["status"]), str(entry["reason"]))
            record.conditions.setdefault((type_, *state), self.sandbox.timeline.elapsed)
            if type_ in DESTROY_CONDITIONS and self._conditions.get(type_) != state:
                self._conditions[type_] = state
                message = f": {_shorten(entry['message'])}" if entry.get("message") else ""
                mark(f"condition {type_}={state[0]} ({state[1]}){message}")
        if status.get("destroy", {}).get("fallbackUsed") and not record.fallback_used:
            record.fallback_used = True
            mark("status.destroy.fallbackUsed: true")

    def _poll_events(self) -> None:
        for event in self.sandbox.events(self.sample.name):
            if event["metadata"]["uid"] not in self._events_seen:
                self._events_seen.add(event["metadata"]["uid"])
                kind, reason = event.get("type", ""), event.get("reason", "")
                self.record.events.append((kind, reason))
                message = _shorten(event.get("message", ""))
                self.sandbox.timeline.mark(f"event {kind} {reason}: {message}")

    def _poll_commands(self) -> None:
        for label, process in list(self._commands):
            if process.poll() is not None:
                self._commands.remove((label, process))
                output = process.stdout.read().strip() if process.stdout else ""
                self.sandbox.timeline.mark(
                    f"{label} returned (exit {process.returncode}): {output}"
                )


def _shorten(message: str, limit: int = 110) -> str:
    """A message cut to fit the timeline; `kubectl describe` shows it whole."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ acts

UNREACHABLE = "ProxmoxUnreachable"


def show_events(sandbox: Sandbox, name: str) -> None:
    """What `kubectl get events` shows about the object, oldest first."""
    columns = "TYPE:.type,REASON:.reason,MESSAGE:.message"
    sandbox.timeline.say(f"$ kubectl get events --field-selector involvedObject.name={name}")
    listing = sandbox.kubectl(
        "get", "events", f"--field-selector=involvedObject.name={name}",
        "--sort-by=.firstTimestamp", f"--output=custom-columns={columns}",
    )  # fmt: skip
    sandbox.timeline.block(listing.stdout, indent=4)


def show_conditions(sandbox: Sandbox, name: str) -> None:
    """The object's conditions, one line each, as kubectl prints them."""
    each = '{range .status.conditions[*]}{.type}={.status} {.reason}{"\\n"}{end}'
    sandbox.timeline.say(f"$ kubectl get proxmoxvm {name} -o jsonpath='<each condition>'")
    listing = sandbox.kubectl("get", "proxmoxvm", name, f"--output=jsonpath={each}")
    sandbox.timeline.block(listing.stdout, indent=4)


def delete_and_follow(sandbox: Sandbox, sample: SampleVM, watch: Watch) -> ActRecord:
    """`kubectl delete` (which waits for the object to go), followed until both are done."""
    name = sample.name
    with sandbox.kube.background("delete", "proxmoxvm", name, "--timeout=60s") as deleting:
        sandbox.timeline.mark(f"$ kubectl delete proxmoxvm {name}")
        watch.follow("kubectl delete", deleting)
        watch.until(f"{name} to be released", lambda: watch.done)
    watch.record.vm_exists = sandbox.sim.vm_exists(sample.vmid)
    show_events(sandbox, name)
    return watch.record


def act_default_stop(sandbox: Sandbox) -> list[Check]:
    timeline, sample = sandbox.timeline, INSTALLER
    sandbox.sim.set_guest(sample.vmid, IGNORES_ACPI)
    watch = Watch(sandbox, sample)
    timeline.section("Act 1: a guest that ignores shutdown, deleted with the default policy")
    timeline.say(f"VM {sample.vmid}'s guest ignores ACPI shutdown, like a frozen OS installer.")
    timeline.say(f"{sample.name} has no spec.destroy, so the default applies: mode Stop.")
    record = delete_and_follow(sandbox, sample, watch)
    return expectations.default_stop(record, released_within=RELEASED_WITHIN)


def act_shutdown_fallback(sandbox: Sandbox) -> list[Check]:
    timeline, sample = sandbox.timeline, BATCH
    sandbox.sim.set_guest(sample.vmid, IGNORES_ACPI)
    watch = Watch(sandbox, sample)
    timeline.section("Act 2: a graceful shutdown with a deadline, then the fallback")
    timeline.say(f"VM {sample.vmid}'s guest ignores ACPI shutdown too: a job that ignores it.")
    timeline.say(
        f"{sample.name} has spec.destroy: {{mode: Shutdown, shutdownTimeoutSeconds: "
        f"{SHUTDOWN_TIMEOUT}}}: ask the guest, and force a stop at the deadline."
    )
    record = delete_and_follow(sandbox, sample, watch)
    return expectations.shutdown_fallback(record, timeout_seconds=SHUTDOWN_TIMEOUT)


SIM_CLOCK_STOPPED = 0.001  # a simulated millisecond per real second


def act_outage(sandbox: Sandbox) -> list[Check]:
    timeline, sim, sample = sandbox.timeline, sandbox.sim, WEB
    watch = Watch(sandbox, sample)
    timeline.section("Act 3: Proxmox goes away in the middle of a destroy")
    timeline.say(f"{sample.name} has the default policy; Proxmox goes away once the stop is sent.")
    # The simulated clock stands still until the outage, so the stop task is still running
    # when Proxmox goes away, however slowly this machine gets to cut it off.
    sim.set_time_scale(SIM_CLOCK_STOPPED)
    try:
        sandbox.kubectl("delete", "proxmoxvm", sample.name, "--wait=false")
        timeline.mark(f"$ kubectl delete proxmoxvm {sample.name} --wait=false")
        watch.until("the operator's stop call", lambda: watch.record.calls_to("stop"))
        sim.make_unreachable(Unreachable.REFUSE)
    finally:
        sim.set_time_scale(1.0)
    timeline.mark("Proxmox VE API unreachable: every connection refused")
    try:
        watch.until(
            "DeletionStalled=True",
            lambda: expectations.STALLED_UNREACHABLE in watch.record.conditions,
            timeout=STALL_AFTER + ACT_TIMEOUT,
        )
        existed = sim.vm_exists(sample.vmid)
        timeline.mark(f"VM {sample.vmid} {'still exists' if existed else 'is gone'} in Proxmox")
        gauge = sandbox.metric("proxmoxvm_destroys_stalled", reason=UNREACHABLE)
        timeline.mark(f'/metrics: proxmoxvm_destroys_stalled{{reason="{UNREACHABLE}"}} {gauge}')
        timeline.say(f"$ kubectl get proxmoxvm {sample.name}")
        timeline.block(sandbox.kubectl("get", "proxmoxvm", sample.name).stdout, indent=4)
        show_conditions(sandbox, sample.name)
    finally:
        sim.restore()
    restored_at = timeline.elapsed
    timeline.mark("Proxmox VE API reachable again; the operator retries with capped backoff")
    watch.until(f"{sample.name} to be released", lambda: watch.done)
    watch.record.vm_exists = sim.vm_exists(sample.vmid)
    show_events(sandbox, sample.name)
    return expectations.outage(
        watch.record,
        stall_after=STALL_AFTER,
        restored_at=restored_at,
        vm_existed_during_outage=existed,
        stalled_gauge=gauge,
    )


ACTS: tuple[Callable[[Sandbox], list[Check]], ...] = (
    act_default_stop,
    act_shutdown_fallback,
    act_outage,
)


# ------------------------------------------------------------------------- the whole story

DURATION = "proxmoxvm_destroy_duration_seconds"
EXPLAINED = {
    "proxmoxvm_destroy_fallback_total": "graceful shutdowns that ran out of time",
    "proxmoxvm_destroy_errors_total": "destroy passes that could not progress",
    "proxmoxvm_destroys_stalled": "destroys stalled now (act 3 read 1 while stalled)",
}


def report_metrics(sandbox: Sandbox) -> None:
    timeline = sandbox.timeline
    timeline.section(f"The operator's metrics (GET {sandbox.metrics_url})")
    samples = sandbox.metrics()

    def value(name: str, labels: Mapping[str, str]) -> float:
        return next((s.value for s in samples if (s.name, s.labels) == (name, labels)), 0.0)

    for sample in samples:
        if not sample.value:
            continue  # every bounded label set is exported from the start, most at zero
        labels = ",".join(f'{key}="{text}"' for key, text in sample.labels.items())
        series = f"{sample.name}{{{labels}}}" if labels else sample.name
        if sample.name == f"{DURATION}_count":
            count, total = sample.value, value(f"{DURATION}_sum", sample.labels)
            plural = "destroy" if count == 1 else "destroys"
            timeline.say(f"{DURATION}{{{labels}}}: {count:g} {plural}, {total / count:.1f} s mean")
        elif sample.name in EXPLAINED:
            timeline.say(f"{series} {sample.value:g}: {EXPLAINED[sample.name]}")


def where_to_look_next(sandbox: Sandbox, options: DemoOptions) -> None:
    say = sandbox.timeline.say
    sandbox.timeline.section("Where to look next")
    say("README.md: the resource, the Secret, and how a destroy runs, step by step")
    say("docs/: the API reference (also `kubectl explain proxmoxvm.spec.destroy`), the runbooks")
    say("  for the alerts on stalled and slow destroys, and GitOps (Argo CD, Flux) notes")
    say("kubectl describe proxmoxvm NAME: the Deleting and DeletionStalled conditions,")
    say("  status.destroy (step, task, deadline) and the events of a destroy")
    where = "" if options.keep_running else " (with --keep-running)"
    say(f"{sandbox.metrics_url}{where}: the metrics above, for Prometheus")


def keep_running(sandbox: Sandbox) -> None:
    timeline = sandbox.timeline
    timeline.section("The sandbox keeps running (--keep-running): Ctrl-C stops it")
    timeline.say(f"export KUBECONFIG={sandbox.api.kubeconfig}")
    timeline.say("kubectl get proxmoxvms")
    timeline.say(f"kubectl apply -f {sandbox.workdir / 'samples.yaml'}   # the three VMs again")
    timeline.say(f"kubectl delete proxmoxvm {INSTALLER.name}")
    timeline.say(f"kubectl describe proxmoxvm {WEB.name}")
    timeline.say(f"curl -s {sandbox.metrics_url} | grep ^proxmoxvm_")
    timeline.say(f"operator log: {sandbox.operator.log_path}")
    sandbox.signals.pause()
    timeline.say("stopping the sandbox")


def play(sandbox: Sandbox, options: DemoOptions) -> list[Check]:
    """Set the sandbox up, play the acts; the checks of every act, held or not."""
    sandbox.timeline.section("Setting up")
    sandbox.start()
    checks: list[Check] = []
    for number, act in enumerate(ACTS, 1):
        try:
            results = act(sandbox)
        except StoryError as error:
            results = [Check(f"act {number} played to its end", False, str(error))]
        sandbox.timeline.say("Checks:")
        for check in results:
            sandbox.timeline.result(check.held, check.claim, check.evidence)
        checks += results
    report_metrics(sandbox)
    where_to_look_next(sandbox, options)
    return checks


def run(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("the demo drives the real kubectl: install it and put it on PATH", file=sys.stderr)
        return 2
    if importlib.util.find_spec("kmock") is None:
        print(
            "the demo needs the sandbox extras: pip install 'proxmox-vm-operator[sandbox]'",
            file=sys.stderr,
        )
        return 2
    timeline = Timeline(out, interactive=options.interactive)
    signals = Signals()
    started = time.monotonic()
    with signals.installed():
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="proxmox-vm-operator-demo-"))
        timeline.say(
            "proxmox-vm-operator demo: a Proxmox VE simulator, a local Kubernetes API and the "
            "operator, on this machine alone"
        )
        timeline.say(f"sandbox files: {workdir}")
        sandbox: Sandbox | None = None
        code = 1
        try:
            sandbox = Sandbox(workdir, timeline, signals, kubectl)
            checks = play(sandbox, options)
            failed = [check for check in checks if not check.held]
            code = 1 if failed else 0
            held = f"all {len(checks)} checks held"
            summary = f"{len(failed)} of {len(checks)} checks FAILED" if failed else held
            timeline.section(f"{summary}, in {time.monotonic() - started:.0f} s")
            if failed:
                show_log_tail(timeline, sandbox.operator)
            if options.keep_running:
                keep_running(sandbox)
        except StoryError as error:
            timeline.section(f"The story stopped: {error}")
            if sandbox is not None:
                show_log_tail(timeline, sandbox.operator)
                show_log_tail(timeline, sandbox.api)
        except Interrupted as stop:
            timeline.section(f"{stop}: stopping the sandbox")
            code = 128 + stop.signum
        finally:
            try:
                if sandbox is not None:
                    sandbox.close()
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        timeline.say(f"stopped; removed {workdir}")
    return code


def show_log_tail(timeline: Timeline, child: Child, lines: int = 40) -> None:
    timeline.say(f"{child.log_path.name}, last {lines} lines:")
    timeline.block(tail(child.log_text(), lines) or "(empty)", indent=4)
