"""The end-to-end sandbox: the Kubernetes API emulator and the operator as processes, the
Proxmox VE simulator in-process, and real kubectl in between. The fixtures in conftest.py
assemble these; see its docstring for how tests use them.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Self, TypeVar

import yaml

from proxmox_vm_operator.sandbox.children import free_ports
from proxmox_vm_operator.sandbox.kubeapi import write_kubeconfig
from proxmox_vm_operator.simulator import ControlError, Simulator, SimulatorControl

from ..tools import require_tool

T = TypeVar("T")

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "proxmoxvm.yaml"
CRD_NAME = "proxmoxvms.proxmox.vmop.dev"
API_VERSION = "proxmox.vmop.dev/v1alpha1"
FINALIZER = "proxmox.vmop.dev/destroy"
TOKEN_ID = "root@pam!op"
SECRET_NAME = "pve"
LOG_TAIL_LINES = 40
EMULATOR_FAILURE = "The emulator failed on a request"

# Children die with the test process even when it is killed outright (pytest-timeout's thread
# method, SIGKILL, a crash), so no run leaves an operator or an emulator behind. Linux only:
# PR_SET_PDEATHSIG (1) survives execve; the ppid check closes the race with a parent that died
# before prctl ran.
_LAUNCHER = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 9)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _guarded(command: Sequence[str]) -> list[str]:
    if sys.platform != "linux":
        return list(command)
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *command]


def kubectl_binary() -> str:
    """kubectl on PATH; without it the e2e tests skip, or fail when CI=true."""
    return require_tool("kubectl")


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def dig(obj: Any, path: str, default: Any = None) -> Any:
    """`dig(vm, "status.destroy.step")`: the value at a dotted path, `default` where it stops."""
    for key in path.split("."):
        if not isinstance(obj, Mapping) or key not in obj:
            return default
        obj = obj[key]
    return obj


class WaitTimeout(AssertionError):
    """A bounded wait ran out, or the operator died while a test waited on it."""


class OperatorStartError(RuntimeError):
    """The operator exited or did not become ready while starting."""


# ------------------------------------------------------------------------------------ kubectl


class KubectlError(AssertionError):
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"`{' '.join(map(str, result.args))}` exited with {result.returncode}\n"
            f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        )


@dataclasses.dataclass(frozen=True)
class Kubectl:
    """The real kubectl, bound to one kubeconfig and its own discovery cache."""

    binary: str
    kubeconfig: pathlib.Path
    cache_dir: pathlib.Path

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache_dir}"]
        result = subprocess.run(
            [*argv, *args], input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlError(result)
        return result

    def json(self, *args: str, input: str | None = None, timeout: float = 30) -> Any:
        return json.loads(self(*args, "-o", "json", input=input, timeout=timeout).stdout)


# ----------------------------------------------------------------- the Kubernetes API emulator


def install_crd(kubectl: Kubectl) -> None:
    """The ProxmoxVM CRD, applied and established: what every sandbox API starts with."""
    kubectl("apply", "-f", str(CRD_FILE))
    kubectl("wait", "--for=condition=established", f"crd/{CRD_NAME}", "--timeout=10s")


class KubeAPI:
    """`python -m proxmox_vm_operator.sandbox.kubeapi` as a child process, with the CRD applied.

    `launch()` only spawns the process (call it from the thread that outlives it: the child
    dies with that thread); `ready()` waits for it to serve and establishes the CRD.
    """

    def __init__(
        self, workdir: pathlib.Path, kubectl_binary: str, *, watch_lag: float = 0.0
    ) -> None:
        self.workdir = workdir
        self.kubectl_binary = kubectl_binary
        self.watch_lag = watch_lag
        self.kubeconfig = workdir / "kubeconfig"
        self.log_path = workdir / "kubeapi.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> Self:
        return self.launch().ready()

    def launch(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "proxmox_vm_operator.sandbox.kubeapi", "--port", "0"]
        command += ["--kubeconfig", str(self.kubeconfig)]
        command += [f"--watch-lag={self.watch_lag:g}"] if self.watch_lag else []
        with (self.workdir / "kubeapi.url").open("wb") as out, self.log_path.open("ab") as err:
            self.process = subprocess.Popen(
                _guarded(command), stdout=out, stderr=err, start_new_session=True
            )
        return self

    def ready(self, timeout: float = 20) -> Self:
        try:
            url_file, deadline = self.workdir / "kubeapi.url", time.monotonic() + timeout
            while not (url := url_file.read_text().strip()) or not self.kubeconfig.exists():
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"the Kubernetes API emulator exited:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Kubernetes API emulator did not start:\n{self.log()}")
                time.sleep(0.02)
            self.url = url
            install_crd(self.kubectl(self.workdir / "kube-cache"))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10) -> int | None:
        if self.process is None:
            return None
        process, self.process = self.process, None
        return _terminate(process, timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kubectl(self, cache_dir: pathlib.Path, kubeconfig: pathlib.Path | None = None) -> Kubectl:
        return Kubectl(self.kubectl_binary, kubeconfig or self.kubeconfig, cache_dir)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def failures(self) -> str:
        """The emulator's log when it reports a failure of the emulator itself, else ''."""
        log = self.log()
        return log if EMULATOR_FAILURE in log else ""


