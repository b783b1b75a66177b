"""The runbooks' kubectl one-liners, run verbatim with the real kubectl against the Kubernetes
API emulator, list the objects they promise and no others."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from ..tools import require_tool
from .tools import CRD, RUNBOOKS

NOW = "2030-01-01T00:00:00Z"


def _one_liner(start: str) -> str:
    """The runbook line that starts with ``start`` (the one-liners are single lines)."""
    (line,) = [
        line for line in RUNBOOKS.read_text(encoding="utf-8").splitlines() if line.startswith(start)
    ]
    return line


def _condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW,
    }


class Cluster:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(cache)}

    def shell(self, command: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        return result.stdout

    def vm(self, namespace: str, name: str, status: dict[str, object], delete: bool) -> None:
        metadata: dict[str, object] = {"name": name, "namespace": namespace}
        if delete:
            metadata["finalizers"] = ["proxmox.vmop.dev/destroy"]
        body = {
            "apiVersion": "proxmox.vmop.dev/v1alpha1",
            "kind": "ProxmoxVM",
            "metadata": metadata,
            "spec": {"connectionRef": {"name": "pve"}, "node": "pve1"},
        }
        self.shell("kubectl create -f -", stdin=json.dumps(body))
        patch = json.dumps({"status": status})
        self.shell(
            f"kubectl patch pvm -n {namespace} {name} --subresource=status --type=merge"
            f" -p '{patch}'"
        )
        if delete:
            self.shell(f"kubectl delete pvm -n {namespace} {name} --wait=false")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_tool("kubectl")
    workdir = tmp_path_factory.mktemp("runbooks")
    with KubeAPIServer() as server:
        cluster = Cluster(server.write_kubeconfig(workdir / "kubeconfig"), workdir / "cache")
        cluster.shell(f"kubectl apply -f {CRD}")
        for namespace in ("lab", "apps"):
            cluster.shell(
                "kubectl apply -f -",
                stdin=json.dumps(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                ),
            )
        ready = _condition("Ready", "True", "Reconciled")
        cluster.vm(
            "lab",
            "locked",
            {
                "phase": "Deleting",
                "destroy": {
                    "startedAt": NOW,
                    "mode": "Stop",
                    "step": "Stopping",
                    "lastError": "VM 101 is locked (backup)",
                },
                "conditions": [
                    _condition("DeletionStalled", "True", "VMLocked", "VM 101 is locked"),
                    _condition("Stalled", "False", "Reconciled"),
                ],
            },
            delete=True,
        )
        cluster.vm("lab", "fine", {"phase": "Running", "conditions": [ready]}, delete=False)
        cluster.vm(
            "apps",
            "broken",
            {
                "phase": "Failed",
                "conditions": [
                    _condition("Ready", "False", "InvalidSpec", "spec.cores: too big"),
                    _condition("Stalled", "True", "InvalidSpec", "spec.cores: too big"),
                ],
            },
            delete=False,
        )
        yield cluster


def test_deleting_objects_are_listed_with_step_and_stall_reason(cluster: Cluster) -> None:
    command = _one_liner("kubectl get pvm -A -o jsonpath='{range .items[?(@.metadata.deletion")
    assert cluster.shell(command).splitlines() == [
        "lab/locked\tStopping\tVMLocked\tVM 101 is locked (backup)"
    ]


def test_stalled_objects_are_listed_with_reason_and_message(cluster: Cluster) -> None:
    command = _one_liner("kubectl get pvm -A -o jsonpath='{range .items[*]}")
    assert cluster.shell(command).splitlines() == [
        "apps/broken\tTrue\tInvalidSpec\tspec.cores: too big"
    ]
