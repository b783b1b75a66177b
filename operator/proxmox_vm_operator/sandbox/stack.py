"""The sandbox's moving parts, one copy for ``proxmox-vm-operator demo`` and the e2e tests.

* `KubeAPIProcess`: the Kubernetes API emulator as a child process, ProxmoxVM CRD established;
* `SimulatorProcess`: the Proxmox VE simulator in a process of its own, steered through its
  HTTP control endpoint (the demo and most tests run a `Simulator` in their own process
  instead, to inject faults and read its request log directly);
* `OperatorProcess`: ``python -m proxmox_vm_operator run`` (or a stand-in) as a child process,
  on fresh ports at every start, ready once its liveness port accepts connections;
* `Kubectl`: the real kubectl, bound to the sandbox's kubeconfig;
* `Credentials`: the namespace and the Secret through which the operator reaches Proxmox;
* `stop_all`: the order it all stops in.

Each child is started by `children.spawn` (a process group of its own, dying with its
parent) and appends to a log file in the sandbox's directory. A wait for readiness calls a
`Pause` between two polls: a plain sleep in the tests, a spinner and a signal check in the demo.

Only the ``demo`` command (imported lazily) and the tests use this; the operator never does.
It must not import the emulator itself (kmock, aiohttp): the demo checks for those extras
first, to say how to install them.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ..crd import render_crd
from ..domain.model import GROUP, KIND, PLURAL, VERSION
from ..simulator import ControlError, SimulatorControl
from . import children

T = TypeVar("T")

API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"
LOG_TAIL_LINES = 40
# What the emulator logs when it fails on a request (a bug of its own, not an API answer).
EMULATOR_FAILURE = "The emulator failed on a request"

Pause = Callable[[str], None]
"""What a wait does between two polls, told what it waits for; it may raise to end the wait."""


def sleeping(seconds: float) -> Pause:
    def pause(_what: str) -> None:
        time.sleep(seconds)

    return pause


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


class StartError(RuntimeError):
    """A child exited while it started, or was not ready in time; the message has its log."""

    def __init__(self, summary: str, log_tail: str = "") -> None:
        super().__init__(f"{summary}\n{log_tail}" if log_tail else summary)
        self.summary = summary  # one line, without the log


# ------------------------------------------------------------------------------------ kubectl


class KubectlError(Exception):
    """kubectl exited non-zero. The message has all its output; `summary` is one line."""

    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"`{' '.join(map(str, result.args))}` exited with {result.returncode}\n"
            f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        )
        self.result = result
        self.summary = f"`kubectl {' '.join(args)}` failed: {result.stderr.strip()}"


def install_crd(kubectl: Kubectl) -> None:
    """Apply the ProxmoxVM CRD as the operator renders it, and wait until it is served."""
    kubectl("apply", "-f", "-", input=render_crd())
    kubectl("wait", "--for=condition=established", f"crd/{CRD_NAME}", "--timeout=20s")


@dataclasses.dataclass(frozen=True)
class Kubectl:
    """The real kubectl, bound to one kubeconfig and its own discovery cache.

    Every Kubernetes step of the sandbox goes through it, as a user would type it, so the
    emulator is held to what the real client sends and accepts.
    """

    binary: str
    kubeconfig: pathlib.Path
    cache_dir: pathlib.Path

    def argv(self, *args: str) -> list[str]:
        config = [f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache_dir}"]
        return [self.binary, *config, *args]

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run to the end; `KubectlError` on a non-zero exit unless ``check=False``."""
        result = subprocess.run(  # noqa: S603 - an argument list, no shell
            self.argv(*args), input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def json(self, *args: str, input: str | None = None, timeout: float = 30) -> Any:
        return json.loads(self(*args, "-o", "json", input=input, timeout=timeout).stdout)

    @contextlib.contextmanager
    def background(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        """kubectl running meanwhile (a `kubectl delete` that waits), killed if still running."""
        process = subprocess.Popen(  # noqa: S603 - an argument list, no shell
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()


# ------------------------------------------------------------------------------ child processes


class Child:
    """A child process of the sandbox, logging to one file that each of its runs appends to."""

    def __init__(self, name: str, log_path: pathlib.Path, *, stop_timeout: float) -> None:
        self.name = name  # in messages: "the {name} exited ..."
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited; None while it runs or before it started."""
        return self.process.poll() if self.process else None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM and wait; SIGKILL after ``timeout`` (so -9 means it did not stop in time)."""
        if self.process is None:
            return None
        return children.stop(self.process, self.stop_timeout if timeout is None else timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash, as when the node dies or the OOM killer strikes."""
        if self.process is None:
            return None
        return children.kill(self.process)

    def log_text(self) -> str:
        """Everything every run printed, stdout and stderr interleaved."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return f"--- {self.name} log (last {lines} lines) ---\n{tail(self.log_text(), lines)}"

    def _await(self, what: str, condition: Callable[[], T], timeout: float, pause: Pause) -> T:
        """Poll ``condition`` while the child starts; `StartError` if it exits or times out."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if not self.running:
                summary = f"the {self.name} exited with code {self.returncode} while starting"
                raise StartError(summary, self.log_tail())
            if time.monotonic() > deadline:
                raise StartError(f"waited {timeout:g} s for {what} in vain", self.log_tail())
            pause(what)
        return value


class KubeAPIProcess(Child):
    """``python -m proxmox_vm_operator.sandbox.kubeapi`` as a child, with the ProxmoxVM CRD.

    No kube-apiserver can run where this project is built and tested (no registry in reach
    ships one, and there is no container engine), so the emulator is the API of the sandbox.
    `launch()` only spawns the process, and `ready()` waits for it to serve and establishes the
    CRD: a pool can spawn one from the thread it must die with and wait for it in another.
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        kubectl_binary: str,
        *,
        namespace: str = "default",  # the default namespace of the kubeconfig it writes
        watch_lag: float = 0.0,  # seconds every watch event is late, as from a slow API server
        stop_timeout: float = 10,
    ) -> None:
        super().__init__(
            "Kubernetes API emulator", workdir / "kubeapi.log", stop_timeout=stop_timeout
        )
        self.workdir = workdir
        self.kubectl_binary = kubectl_binary
        self.namespace = namespace
        self.watch_lag = watch_lag
        self.kubeconfig = workdir / "kubeconfig"
        self.url_file = workdir / "kubeapi.url"
        self.url = ""

    def start(self, timeout: float = 20, *, pause: Pause | None = None) -> Self:
        return self.launch().ready(timeout, pause=pause)

    def launch(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "proxmox_vm_operator.sandbox.kubeapi", "--port", "0"]
        command += ["--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace]
        command += [f"--watch-lag={self.watch_lag:g}"] if self.watch_lag else []
        self.process = children.spawn(command, log=self.log_path, stdout=self.url_file)
        return self

    def ready(self, timeout: float = 20, *, pause: Pause | None = None) -> Self:
        """Wait until it serves, then establish the CRD; stopped again if that fails."""
        try:
            what = "the Kubernetes API emulator"
            self.url = self._await(what, self._printed_url, timeout, pause or sleeping(0.02))
            install_crd(self.kubectl(self.workdir / "kube-cache"))
        except BaseException:
            self.stop()
            raise
        return self

    def _printed_url(self) -> str:
        # The emulator writes the kubeconfig, then prints its URL: a whole line means both.
        text = self.url_file.read_text() if self.url_file.exists() else ""
        return text.partition("\n")[0] if "\n" in text else ""

    def kubectl(self, cache_dir: pathlib.Path, kubeconfig: pathlib.Path | None = None) -> Kubectl:
        return Kubectl(self.kubectl_binary, kubeconfig or self.kubeconfig, cache_dir)

    def failures(self) -> str:
        """The log when the emulator reports a failure of its own on a request, else ''."""
        log = self.log_text()
        return log if EMULATOR_FAILURE in log else ""


PORT_ATTEMPTS = 3
PORT_TAKEN = "address already in use"  # compared case-blind: Python words it both ways


class SimulatorProcess(Child):
    """``proxmox-vm-operator simulator`` in a process of its own, steered through its HTTP
    control endpoint (`SimulatorControl`), as a simulator in its own pod would be. Everything
    done to it (faults, outages, ACLs, guests, the clock) crosses that boundary; its control
    and inspection methods (`requests`, `vm`, ...) are the in-process `Simulator`'s."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        nodes: Sequence[str],
        tokens: Mapping[str, str],
        time_scale: float,
        pve_version: str | None = None,
        stop_timeout: float = 10,
    ) -> None:
        super().__init__("simulator", workdir / "simulator.log", stop_timeout=stop_timeout)
        self.cert_dir = workdir / "simulator-certs"
        self.options = [
            "--nodes", ",".join(nodes), "--time-scale", f"{time_scale:g}",
            "--cert-dir", str(self.cert_dir),
            *[f"--token={token_id}={secret}" for token_id, secret in tokens.items()],
            *(["--pve-version", pve_version] if pve_version else []),
        ]  # fmt: skip
        self._choose_ports()

    def _choose_ports(self) -> None:
        self.port, self.control_port = children.free_ports(2)
        self.command = [
            sys.executable, "-m", "proxmox_vm_operator", "simulator",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--control-port", str(self.control_port), *self.options,
        ]  # fmt: skip
        self.control = SimulatorControl(f"http://127.0.0.1:{self.control_port}", timeout=30)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> pathlib.Path:
        return self.cert_dir / "ca.pem"

    def start(self, timeout: float = 30, *, pause: Pause | None = None) -> Self:
        """Start it, and return once its control endpoint answers; stopped again if not.

        The ports are free when chosen, but another process may bind one before the simulator
        does: then it starts again on new ones."""
        for attempt in range(PORT_ATTEMPTS):
            self.process = children.spawn(self.command, log=self.log_path)
            try:
                what = "the simulator's control endpoint"
                self._await(what, self._answers, timeout, pause or sleeping(0.1))
            except StartError:
                self.stop()
                if attempt + 1 < PORT_ATTEMPTS and PORT_TAKEN in self.log_tail().lower():
                    self._choose_ports()
                    continue
                raise
            except BaseException:
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")

    def _answers(self) -> bool:
        with contextlib.suppress(OSError, ControlError):
            self.control.call("refresh_cluster_resources")
            return True
        return False

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class lacks: the control and inspection methods. Not for
        # `control` itself, which is missing only while __init__ runs.
        if name == "control":
            raise AttributeError(name)
        return getattr(self.control, name)


# ------------------------------------------------------------------------------ the operator


@dataclasses.dataclass(frozen=True)
class OperatorLaunch:
    """What an operator command is built from; the ports are fresh for every start."""

    namespace: str
    kubeconfig: pathlib.Path
    metrics_port: int
    liveness_port: int


CommandFactory = Callable[[OperatorLaunch], Sequence[str]]


def operator_command(
    *, stall_after: float = 30, clusterwide: bool = False, extra_args: Sequence[str] = ()
) -> CommandFactory:
    """The real operator, ``python -m proxmox_vm_operator run ...``, in one namespace or all.

    Standalone (no kopf peering: one replica) and bound to the loopback interface.
    """

    def build(launch: OperatorLaunch) -> list[str]:
        scope = ["-A"] if clusterwide else ["-n", launch.namespace]
        return [
            sys.executable, "-m", "proxmox_vm_operator", "run", *scope, "--standalone",
            "--metrics-port", str(launch.metrics_port),
            "--liveness-port", str(launch.liveness_port),
            "--bind-address", "127.0.0.1",
            "--stall-after", f"{stall_after:g}",
            *extra_args,
        ]  # fmt: skip

    return build


@dataclasses.dataclass(frozen=True)
class Sample:
    """One Prometheus sample."""

    name: str
    labels: dict[str, str]
    value: float


class OperatorProcess(Child):
    """The operator as a child process: start, stop (SIGTERM), kill (SIGKILL), restart, logs.

    Every start appends to one log file, after a ``--- sandbox:`` line naming the run; stops
    and kills get such a line too. With ``wait_ready``, `start()` returns once the liveness
    port accepts connections (kopf may still be discovering resources then), and raises
    `StartError` (with the log tail) if the process exits or is not ready in time.
    """

    def __init__(
        self,
        command: CommandFactory,
        *,
        namespace: str,
        kubeconfig: pathlib.Path,
        log_path: pathlib.Path,
        wait_ready: bool = True,
        ready_timeout: float = 20,
        stop_timeout: float = 15,
        env: Mapping[str, str] | None = None,
        cwd: pathlib.Path | None = None,  # None: this process's
    ) -> None:
        super().__init__("operator", log_path, stop_timeout=stop_timeout)
        self.command_factory = command
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.wait_ready = wait_ready
        self.ready_timeout = ready_timeout
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.env.update(KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1")
        self.launch: OperatorLaunch | None = None
        self.command: list[str] = []
        self.starts = 0
        self.expected_running = False  # set by start(), cleared by stop() and kill()

    @property
    def metrics_port(self) -> int:
        assert self.launch is not None, "the operator was never started"
        return self.launch.metrics_port

    @property
    def liveness_port(self) -> int:
        assert self.launch is not None, "the operator was never started"
        return self.launch.liveness_port

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def died(self) -> str | None:
        """Why the operator is down although nobody stopped it; None while that is not so."""
        if not self.expected_running or self.running or self.process is None:
            return None
        return f"the operator (pid {self.process.pid}) exited with code {self.returncode}"

    def start(self, *, pause: Pause | None = None) -> Self:
        if self.running:
            raise RuntimeError(f"the operator is already running (pid {self.pid})")
        self.launch = OperatorLaunch(self.namespace, self.kubeconfig, *children.free_ports(2))
        self.command = [str(arg) for arg in self.command_factory(self.launch)]
        self.starts += 1
        self._note(f"start #{self.starts}: {shlex.join(self.command)}")
        self.process = children.spawn(self.command, log=self.log_path, env=self.env, cwd=self.cwd)
        self.expected_running = True
        if self.wait_ready:
            liveness = f"the operator's liveness port {self.liveness_port}"
            try:
                self._await(
                    liveness,
                    lambda: children.port_open(self.liveness_port),
                    self.ready_timeout,
                    pause or sleeping(0.05),
                )
            except StartError:
                self.kill()  # not ready in time: not left running either
                raise
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        self.expected_running = False
        was_running = self.running
        code = super().stop(timeout)
        if was_running:
            self._note(f"stopped, exit code {code}")
        return code

    def kill(self) -> int | None:
        self.expected_running = False
        was_running = self.running
        code = super().kill()
        if was_running:
            self._note(f"killed, exit code {code}")
        return code

    def restart(self, *, crash: bool = False) -> Self:
        """Stop gracefully (or kill, with ``crash=True``), then start again."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    def wait(self, timeout: float = 30) -> int:
        """Wait for the operator to exit on its own; its exit code."""
        assert self.process is not None, "the operator was never started"
        code = self.process.wait(timeout)
        self.expected_running = False
        return code

    def scrape(self, timeout: float = 5) -> list[Sample]:
        """The operator's own (proxmoxvm_*) samples, as Prometheus reads them; OSError when
        the metrics endpoint does not answer."""
        url = self.metrics_url  # always http://127.0.0.1:PORT, never file:// or the like
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310
            text = reply.read().decode()
        return [
            Sample(sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("proxmoxvm_")
        ]

    def _note(self, text: str) -> None:
        # The log is the operator's own output; these lines tell its runs apart.
        with self.log_path.open("a") as log:
            log.write(f"--- sandbox: {text}\n")


# ---------------------------------------------------------------------------- the whole stack


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How the operator reaches Proxmox VE: a namespace, and in it the Secret that a
    ProxmoxVM's ``connectionRef`` names (endpoint, API token, the CA to trust), as a user
    would create them for a real cluster."""

    namespace: str
    secret_name: str
    token_id: str
    token_secret: str = dataclasses.field(
        default_factory=lambda: secrets.token_urlsafe(24), repr=False
    )

    @property
    def tokens(self) -> dict[str, str]:
        """The simulator's ``tokens``: the one API token it accepts."""
        return {self.token_id: self.token_secret}

    def manifests(self, endpoint: str, ca_cert: str) -> str:
        """The Namespace and the Secret, as YAML for ``kubectl apply -f -``."""
        data = {
            "endpoint": endpoint,
            "tokenId": self.token_id,
            "tokenSecret": self.token_secret,
            "caCert": ca_cert,
        }
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": self.secret_name, "namespace": self.namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        return yaml.safe_dump_all([namespace, secret])

    def proxmoxvm(self, name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
        """A ProxmoxVM in the namespace, connected through the Secret; ``spec`` adds to or
        overrides that, ``metadata`` adds labels, annotations, finalizers..."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": self.namespace, **metadata},
            "spec": {"connectionRef": {"name": self.secret_name}, **spec},
        }


class _Stoppable(Protocol):
    def stop(self) -> object: ...


def stop_all(operator: OperatorProcess, api: KubeAPIProcess, sim: _Stoppable) -> None:
    """The operator first (it must not see the rest vanish), then the emulator, then the
    simulator (a `Simulator` or a `SimulatorProcess`): each even when the one before failed."""
    try:
        operator.stop()
    finally:
        try:
            api.stop()
        finally:
            sim.stop()
