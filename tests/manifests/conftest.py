"""Fixtures of the manifest tests: the e2e sandbox with a Kubernetes API whose request log the
test can read.

The e2e harness runs the Kubernetes API emulator as a process that keeps only its newest
requests and cannot be asked for them. `RecordingKubeAPI` serves the same emulator from a
thread of the test process instead, with an unbounded request log, and stands in for the
harness's `KubeAPI` in a `harness.Cluster`: everything else (the simulator, the operator as a
process, the real kubectl) is the e2e sandbox as it is.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any, Self

import pytest

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer
from tests.e2e.harness import Kubectl, install_crd, kubectl_binary


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    user_agent: str
    body: Any


class RecordingKubeAPI:
    """The emulator in this process, with the ProxmoxVM CRD established; see the module doc.

    It has what `harness.Cluster` uses of `harness.KubeAPI` (`url`, `kubectl()`, `stop()`,
    `failures()`, `log()`) and `requests()`, every request served so far, in order.
    """

    def __init__(self, workdir: pathlib.Path, kubectl_binary: str) -> None:
        self.workdir = workdir
        self.kubectl_binary = kubectl_binary
        self.server = KubeAPIServer(request_log_size=None)
        self.url = ""
        self._failures: list[str] = []

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server.start()
        self.url = self.server.url
        try:
            self.server.write_kubeconfig(self.workdir / "kubeconfig")
            install_crd(self.kubectl(self.workdir / "kube-cache"))
        except BaseException:
            self.stop()
            raise
        return self

    def kubectl(self, cache_dir: pathlib.Path, kubeconfig: pathlib.Path | None = None) -> Kubectl:
        return Kubectl(self.kubectl_binary, kubeconfig or self.workdir / "kubeconfig", cache_dir)

    def requests(self) -> list[RecordedRequest]:
        def snapshot(api: Any) -> list[RecordedRequest]:
            return [
                RecordedRequest(
                    method=str(request.method.value),
                    path=request.url.path,
                    query=dict(request.url.query),
                    user_agent=next(
                        (v for k, v in request.headers.items() if k.lower() == "user-agent"), ""
                    ),
                    body=request.data,
                )
                for request in api
            ]

        return self.server.call(snapshot, timeout=30)

    def stop(self) -> None:
        if self.server.running:
            errors = self.server.call(lambda api: [repr(e) for e in api.errors])
            self._failures.extend(errors)
            self.server.stop()

    def failures(self) -> str:
        return "\n".join(self._failures)

    def log(self) -> str:
        return self.failures()


@pytest.fixture(scope="module")
def recording_kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingKubeAPI]:
    api = RecordingKubeAPI(tmp_path_factory.mktemp("recording-kubeapi"), kubectl_binary())
    api.start()
    try:
        yield api
    finally:
        api.stop()
    assert not api.failures(), f"the Kubernetes API emulator failed:\n{api.failures()}"
