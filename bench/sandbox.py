"""The benchmark's stack: the simulator, the Kubernetes API emulator and the operator, each a
process of its own, with kubectl in front as a user has it.

Built on `proxmox_vm_operator.sandbox.stack` (the demo's and the e2e tests' processes); what
the benchmark adds lives in its own process entry points (`bench.simproc`, `bench.kubeproc`):
fixed task times and timestamped records of every task and request. A `Watcher` in this
process follows the ProxmoxVM objects, so the moment each became Ready or went away is known
to a few milliseconds without polling kubectl.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import pathlib
import shutil
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

import yaml

from proxmox_vm_operator.domain.model import GROUP, PLURAL, VERSION
from proxmox_vm_operator.sandbox import children
from proxmox_vm_operator.sandbox.stack import (
    Credentials,
    KubeAPIProcess,
    Kubectl,
    OperatorLaunch,
    OperatorProcess,
    SimulatorProcess,
    operator_command,
    stop_all,
)

from .figures import TaskRecord

REPO = pathlib.Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
SECRET_NAME = "pve"  # noqa: S105 - the name of a Secret
TOKEN_ID = "root@pam!bench"  # noqa: S105 - the id; the secret is random
AGENT = "bench-watcher"


def _get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - loopback http
        return json.loads(reply.read())


def _post_json(url: str, body: Mapping[str, Any], timeout: float = 30) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback http
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
        return json.loads(reply.read())


class BenchSimulator(SimulatorProcess):
    """`SimulatorProcess`, started as ``python -m bench.simproc`` with fixed task times."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        nodes: Sequence[str],
        tokens: Mapping[str, str],
        timings: Mapping[str, float],
    ) -> None:
        super().__init__(workdir, nodes=nodes, tokens=tokens, time_scale=1.0)
        (self.bench_port,) = children.free_ports(1)
        self.command = [
            sys.executable, "-m", "bench.simproc",
            "--port", str(self.port), "--control-port", str(self.control_port),
            "--bench-port", str(self.bench_port), "--nodes", ",".join(nodes),
            "--cert-dir", str(self.cert_dir),
            "--timings", ",".join(f"{k}={v:g}" for k, v in timings.items()),
            *[f"--token={token_id}={secret}" for token_id, secret in tokens.items()],
        ]  # fmt: skip

    @property
    def bench_url(self) -> str:
        return f"http://127.0.0.1:{self.bench_port}/bench"

    def task_records(self) -> list[TaskRecord]:
        return [TaskRecord.from_dict(t) for t in _get_json(f"{self.bench_url}/tasks")["result"]]

    def power_offs(self) -> list[dict[str, Any]]:
        offs: list[dict[str, Any]] = _get_json(f"{self.bench_url}/power-offs")["result"]
        return offs

    def all_requests(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _get_json(f"{self.bench_url}/requests?since=0")["result"][
            "requests"
        ]
        return rows

    def set_timings(self, **values: float) -> dict[str, float]:
        timings: dict[str, float] = _post_json(f"{self.bench_url}/timings", values)["result"]
        return timings


class BenchKubeAPI(KubeAPIProcess):
    """`KubeAPIProcess`, started as ``python -m bench.kubeproc`` (the emulator plus a log of
    every request with its User-Agent)."""

    def launch(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "bench.kubeproc", "--port", "0"]
        command += ["--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace]
        self.process = children.spawn(command, log=self.log_path, stdout=self.url_file)
        return self

    def all_requests(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _get_json(f"{self.url}/_bench/requests?since=0")["requests"]
        return rows


# -------------------------------------------------------------------------------- watcher


@dataclasses.dataclass
class ObjectTimes:
    seen: float
    ready: float | None = None  # first moment Ready=True
    deleting: float | None = None  # first event with a deletionTimestamp
    gone: float | None = None  # the DELETED event


def _is_ready(obj: Mapping[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Watcher:
    """Follows the ProxmoxVMs of one namespace through a watch of its own (User-Agent
    ``bench-watcher``), noting when each first got Ready=True and when it went away."""

    def __init__(self, api_url: str, namespace: str) -> None:
        parsed = urllib.parse.urlsplit(api_url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        self.objects: dict[str, ObjectTimes] = {}
        self.events = 0
        self.changed = threading.Condition()
        self._stopping = False
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(2)
        self._thread.join(timeout=10)

    def _request(self, query: str, timeout: float | None) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self._connection = connection
        connection.request("GET", f"{self.path}?{query}", headers={"User-Agent": AGENT})
        return connection.getresponse()

    def _run(self) -> None:
        try:
            version = ""
            while not self._stopping:
                if not version:
                    listing = json.loads(self._request("", 30).read())
                    version = listing["metadata"]["resourceVersion"]
                    for item in listing["items"]:
                        self._note("ADDED", item)
                    self._missing({item["metadata"]["name"] for item in listing["items"]})
                query = f"watch=true&allowWatchBookmarks=true&resourceVersion={version}"
                reply = self._request(query + "&timeoutSeconds=600", None)
                while not self._stopping:
                    line = reply.readline()
                    if not line:
                        break
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # 410 Gone: list again
                        version = ""
                        break
                    version = event["object"]["metadata"].get("resourceVersion", version)
                    if event["type"] != "BOOKMARK":
                        self._note(event["type"], event["object"])
        except Exception as exc:
            if not self._stopping:
                self.failure = exc
                with self.changed:
                    self.changed.notify_all()

    def _note(self, kind: str, obj: Mapping[str, Any]) -> None:
        now = time.monotonic()
        name = obj["metadata"]["name"]
        with self.changed:
            self.events += 1
            times = self.objects.get(name)
            if times is None or (times.gone is not None and kind == "ADDED"):
                times = self.objects[name] = ObjectTimes(seen=now)
            if kind == "DELETED":
                times.gone = now
            else:
                if times.ready is None and _is_ready(obj):
                    times.ready = now
                if times.deleting is None and obj["metadata"].get("deletionTimestamp"):
                    times.deleting = now
            self.changed.notify_all()

    def _missing(self, listed: set[str]) -> None:
        """After a relist (the watch expired): what is no longer listed went meanwhile."""
        now = time.monotonic()
        with self.changed:
            for name, times in self.objects.items():
                if times.gone is None and name not in listed:
                    times.gone = now
            self.changed.notify_all()

    def wait(self, predicate: Callable[[dict[str, ObjectTimes]], bool], timeout: float) -> bool:
        """Wait until ``predicate(objects)`` holds; False when ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self.objects):
                if self.failure is not None:
                    raise RuntimeError(f"the watch failed: {self.failure!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 1.0))
            return True

    def snapshot(self, names: Sequence[str]) -> dict[str, ObjectTimes]:
        with self.changed:
            return {n: dataclasses.replace(self.objects[n]) for n in names if n in self.objects}


# -------------------------------------------------------------------------------- stack


@dataclasses.dataclass(frozen=True)
class StackOptions:
    nodes: Sequence[str]
    timings: Mapping[str, float]
    max_tasks_per_node: int = 4
    profile_to: pathlib.Path | None = None  # run the operator under cProfile, dump here
    operator_path: pathlib.Path | None = None  # import the operator from here (a git export)


def _profiled(command: Sequence[str], output: pathlib.Path) -> list[str]:
    """``python -m proxmox_vm_operator run ...`` as ``python -m cProfile -o OUT -m ...``."""
    python, flag, module, *rest = command
    assert flag == "-m", command
    return [python, "-m", "cProfile", "-o", str(output), "-m", module, *rest]


class Stack:
    """One fresh sandbox: simulator, emulator, operator, kubectl, a watcher."""

    def __init__(self, workdir: pathlib.Path, options: StackOptions) -> None:
        kubectl_binary = shutil.which("kubectl")
        if kubectl_binary is None:
            raise RuntimeError("the benchmark needs kubectl on PATH")
        self.workdir = workdir
        self.options = options
        workdir.mkdir(parents=True, exist_ok=True)
        self.credentials = Credentials(NAMESPACE, SECRET_NAME, TOKEN_ID)
        self.api = BenchKubeAPI(workdir, kubectl_binary, namespace=NAMESPACE)
        self.sim = BenchSimulator(
            workdir,
            nodes=list(options.nodes),
            tokens=self.credentials.tokens,
            timings=options.timings,
        )
        extra = ["--max-tasks-per-node", str(options.max_tasks_per_node)]
        # The production --stall-after (600 s): a short one would flip DeletionStalled on
        # objects that merely wait for a task slot, and add writes no user would see.
        plain = operator_command(stall_after=600, extra_args=extra)
        profile_to = options.profile_to

        def command(launch: OperatorLaunch) -> Sequence[str]:
            built = plain(launch)
            return _profiled(built, profile_to) if profile_to else built

        env = {}
        if options.operator_path is not None:
            inherited = os.environ.get("PYTHONPATH", "")
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(options.operator_path), inherited) if p
            )
        self.operator = OperatorProcess(
            command,
            namespace=NAMESPACE,
            kubeconfig=self.api.kubeconfig,
            log_path=workdir / "operator.log",
            env=env,
            stop_timeout=60 if profile_to else 15,
            cwd=workdir,
        )
        self.kubectl: Kubectl = self.api.kubectl(workdir / "kube-cache")
        self.watcher: Watcher | None = None

    def __enter__(self) -> Self:
        try:
            self.api.start(timeout=60)
            self.sim.start(timeout=60)
            manifests = self.credentials.manifests(self.sim.endpoint, self.sim.ca_file.read_text())
            self.kubectl("apply", "-f", "-", input=manifests)
            self.watcher = Watcher(self.api.url, NAMESPACE).start()
            self.operator.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        stop_all(self.operator, self.api, self.sim)

    @property
    def watch(self) -> Watcher:
        assert self.watcher is not None, "the stack is not started"
        return self.watcher

    def manifest(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self.credentials.proxmoxvm(name, spec)

    def apply(self, manifests: Sequence[Mapping[str, Any]], timeout: float = 900) -> None:
        documents = yaml.safe_dump_all([dict(m) for m in manifests], sort_keys=False)
        self.kubectl("apply", "-f", "-", input=documents, timeout=timeout)

    def delete(self, *names: str, timeout: float = 900) -> None:
        """``kubectl delete pvm NAME... --wait=false`` (``--all`` without names)."""
        targets = list(names) or ["--all"]
        self.kubectl("delete", "proxmoxvm", *targets, "--wait=false", timeout=timeout)

    def event_reasons(self) -> dict[str, int]:
        """How many Events of each reason the ProxmoxVMs got (kubectl get events)."""
        events = self.kubectl.json("get", "events", timeout=120)["items"]
        reasons: dict[str, int] = {}
        for event in events:
            if event.get("involvedObject", {}).get("kind") == "ProxmoxVM":
                reason = str(event.get("reason", "?"))
                reasons[reason] = reasons.get(reason, 0) + int(event.get("count") or 1)
        return reasons

    def operator_cpu_seconds(self) -> float | None:
        """User and system CPU time of the operator process so far (/proc/PID/stat)."""
        pid = self.operator.pid
        if pid is None:
            return None
        try:
            text = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = text.rsplit(")", 1)[1].split()
        # After the command: state is field 3 in proc(5); utime is 14 and stime 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def operator_rss_mib(self) -> float | None:
        pid = self.operator.pid
        try:
            lines = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def check_alive(self) -> None:
        died = self.operator.died()
        if died:
            raise RuntimeError(f"{died}\n{self.operator.log_tail()}")


@contextlib.contextmanager
def running(workdir: pathlib.Path, options: StackOptions) -> Iterator[Stack]:
    with Stack(workdir, options) as stack:
        yield stack