class KubeAPIPool:
    """Hands out a fresh emulator per test, keeping the next one warming up meanwhile.

    A fresh emulator per test isolates tests, and it is needed: the emulator gets slower with
    every request it has served (kmock 0.8 re-filters its whole request history for each new
    request, about 5 ms more per 100 requests), so a long-lived one slows a suite down more
    and more. Starting one costs about 0.75 s (process, CRD, established); the spare hides it.
    """

    def __init__(self, root: pathlib.Path, kubectl_binary: str) -> None:
        self.root = root
        self.kubectl_binary = kubectl_binary
        self._count = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kubeapi")
        self._spare: tuple[KubeAPI, concurrent.futures.Future[KubeAPI]] | None = None

    def take(self, timeout: float = 60) -> KubeAPI:
        api, ready = self._spare or self._launch()
        self._spare = self._launch()
        try:
            return ready.result(timeout)
        except BaseException:
            api.stop()
            raise

    def _launch(self) -> tuple[KubeAPI, concurrent.futures.Future[KubeAPI]]:
        self._count += 1
        api = KubeAPI(self.root / f"kubeapi-{self._count}", self.kubectl_binary).launch()
        return api, self._executor.submit(api.ready)  # spawned here, waited for there

    def close(self) -> None:
        if self._spare is not None:
            api, ready = self._spare
            self._spare = None
            with contextlib.suppress(BaseException):
                ready.result(30)
            api.stop()
        self._executor.shutdown(wait=True)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, then SIGKILL to the whole process group once `timeout` has passed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(process)
    return process.wait(10)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:  # the group is ours (start_new_session) while its leader lives
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


# ----------------------------------------------------------------- the simulator as a process


