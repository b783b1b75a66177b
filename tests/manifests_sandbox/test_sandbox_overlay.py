"""manifests/overlays/sandbox: the operator, an in-cluster simulator that publishes the
credentials Secret, and the samples pointed at that Secret — and the pieces agree.

The last test applies the overlay with kubectl to the Kubernetes API emulator, runs the
simulator with the Deployment's own arguments, and applies again.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from proxmox_vm_operator.cli import build_parser
from proxmox_vm_operator.proxmox import ConnectionSettings, ProxmoxClient
from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from ..e2e.harness import free_ports, kubectl_binary
from ..manifests.rendering import (
    KUBERNETES_VERSIONS,
    crds_by_kind,
    find,
    group_of,
    kustomize,
    validate_builtin,
    validate_custom,
)

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "manifests" / "overlays" / "sandbox"
SAMPLES = REPO / "manifests" / "samples"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    return kustomize(OVERLAY)


@pytest.fixture(scope="module")
def simulator(rendered: list[Obj]) -> Obj:
    return find(rendered, "Deployment", "pve-simulator")


def container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Obj = containers[0]
    return result


def simulator_args(deployment: Obj) -> Any:
    """The Deployment's arguments as the real command line parses them."""
    args = container(deployment)["args"]
    assert args[0] == "simulator"
    return build_parser().parse_args(args)


def in_namespace(objects: list[Obj], namespace: str) -> list[Obj]:
    return [o for o in objects if o["metadata"].get("namespace") == namespace]


# ----------------------------------------------------------------------------- the render


def test_every_object_is_valid_for_the_api_server(rendered: list[Obj]) -> None:
    crds = crds_by_kind(rendered)
    for version in KUBERNETES_VERSIONS:
        for obj in rendered:
            if (group_of(obj), obj["kind"]) in crds:
                validate_custom(obj, crds, version)
            else:
                validate_builtin(obj, version)


def test_the_overlay_adds_the_simulator_and_samples_to_the_unchanged_base(
    rendered: list[Obj],
) -> None:
    base = kustomize(REPO / "manifests" / "base")
    kinds_and_names = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert {(o["kind"], o["metadata"]["name"]) for o in base} <= kinds_and_names
    sandbox = {
        (o["kind"], o["metadata"]["name"]) for o in in_namespace(rendered, "proxmox-sandbox")
    }
    assert {
        ("Deployment", "pve-simulator"),
        ("Service", "pve-simulator"),
        ("ServiceAccount", "pve-simulator"),
        ("Role", "pve-simulator"),
        ("RoleBinding", "pve-simulator"),
        ("Secret", "pve-simulator-credentials"),
    } <= sandbox
    assert ("Namespace", "proxmox-sandbox") in kinds_and_names
    samples = {o["metadata"]["name"] for o in kustomize(SAMPLES) if o["kind"] == "ProxmoxVM"}
    assert samples
    assert {name for kind, name in sandbox if kind == "ProxmoxVM"} == samples


