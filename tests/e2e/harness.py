"""The end-to-end sandbox: the Kubernetes API emulator and the operator as processes, the
Proxmox VE simulator in-process (or as a process), and real kubectl in between. The processes,
kubectl and the credentials are the sandbox's own (`proxmox_vm_operator.sandbox.stack`, which
`proxmox-vm-operator demo` runs on too); this module adds what only tests need: the per-test
`Cluster` with its ProxmoxVM helpers and failing waits, and the emulator pool. The fixtures in
conftest.py assemble these; see its docstring for how tests use them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import pathlib
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Self, TypeVar

import yaml

from proxmox_vm_operator.domain.model import FINALIZER
from proxmox_vm_operator.sandbox.children import free_ports
from proxmox_vm_operator.sandbox.kubeapi import write_kubeconfig
from proxmox_vm_operator.sandbox.stack import (
    CommandFactory,
    Credentials,
    KubeAPIProcess,
    Kubectl,
    KubectlError,
    OperatorLaunch,
    OperatorProcess,
    SimulatorProcess,
    StartError,
    install_crd,
    operator_command,
    stop_all,
    tail,
)
from proxmox_vm_operator.simulator import Simulator

from ..tools import require_tool

T = TypeVar("T")

REPO = pathlib.Path(__file__).resolve().parents[2]
TOKEN_ID = "root@pam!op"
SECRET_NAME = "pve"


def kubectl_binary() -> str:
    """kubectl on PATH; without it the e2e tests skip, or fail when CI=true."""
    return require_tool("kubectl")


def dig(obj: Any, path: str, default: Any = None) -> Any:
    """`dig(vm, "status.destroy.step")`: the value at a dotted path, `default` where it stops."""
    for key in path.split("."):
        if not isinstance(obj, Mapping) or key not in obj:
            return default
        obj = obj[key]
    return obj


class WaitTimeout(AssertionError):
    """A bounded wait ran out, or the operator died while a test waited on it."""


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
        self._spare: tuple[KubeAPIProcess, concurrent.futures.Future[KubeAPIProcess]] | None = None

    def take(self, timeout: float = 60) -> KubeAPIProcess:
        api, ready = self._spare or self._launch()
        self._spare = self._launch()
        try:
            return ready.result(timeout)
        except BaseException:
            api.stop()
            raise

    def _launch(self) -> tuple[KubeAPIProcess, concurrent.futures.Future[KubeAPIProcess]]:
        self._count += 1
        api = KubeAPIProcess(self.root / f"kubeapi-{self._count}", self.kubectl_binary).launch()
        # Spawned here, in the thread it must die with; waited for there.
        return api, self._executor.submit(api.ready)

    def close(self) -> None:
        if self._spare is not None:
            api, ready = self._spare
            self._spare = None
            with contextlib.suppress(BaseException):
                ready.result(30)
            api.stop()
        self._executor.shutdown(wait=True)


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

    It owns `api` (already started, the CRD established) and stops it on close. The emulator
    comes from a pool that does not know the test's namespace, so the Cluster writes its own
    kubeconfig with that namespace as the default.
    """

    def __init__(self, api: KubeAPIProcess, workdir: pathlib.Path, options: SandboxOptions) -> None:
        self.api = api
        self.workdir = workdir
        self.options = options
        self.credentials = Credentials(options.namespace, SECRET_NAME, TOKEN_ID)
        self.namespace = options.namespace
        self.secret_name = SECRET_NAME
        self.token_id = TOKEN_ID
        self.token_secret = self.credentials.token_secret
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
                tokens=self.credentials.tokens,
                time_scale=options.time_scale,
                pve_version=options.simulator.get("pve_version"),
            )
        else:
            self.sim = Simulator(
                nodes=list(options.nodes),
                tokens=self.credentials.tokens,
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
            cwd=workdir,
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
        stop_all(self.operator, self.api, self.sim)

    def emulator_failures(self) -> str:
        return self.api.failures()

    def _namespace_and_secret(self) -> str:
        # fault_matrix.py restores a deleted Secret with this too.
        return self.credentials.manifests(self.sim.endpoint, self.sim.ca_file.read_text())

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
        metadata: dict[str, Any] = {}
        metadata.update({"finalizers": list(finalizers)} if finalizers else {})
        metadata.update({"annotations": dict(annotations)} if annotations else {})
        metadata.update({"labels": dict(labels)} if labels else {})
        return self.credentials.proxmoxvm(name, {"node": "pve1", **(spec or {})}, **metadata)

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
        if isinstance(self.sim, SimulatorProcess) and (sim_log := self.sim.log_text()):
            yield "sandbox simulator log", tail(sim_log, 60)
        if api_log := self.api.log_text():
            yield "sandbox Kubernetes API emulator log", tail(api_log, 100)


def _yaml_docs(docs: Sequence[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)


__all__ = [
    "FINALIZER",
    "REPO",
    "Cluster",
    "CommandFactory",
    "KubeAPIPool",
    "KubeAPIProcess",
    "Kubectl",
    "KubectlError",
    "OperatorLaunch",
    "OperatorProcess",
    "SandboxOptions",
    "SimulatorProcess",
    "StartError",
    "WaitTimeout",
    "dig",
    "free_ports",
    "install_crd",
    "kubectl_binary",
    "operator_command",
]