class SimulatorProcess:
    """`proxmox-vm-operator simulator` in a process of its own, steered through its HTTP
    control endpoint (`SimulatorControl`), as a simulator in its own pod would be. Everything
    a test does to it (faults, outages, ACLs, guests, the clock) crosses that boundary; the
    control methods and inspection (`requests`, `vm`, ...) are the in-process Simulator's."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        nodes: Sequence[str],
        tokens: Mapping[str, str],
        time_scale: float,
        pve_version: str | None = None,
    ) -> None:
        self.cert_dir = workdir / "simulator-certs"
        self.log_path = workdir / "simulator.log"
        self.port, self.control_port = free_ports(2)
        self.command = [
            sys.executable, "-m", "proxmox_vm_operator", "simulator",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--nodes", ",".join(nodes), "--time-scale", f"{time_scale:g}",
            "--cert-dir", str(self.cert_dir), "--control-port", str(self.control_port),
            *[f"--token={token_id}={secret}" for token_id, secret in tokens.items()],
            *(["--pve-version", pve_version] if pve_version else []),
        ]  # fmt: skip
        self.control = SimulatorControl(f"http://127.0.0.1:{self.control_port}", timeout=30)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> pathlib.Path:
        return self.cert_dir / "ca.pem"

    def start(self, timeout: float = 30) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                _guarded(self.command), stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the simulator exited:\n{tail(self.log())}")
            with contextlib.suppress(OSError, ControlError):
                self.control.call("refresh_cluster_resources")
                return self
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the simulator did not start:\n{tail(self.log())}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process, 10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class lacks: the control and inspection methods.
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
    """The real operator: `python -m proxmox_vm_operator run ...` for one namespace."""

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


class OperatorProcess:
    """The operator as a child process: start, stop (SIGTERM), kill (SIGKILL), logs.

    Every start appends to one log file, after a `--- harness:` line naming the run. With
    `wait_ready`, `start()` returns once the liveness port accepts connections and raises
    `OperatorStartError` (with the log tail) if the process exits or is not ready in time.
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
    ) -> None:
        self.command_factory = command
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.wait_ready = wait_ready
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.env = {**os.environ, **(env or {})}
        self.env.update(KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1")
        self.process: subprocess.Popen[bytes] | None = None
        self.launch: OperatorLaunch | None = None
        self.command: list[str] = []
        self.starts = 0
        self.expected_running = False  # set by start(), cleared by stop() and kill()

    # -- state

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

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

    # -- control

    def start(self) -> Self:
        if self.running:
            raise RuntimeError(f"the operator is already running (pid {self.pid})")
        self.launch = OperatorLaunch(self.namespace, self.kubeconfig, *free_ports(2))
        self.command = [str(arg) for arg in self.command_factory(self.launch)]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- harness: start #{self.starts}: {shlex.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                _guarded(self.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log_path.parent,
                start_new_session=True,
            )
        self.expected_running = True
        if self.wait_ready:
            self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not _port_open(self.liveness_port):
            if not self.running:
                self.expected_running = False
                raise OperatorStartError(
                    f"the operator exited with code {self.returncode} while starting\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise OperatorStartError(
                    f"the operator's liveness port {self.liveness_port} did not open within "
                    f"{self.ready_timeout:g} s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM and wait; SIGKILL after `timeout` (so -9 means it did not stop in time)."""
        self.expected_running = False
        if self.process is None:
            return None
        was_running = self.running
        code = _terminate(self.process, self.stop_timeout if timeout is None else timeout)
        if was_running:
            self._note(f"stopped, exit code {code}")
        return code

    def kill(self) -> int | None:
        """SIGKILL: a crash, as when the node dies or the OOM killer strikes."""
        self.expected_running = False
        if self.process is None:
            return None
        was_running = self.running
        _kill_group(self.process)
        code = self.process.wait(10)
        if was_running:
            self._note(f"killed, exit code {code}")
        return code

    def restart(self, *, crash: bool = False) -> Self:
        """Stop gracefully (or kill, with `crash=True`), then start again."""
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

    def _note(self, text: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"--- harness: {text}\n")

    # -- logs

    def log_text(self) -> str:
        """Everything every run of the operator printed, stdout and stderr interleaved."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return f"--- operator log (last {lines} lines) ---\n{tail(self.log_text(), lines)}"


# ----------------------------------------------------------------------------------- sandbox


@dataclasses.dataclass(frozen=True)
class SandboxOptions:
    """What `@pytest.mark.sandbox(...)` and `indirect` parameters of `cluster` can set."""

    time_scale: float = 20
    nodes: Sequence[str] = ("pve1", "pve2")
    simulator: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # more Simulator()
    namespace: str = "e2e"
    operator: bool = True  # start the operator before the test
    operator_command: Sequence[str] | CommandFactory | None = None  # None: the real operator
    operator_args: Sequence[str] = ()  # appended to the real operator's command
    operator_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    wait_ready: bool | None = None  # None: for the real operator only
    stall_after: float = 30
    clusterwide: bool = False
    # A slow API server: watch events arrive this many seconds late (a dedicated emulator).
    watch_lag: float = 0.0
    # The simulator in a process of its own, steered through its control endpoint (only the
    # options it has flags for: nodes, time_scale, simulator={"pve_version": ...}).
    simulator_process: bool = False

    def command(self) -> CommandFactory:
        command = self.operator_command
        if command is None:
            return operator_command(
                stall_after=self.stall_after,
                clusterwide=self.clusterwide,
                extra_args=self.operator_args,
            )
        if callable(command):
            return command
        if isinstance(command, str):
            raise TypeError("operator_command: a list of arguments, not a string")
        fixed = list(command)
        return lambda _: fixed


class Cluster:
    """One test's sandbox: an emulator with a namespace and Secret, a simulator, an operator.

    It owns `api` (already started, the CRD established) and stops it on close.
    """

    def __init__(self, api: KubeAPI, workdir: pathlib.Path, options: SandboxOptions) -> None:
        self.api = api
        self.workdir = workdir
        self.options = options
        self.namespace = options.namespace
        self.secret_name = SECRET_NAME
        self.token_id = TOKEN_ID
        self.token_secret = secrets.token_urlsafe(24)
        self.kubeconfig = write_kubeconfig(workdir / "kubeconfig", api.url, self.namespace)
        self.kubectl = api.kubectl(workdir / "kube-cache", self.kubeconfig)
        self.sim: Any
        if options.simulator_process:
            unknown = set(options.simulator) - {"pve_version"}
            if unknown:
                raise TypeError(f"no simulator flag for {', '.join(sorted(unknown))}")
            self.sim = SimulatorProcess(
                workdir,
                nodes=list(options.nodes),
                tokens={self.token_id: self.token_secret},
                time_scale=options.time_scale,
                pve_version=options.simulator.get("pve_version"),
            )
        else:
            self.sim = Simulator(
                nodes=list(options.nodes),
                tokens={self.token_id: self.token_secret},
                time_scale=options.time_scale,
                **options.simulator,
            )
        wait_ready = options.wait_ready
        self.operator = OperatorProcess(
            options.command(),
            namespace=self.namespace,
            kubeconfig=self.kubeconfig,
            log_path=workdir / "operator.log",
            wait_ready=options.operator_command is None if wait_ready is None else wait_ready,
            env=options.operator_env,
        )

    def __enter__(self) -> Self:
        try:
            self.sim.start()
            self.kubectl("apply", "-f", "-", input=self._namespace_and_secret())
            if self.options.operator:
                self.operator.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """The operator first (it must not see the rest vanish), then the emulator, simulator."""
        try:
            self.operator.stop()
        finally:
            try:
                self.api.stop()
            finally:
                self.sim.stop()

    def emulator_failures(self) -> str:
        return self.api.failures()

    def _namespace_and_secret(self) -> str:
        data = {
            "endpoint": self.sim.endpoint,
            "tokenId": self.token_id,
            "tokenSecret": self.token_secret,
            "caCert": self.sim.ca_file.read_text(),
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

    # -- ProxmoxVM objects

    def vm_manifest(
        self,
        name: str,
        spec: Mapping[str, Any] | None = None,
        *,
        finalizers: Sequence[str] = (),
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A ProxmoxVM on node pve1 using the sandbox Secret; `spec` adds or overrides keys."""
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace}
        metadata.update({"finalizers": list(finalizers)} if finalizers else {})
        metadata.update({"annotations": dict(annotations)} if annotations else {})
        metadata.update({"labels": dict(labels)} if labels else {})
        base = {"connectionRef": {"name": self.secret_name}, "node": "pve1"}
        return {
            "apiVersion": API_VERSION,
            "kind": "ProxmoxVM",
            "metadata": metadata,
            "spec": {**base, **(spec or {})},
        }

    def apply(self, *manifests: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`kubectl apply` the manifests; the objects as the server stored them."""
        applied = self.kubectl.json("apply", "-f", "-", input=_yaml_docs(manifests))
        return list(applied["items"]) if applied.get("kind") == "List" else [applied]

    def apply_vm(
        self,
        name: str,
        spec: Mapping[str, Any] | None = None,
        *,
        finalizers: Sequence[str] = (),
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        manifest = self.vm_manifest(
            name, spec, finalizers=finalizers, annotations=annotations, labels=labels
        )
        return self.apply(manifest)[0]

    def get_vm(self, name: str) -> dict[str, Any] | None:
        """The ProxmoxVM as `kubectl get -o json` shows it; None when it does not exist."""
        result = self.kubectl("get", "proxmoxvm", name, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise KubectlError(result)
        vm: dict[str, Any] = json.loads(result.stdout)
        return vm

    def list_vms(self) -> list[dict[str, Any]]:
        return list(self.kubectl.json("get", "proxmoxvms")["items"])

    def delete_vm(
        self,
        name: str,
        *,
        wait: bool = False,
        cascade: Literal["background", "foreground", "orphan"] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl delete proxmoxvm NAME`; with `wait`, until the object is gone (or raise)."""
        args = ["delete", "proxmoxvm", name, f"--wait={str(wait).lower()}"]
        args += [f"--timeout={timeout:g}s"] if wait else []
        args += [f"--cascade={cascade}"] if cascade else []
        return self.kubectl(*args, timeout=timeout + 10)

    def events_for(self, name: str, kind: str | None = "ProxmoxVM") -> list[dict[str, Any]]:
        """The Events about one object, oldest first."""
        selector = f"involvedObject.name={name}"
        selector += f",involvedObject.kind={kind}" if kind else ""
        events = self.kubectl.json("get", "events", f"--field-selector={selector}")["items"]

        def order(event: dict[str, Any]) -> tuple[str, int]:
            rv = event["metadata"].get("resourceVersion", "")
            return event["metadata"].get("creationTimestamp", ""), int(rv) if rv.isdigit() else 0

        return sorted(events, key=order)

    # -- waiting

    def wait_for(
        self,
        predicate: Callable[[], T],
        *,
        timeout: float = 30,
        what: str | None = None,
        interval: float = 0.2,
    ) -> T:
        """Poll `predicate` until it returns something truthy, and return that.

        Fails with `WaitTimeout` after `timeout` seconds, or at once when the operator exits
        while it should be running; the message has the last value and the operator log tail.
        """
        description = what or getattr(predicate, "__qualname__", repr(predicate))
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if died := self.operator.died():
                raise WaitTimeout(
                    f"{died} while waiting for {description}\n{self.operator.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"timed out after {timeout:g} s waiting for {description}; "
                    f"last value: {value!r}\n{self.operator.log_tail()}"
                )
            time.sleep(interval)

    def debug_report(self) -> Iterator[tuple[str, str]]:
        """Sections for a failed test's report: the objects, events and the operator log."""
        for title, args in (
            ("proxmoxvms", ("get", "proxmoxvms", "-o", "yaml")),
            ("events", ("get", "events")),
        ):
            result = self.kubectl(*args, check=False, timeout=10)
            yield f"sandbox {title} ({self.namespace})", result.stdout + result.stderr
        yield "sandbox operator log", tail(self.operator.log_text(), 200)
        if isinstance(self.sim, SimulatorProcess) and (sim_log := self.sim.log()):
            yield "sandbox simulator log", tail(sim_log, 60)
        if api_log := self.api.log():
            yield "sandbox Kubernetes API emulator log", tail(api_log, 100)


def _yaml_docs(docs: Sequence[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)


__all__ = [
    "FINALIZER",
    "Cluster",
    "KubeAPI",
    "Kubectl",
    "KubectlError",
    "OperatorLaunch",
    "OperatorProcess",
    "OperatorStartError",
    "SandboxOptions",
    "WaitTimeout",
    "dig",
    "kubectl_binary",
    "operator_command",
]