def test_the_operator_keeps_its_base_args_and_stalls_after_a_minute(rendered: list[Obj]) -> None:
    operator = find(rendered, "Deployment", "proxmox-vm-operator")
    base = find(kustomize(REPO / "manifests" / "base"), "Deployment", "proxmox-vm-operator")
    args = container(operator)["args"]
    assert args[: len(container(base)["args"])] == container(base)["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.stall_after == 60
    assert parsed.all_namespaces


# ---------------------------------------------------------------------------- the simulator


def test_the_simulator_serves_the_advertised_service_name_with_verified_tls(
    rendered: list[Obj], simulator: Obj
) -> None:
    args = simulator_args(simulator)
    namespace = simulator["metadata"]["namespace"]
    service = find(rendered, "Service", "pve-simulator")
    assert service["metadata"]["namespace"] == namespace
    assert args.host == "0.0.0.0"
    assert args.guest_acpi == "ignore"

    ports = {p["name"]: p["containerPort"] for p in container(simulator)["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert ports[service_port["targetPort"]] == args.port
    labels = simulator["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()

    advertised = urlsplit(args.advertise_endpoint)
    assert advertised.scheme == "https"
    assert advertised.hostname == f"{service['metadata']['name']}.{namespace}.svc"
    assert advertised.port == service_port["port"]
    assert "insecure" not in " ".join(container(simulator)["args"]).lower()


def test_the_simulator_pod_is_hardened_and_keeps_its_certificates_in_an_empty_dir(
    rendered: list[Obj], simulator: Obj
) -> None:
    spec = simulator["spec"]["template"]["spec"]
    box = container(simulator)
    operator = container(find(rendered, "Deployment", "proxmox-vm-operator"))
    assert box["image"] == operator["image"]
    assert simulator["spec"]["replicas"] == 1
    assert simulator["spec"]["strategy"]["type"] == "Recreate"

    security = box["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] and security["runAsNonRoot"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    cert_volume = volumes[mounts[simulator_args(simulator).cert_dir]]
    assert "emptyDir" in cert_volume

    for probe in ("readinessProbe", "livenessProbe"):
        assert box[probe]["tcpSocket"]["port"] in ("https", simulator_args(simulator).port)
    assert {"requests", "limits"} <= box["resources"].keys()


def test_the_simulator_may_only_read_and_update_its_one_secret(
    rendered: list[Obj], simulator: Obj
) -> None:
    namespace = simulator["metadata"]["namespace"]
    (target,) = simulator_args(simulator).publish_secret
    secret_namespace, _, secret_name = target.partition("/")
    assert secret_namespace == namespace

    account = simulator["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = [
        o
        for o in rendered
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == namespace
            for s in o["subjects"]
        )
    ]
    assert len(bindings) == 1
    (binding,) = bindings
    assert binding["kind"] == "RoleBinding"
    assert binding["metadata"]["namespace"] == namespace
    role = find(rendered, "Role", binding["roleRef"]["name"])
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [secret_name],
            "verbs": ["get", "update"],
        }
    ]


def test_the_published_secret_is_applied_empty_for_the_simulator_to_fill_in(
    rendered: list[Obj], simulator: Obj
) -> None:
    (target,) = simulator_args(simulator).publish_secret
    namespace, _, name = target.partition("/")
    secret = find(rendered, "Secret", name)
    assert secret["metadata"]["namespace"] == namespace
    assert secret["type"] == "Opaque"
    assert "data" not in secret and "stringData" not in secret


def test_the_samples_use_the_published_secret_and_what_the_simulator_has(
    rendered: list[Obj], simulator: Obj
) -> None:
    args = simulator_args(simulator)
    (target,) = args.publish_secret
    namespace, _, name = target.partition("/")
    nodes = args.nodes.split(",")
    templates = {(int(t.partition("@")[0]), t.partition("@")[2] or nodes[0]) for t in args.template}
    vms = [o for o in rendered if o["kind"] == "ProxmoxVM"]
    assert vms
    for vm in vms:
        assert vm["metadata"]["namespace"] == namespace
        assert vm["spec"]["connectionRef"]["name"] == name
        assert vm["spec"]["node"] in nodes
        clone = vm["spec"].get("source", {}).get("cloneFrom")
        if clone:
            assert (clone["vmid"], clone.get("node", vm["spec"]["node"])) in templates
    web = find(vms, "ProxmoxVM", "web-1")
    assert web["spec"]["destroy"] == {**web["spec"]["destroy"], "shutdownTimeoutSeconds": 30}


# ----------------------------------------------------------------- applied to an API server


def _kubectl(kubeconfig: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [kubectl_binary(), f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


async def _list_vms(settings: ConnectionSettings) -> list[tuple[int, str, object]]:
    """(vmid, node, the config's ``template`` flag) of every VM, read with the operator's client."""
    async with ProxmoxClient(settings, read_timeout=10) as client:
        return [
            (vm.vmid, vm.node, (await client.vm_config(vm.node, vm.vmid)).values.get("template"))
            for vm in await client.list_vms()
        ]


@pytest.fixture
def applied(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    """The overlay applied to the emulator the way its header says: once more after the CRDs."""
    with KubeAPIServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        cache = tmp_path / "kube-cache"
        _kubectl(kubeconfig, cache, "apply", "-k", str(OVERLAY))  # CRs fail until CRDs serve
        established = _kubectl(
            kubeconfig, cache, "wait", "--for=condition=established", "crd", "--all"
        )
        assert established.returncode == 0, established.stderr
        second = _kubectl(kubeconfig, cache, "apply", "-k", str(OVERLAY))
        assert second.returncode == 0, second.stderr
        yield server, kubeconfig
        assert server.call(lambda api: list(api.errors)) == []


def test_reapplying_the_overlay_keeps_what_the_simulator_published(
    applied: tuple[KubeAPIServer, Path], simulator: Obj, tmp_path: Path
) -> None:
    server, kubeconfig = applied
    (target,) = simulator_args(simulator).publish_secret
    namespace, _, name = target.partition("/")
    placeholder = server.get_object("v1/secrets", name, namespace)
    assert placeholder is not None

    # The Deployment's own arguments, made local: loopback, a free port, a temporary cert dir,
    # an endpoint this machine resolves.
    (port,) = free_ports(1)
    local = {
        "--host": "127.0.0.1",
        "--port": str(port),
        "--cert-dir": str(tmp_path / "certs"),
        "--advertise-endpoint": f"https://localhost:{port}",
    }
    args = [
        f"{key}={local[key]}" if (key := arg.partition("=")[0]) in local else arg
        for arg in container(simulator)["args"]
    ]
    assert len(set(args) - set(container(simulator)["args"])) == len(local)
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("proxmox-vm-operator")), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "KUBECONFIG": str(kubeconfig)},
    )
    try:

        def published(api: Any) -> Any:
            secret = api.get_object("v1/secrets", name, namespace)
            return secret if secret and secret.get("data") else None

        secret = server.wait_for(published, timeout=20)
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        # What the operator reads connects it, over verified TLS, to what the samples need.
        vms = asyncio.run(_list_vms(ConnectionSettings.from_secret_data(data)))
        assert vms == [(9000, "pve1", 1)]
        assert secret["metadata"]["uid"] == placeholder["metadata"]["uid"]  # filled, not made

        again = _kubectl(kubeconfig, tmp_path / "kube-cache", "apply", "-k", str(OVERLAY))
        assert again.returncode == 0, again.stderr
        after = server.get_object("v1/secrets", name, namespace)
        assert after is not None
        assert after["data"] == secret["data"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert data["tokenSecret"] not in output
