"""The real kubectl against the emulator's process form."""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Iterator
from typing import IO, Any

import pytest

from ..tools import require_tool
from .helpers import FINALIZER, MANIFESTS, KubeAPIProcess

RELEASE = '{"metadata":{"finalizers":null}}'


class Kubectl:
    def __init__(self, binary: str, kubeconfig: pathlib.Path, cache: pathlib.Path) -> None:
        self.prefix = [binary, f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}"]

    def __call__(
        self, command: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> str:
        """Run `kubectl COMMAND... ARGS...`: the command's words split on spaces, args as is."""
        argv = [*self.prefix, *command.split(), *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
        if check and result.returncode:
            raise AssertionError(f"kubectl {command} failed: {result.stderr}")
        return result.stdout if check else result.stdout + result.stderr

    def json(self, command: str) -> Any:
        return json.loads(self(command, "-o", "json"))

    def start(self, command: str) -> subprocess.Popen[str]:
        """Start a long-running kubectl (get -w, wait) that logs its requests to stderr."""
        argv = [*self.prefix, "-v=6", *command.split()]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(stream: IO[str] | None, text: str) -> list[str]:
    """Read lines up to the one containing `text`; kubectl's own timeouts bound the wait."""
    assert stream is not None
    lines = []
    for line in stream:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"kubectl ended before printing {text!r}: {lines}")


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    binary = require_tool("kubectl")
    workdir = tmp_path_factory.mktemp("kubectl")
    server = KubeAPIProcess(workdir)
    kubectl = Kubectl(binary, server.kubeconfig, workdir / "cache")
    try:
        kubectl("apply -f", str(MANIFESTS / "proxmoxvm-crd.yaml"))
        yield kubectl
    finally:
        assert server.stop() == (0, ""), "the server stopped cleanly, with no errors logged"


def create_vm(kubectl: Kubectl, name: str, *finalizers: str) -> None:
    manifest = (MANIFESTS / "vm1.yaml").read_text().replace("name: vm1", f"name: {name}")
    kubectl("create -f -", stdin=manifest)
    if finalizers:
        kubectl(
            f"patch pvm/{name} --type=merge -p",
            json.dumps({"metadata": {"finalizers": finalizers}}),
        )


def test_crd_is_established_and_discoverable(kubectl: Kubectl) -> None:
    waited = kubectl(
        "wait --for=condition=established crd/proxmoxvms.proxmox.vmop.dev --timeout=10s"
    )
    assert "condition met" in waited
    listed = kubectl("api-resources --api-group=proxmox.vmop.dev").splitlines()
    assert listed[1].split() == [
        "proxmoxvms",
        "pvm",
        "proxmox.vmop.dev/v1alpha1",
        "true",
        "ProxmoxVM",
    ]


def test_explain(kubectl: Kubectl) -> None:
    explained = kubectl("explain pvm.spec")
    assert "KIND:       ProxmoxVM" in explained and "cores\t<integer>" in explained


def test_create_and_get(kubectl: Kubectl) -> None:
    create_vm(kubectl, "get-me")
    body = kubectl.json("get proxmoxvm get-me")
    assert (body["kind"], body["metadata"]["namespace"], body["spec"]["cores"]) == (
        "ProxmoxVM",
        "default",
        2,
    )
    kubectl(
        "patch pvm/get-me --subresource=status --type=merge -p",
        '{"status":{"vmid":101,"phase":"Running"}}',
    )
    header, row = kubectl("get pvm get-me").splitlines()  # the CRD's printer columns
    assert header.split() == ["NAME", "VMID", "PHASE", "AGE"]
    assert row.split()[:3] == ["get-me", "101", "Running"]
    assert "proxmoxvm.proxmox.vmop.dev/get-me" in kubectl("get proxmox -o name")  # the category
    kubectl("label pvm/get-me picked=yes")
    assert kubectl("get pvm -l picked=yes -o name").split() == ["proxmoxvm.proxmox.vmop.dev/get-me"]


def test_patch(kubectl: Kubectl) -> None:
    create_vm(kubectl, "patch-me")
    kubectl("patch pvm/patch-me -p", '{"spec":{"cores":4}}')  # strategic, kubectl's default
    kubectl(
        "patch pvm/patch-me --type=json -p", '[{"op":"replace","path":"/spec/node","value":"pve2"}]'
    )
    jsonpath = "jsonpath={.spec.cores} {.spec.node} {.metadata.generation}"
    assert kubectl("get pvm/patch-me -o", jsonpath) == "4 pve2 3"
    test_op = '[{"op":"test","path":"/spec/cores","value":1}]'
    failed = kubectl("patch pvm/patch-me --type=json -p", test_op, check=False)
    assert "is invalid" in failed and "not equal to tested value" in failed


def test_delete_waits_for_finalizers(kubectl: Kubectl) -> None:
    create_vm(kubectl, "delete-me", FINALIZER)
    kubectl("delete pvm/delete-me --wait=false")
    assert kubectl.json("get pvm/delete-me")["metadata"]["deletionTimestamp"]
    waiting = kubectl.start("wait --for=delete pvm/delete-me --timeout=20s")
    read_until(waiting.stderr, "watch=true")
    kubectl("patch pvm/delete-me --type=merge -p", RELEASE)
    out, _ = waiting.communicate(timeout=20)
    assert waiting.returncode == 0 and "condition met" in out
    assert "NotFound" in kubectl("get pvm/delete-me", check=False)


def test_foreground_delete(kubectl: Kubectl) -> None:
    create_vm(kubectl, "foreground")
    kubectl("delete pvm/foreground --cascade=foreground --timeout=20s")
    assert "NotFound" in kubectl("get pvm/foreground", check=False)


def test_get_watch(kubectl: Kubectl) -> None:
    create_vm(kubectl, "watch-me", FINALIZER)
    watching = kubectl.start("get pvm/watch-me -w --output-watch-events --request-timeout=20s")
    read_until(watching.stderr, "watch=true")
    kubectl("label pvm/watch-me seen=yes")
    kubectl("delete pvm/watch-me --wait=false")
    kubectl("patch pvm/watch-me --type=merge -p", RELEASE)
    printed = read_until(watching.stdout, "DELETED")
    watching.terminate()
    watching.communicate(timeout=10)
    events = [line.split()[:2] for line in printed[1:]]
    expected = ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]  # created, labelled, deleting, gone
    assert events == [[event, "watch-me"] for event in expected]


def test_secrets_from_manifests(kubectl: Kubectl) -> None:
    refused = kubectl("create secret generic imperative --from-literal=a=b", check=False)
    assert "only JSON bodies are emulated" in refused  # kubectl's generators send protobuf
    generated = kubectl(
        "create secret generic pve --from-literal=tokenId=a@pam!b --dry-run=client -o yaml"
    )
    kubectl("apply -f -", stdin=generated)
    assert kubectl("get secret pve -o", "jsonpath={.data.tokenId}") == "YUBwYW0hYg=="
    kubectl("delete secret pve")
