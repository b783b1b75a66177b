"""Shared constants and small clients for the Kubernetes API emulator's tests."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import requests
import yaml

MANIFESTS = pathlib.Path(__file__).parent / "manifests"
PVMS = "proxmox.vmop.dev/v1alpha1/proxmoxvms"  # as the emulator's Python API names resources
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
PVMS_URL = "/apis/proxmox.vmop.dev/v1alpha1/namespaces/default/proxmoxvms"
CRDS_URL = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
FINALIZER = "kubeapi.test/finalizer"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def manifest(name: str) -> Any:
    docs = list(yaml.safe_load_all((MANIFESTS / name).read_text()))
    return docs[0] if len(docs) == 1 else docs


def vm(name: str = "vm1", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "proxmox.vmop.dev/v1alpha1",
        "kind": "ProxmoxVM",
        "metadata": {"name": name, **metadata},
        "spec": {"node": "pve1", "cores": 2},
    }


class HTTP:
    """Raw HTTP to the emulator, the way any client library would send it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        **params: Any,
    ) -> requests.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        data = body if body is None or isinstance(body, bytes) else json.dumps(body)
        return self.session.request(
            method, self.url + path, data=data, headers=headers, params=params, timeout=10
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any, **params: Any) -> requests.Response:
        return self.request("POST", path, body, "application/json", **params)

    def put(self, path: str, body: Any, **params: Any) -> requests.Response:
        return self.request("PUT", path, body, "application/json", **params)

    def patch(
        self, path: str, body: Any, content_type: str = MERGE_PATCH, **params: Any
    ) -> requests.Response:
        return self.request("PATCH", path, body, content_type, **params)

    def delete(self, path: str, body: Any = None, **params: Any) -> requests.Response:
        return self.request("DELETE", path, body, "application/json" if body else None, **params)

    def watch(self, path: str, **params: Any) -> Watch:
        params = {"watch": "true", "timeoutSeconds": 5, **params}
        response = self.session.get(self.url + path, params=params, stream=True, timeout=10)
        return Watch(response)


class Watch:
    """A watch stream: the headers have arrived, so the server is watching already."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self._lines: Iterator[bytes] = response.iter_lines(chunk_size=1)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *_: object) -> None:
        self.response.close()

    def next(self, count: int = 1) -> list[dict[str, Any]]:
        """The next `count` events; the stream's timeoutSeconds bounds the wait."""
        lines = (line for line in self._lines if line)
        return [json.loads(next(lines)) for _ in range(count)]

    def rest(self) -> list[dict[str, Any]]:
        """All events until the server ends the stream (its timeoutSeconds)."""
        return [json.loads(line) for line in self._lines if line]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"].get("metadata", {}).get("name", "")) for e in events]


class KubeAPIProcess:
    """`python -m proxmox_vm_operator.sandbox.kubeapi` as a child process."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        command = [
            sys.executable,
            "-m",
            "proxmox_vm_operator.sandbox.kubeapi",
            "--kubeconfig",
            str(self.kubeconfig),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()  # printed once it serves
        assert self.url.startswith("http://127.0.0.1:"), self.process.communicate(timeout=10)

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=10)
        return self.process.returncode, stderr
