"""The ClusterRole grants exactly what the operator uses of the Kubernetes API.

Two replicas of the real operator run in the e2e sandbox exactly as the rendered Deployment
runs them (its arguments: `run -A --log-format json`, peered, no --standalone), against the
peering objects of the render: the first works through a create -> Running -> delete -> gone
cycle while the second stands by; then the first stops, the second takes over and does a cycle
of its own. Every request they made is read from the Kubernetes API emulator's log, mapped to
RBAC's attributes as kube-apiserver does (tests/manifests/kube_rbac.py), and checked against
the rendered ClusterRole both ways: everything asked is allowed, and everything allowed was
asked (or is listed in UNUSED_GRANTS with the reason it is there anyway).

kubectl must be on PATH: without it these tests skip, or fail when CI=true.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import sys
from collections.abc import Sequence

import pytest
import yaml

from tests.e2e.harness import (
    Cluster,
    CommandFactory,
    OperatorLaunch,
    OperatorProcess,
    SandboxOptions,
)
from tests.e2e.lifecycle_helpers import wait_gone, wait_phase

from .conftest import RecordedRequest, RecordingKubeAPI
from .kube_rbac import (
    Attributes,
    Grant,
    discovery_allows,
    grants,
    request_attributes,
    role_allows,
)
from .rendering import INSTALL, Obj, find, kustomize

# Grants the operator needs although the sandbox run does not exercise them, with the reason.
# Keyed by (apiGroup, resource, verb). Empty: every grant is used by the run.
UNUSED_GRANTS: dict[tuple[str, str, str], str] = {}

# The test driver's own clients (kubectl, and the dispatcher in front of it that picks its
# version); every other client in the log is the operator: kopf, and the official
# `kubernetes` client it reads Secrets with.
DRIVER_USER_AGENTS = ("kubectl/", "kubectl-dispatcher/")
PRIORITIES = {"replica-a": 200, "replica-b": 100}  # a works first, b stands by
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations"

pytestmark = pytest.mark.timeout(240)


@dataclasses.dataclass(frozen=True)
class Traffic:
    """What the two replicas asked of the Kubernetes API during the run."""

    requests: list[RecordedRequest]
    attributes: list[Attributes]
    role: Obj

    def examples(self) -> dict[Attributes, list[str]]:
        found: dict[Attributes, list[str]] = collections.defaultdict(list)
        for request, attributes in zip(self.requests, self.attributes, strict=True):
            found[attributes].append(f"{request.method} {request.path}")
        return found


def peered_replica(deployment_args: Sequence[str], replica: str) -> CommandFactory:
    """The real operator with the Deployment's arguments, sandbox ports and a fixed priority."""

    def build(launch: OperatorLaunch) -> list[str]:
        return [
            sys.executable, "-m", "proxmox_vm_operator", *deployment_args,
            "--metrics-port", str(launch.metrics_port),
            "--liveness-port", str(launch.liveness_port),
            "--bind-address", "127.0.0.1",
            "--priority", str(PRIORITIES[replica]),
        ]  # fmt: skip

    return build


def peers(cluster: Cluster) -> set[str]:
    peering = cluster.kubectl.json("get", "clusterkopfpeering", "default")
    return {k for k, v in (peering.get("status") or {}).items() if isinstance(v, dict)}


def install_peering(cluster: Cluster, install: list[Obj]) -> None:
    """kopf's peering CRDs and the ClusterKopfPeering, as the install renders them."""
    crds = [o for o in install if o["kind"] == "CustomResourceDefinition"]
    peering_crds = [o for o in crds if o["spec"]["group"] == "kopf.dev"]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(peering_crds))
    for crd in peering_crds:
        name = crd["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=established", f"crd/{name}", "--timeout=10s")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(find(install, "ClusterKopfPeering")))


def log_has(process: OperatorProcess, text: str) -> bool:
    return text in process.log_text()


def one_cycle(cluster: Cluster, name: str, vmid: int) -> None:
    cluster.apply_vm(name, {"vmid": vmid})
    wait_phase(cluster, name, "Running", timeout=45)
    cluster.delete_vm(name)
    wait_gone(cluster, name, timeout=45)
    assert not cluster.sim.vm_exists(vmid)


@pytest.fixture(scope="module")
def install() -> list[Obj]:
    return kustomize(INSTALL)


@pytest.fixture(scope="module")
def traffic(
    install: list[Obj],
    recording_kube_api: RecordingKubeAPI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Traffic:
    (container,) = find(install, "Deployment")["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    options = SandboxOptions(
        operator=False,
        operator_command=peered_replica(args, "replica-a"),
        operator_env={"POD_ID": "replica-a"},
        wait_ready=True,
    )
    workdir: pathlib.Path = tmp_path_factory.mktemp("sandbox")
    with Cluster(recording_kube_api, workdir, options) as cluster:  # type: ignore[arg-type]
        install_peering(cluster, install)
        first = cluster.operator
        second = OperatorProcess(
            peered_replica(args, "replica-b"),
            namespace=cluster.namespace,
            kubeconfig=cluster.kubeconfig,
            log_path=workdir / "operator-b.log",
            env={"POD_ID": "replica-b"},
        )
        try:
            first.start()
            cluster.wait_for(lambda: peers(cluster) == {"replica-a"}, what="replica-a peered")
            second.start()
            # With --peering (mandatory) a replica starts paused and stays so silently while
            # a higher-priority peer lives: its entry in the peering object is the signal.
            cluster.wait_for(
                lambda: peers(cluster) == {"replica-a", "replica-b"}, what="replica-b peered"
            )
            one_cycle(cluster, "vm-a", 900)
            assert first.stop() == 0, first.log_tail()
            cluster.wait_for(lambda: log_has(second, RESUMED), what="replica-b taking over")
            one_cycle(cluster, "vm-b", 901)
            assert second.stop() == 0, second.log_tail()
            assert not log_has(first, PAUSED), "replica-a, the higher priority, never paused"
        finally:
            second.stop()
        everything = recording_kube_api.requests()
    recorded = [r for r in everything if not r.user_agent.startswith(DRIVER_USER_AGENTS)]
    attributes = [request_attributes(r.method, r.path, r.query) for r in recorded]
    return Traffic(recorded, attributes, find(install, "ClusterRole"))


def test_the_run_covers_both_replicas_and_both_clients_of_the_operator(traffic: Traffic) -> None:
    agents = {r.user_agent.split("/")[0] for r in traffic.requests}
    assert agents == {"kopf", "OpenAPI-Generator"}, agents  # kopf, and the kubernetes client
    announced = {
        identity
        for r in traffic.requests
        if r.method == "PATCH" and r.path.endswith("/clusterkopfpeerings/default")
        for identity in (r.body or {}).get("status", {})
    }
    assert announced == set(PRIORITIES), announced


def denied(role: Obj, traffic: Traffic) -> dict[str, list[str]]:
    """The operator's requests `role` does not allow (discovery is every client's right)."""
    return {
        str(attributes): paths[:3]
        for attributes, paths in traffic.examples().items()
        if not (
            role_allows(role, attributes)
            if attributes.is_resource_request
            else discovery_allows(attributes)
        )
    }


def unused(role: Obj, traffic: Traffic) -> list[Grant]:
    """The grants of `role` that no request of the operator used."""
    asked = [a for a in traffic.attributes if a.is_resource_request]
    return [grant for grant in grants(role) if not any(grant.covers(a) for a in asked)]


def excused(grant: Grant) -> bool:
    return (grant.api_group, grant.resource, grant.verb) in UNUSED_GRANTS


def test_every_request_of_the_operator_is_allowed_by_the_cluster_role(traffic: Traffic) -> None:
    refused = denied(traffic.role, traffic)
    assert not refused, f"requests the ClusterRole does not allow: {json.dumps(refused, indent=1)}"


def test_every_grant_of_the_cluster_role_is_used_or_has_a_reason(traffic: Traffic) -> None:
    idle = unused(traffic.role, traffic)
    assert not [str(g) for g in idle if not excused(g)], "grants no request of the operator used"
    idle_keys = {(g.api_group, g.resource, g.verb) for g in idle}
    stale = [key for key in UNUSED_GRANTS if key not in idle_keys]
    assert not stale, f"UNUSED_GRANTS lists grants the run uses or the role lacks: {stale}"


def test_every_rule_is_needed_and_an_extra_grant_is_noticed(traffic: Traffic) -> None:
    """The two checks above can fail: without any one rule some request is refused, and a
    grant the operator does not need (listing Secrets) is reported."""
    rules = traffic.role["rules"]
    for index, rule in enumerate(rules):
        without = {**traffic.role, "rules": [r for i, r in enumerate(rules) if i != index]}
        assert denied(without, traffic), f"rule {index} is not needed: {rule}"
    extra = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}
    widened = {**traffic.role, "rules": [*rules, extra]}
    assert {g.verb for g in unused(widened, traffic) if g.resource == "secrets"} == {
        "list",
        "watch",
    }


def test_secrets_are_only_read_by_name(traffic: Traffic) -> None:
    secret_verbs = {
        grant.verb
        for grant in grants(traffic.role)
        if grant.api_group in ("", "*") and grant.resource in ("secrets", "*")
    }
    assert secret_verbs == {"get"}, secret_verbs
    reads = [a for a in traffic.attributes if a.resource == "secrets"]
    assert reads and all(a.verb == "get" and a.name for a in reads), reads


def test_the_cluster_role_grants_no_wildcards_and_no_escalation(traffic: Traffic) -> None:
    for grant in grants(traffic.role):
        assert "*" not in (grant.api_group, grant.resource, grant.verb), grant
        assert grant.verb not in ("escalate", "bind", "impersonate"), grant
        assert grant.api_group != "rbac.authorization.k8s.io", grant


VMS = "/apis/proxmox.vmop.dev/v1alpha1"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", f"{VMS}/proxmoxvms", {}, Attributes("list", "proxmox.vmop.dev", "proxmoxvms")),
        ("GET", f"{VMS}/proxmoxvms", {"watch": "true"},
         Attributes("watch", "proxmox.vmop.dev", "proxmoxvms")),
        ("GET", f"{VMS}/proxmoxvms", {"watch": "0"},
         Attributes("list", "proxmox.vmop.dev", "proxmoxvms")),
        ("PATCH", f"{VMS}/namespaces/lab/proxmoxvms/web-1/status", {},
         Attributes("patch", "proxmox.vmop.dev", "proxmoxvms", "status", "lab", "web-1")),
        ("GET", "/api/v1/namespaces/lab/secrets/pve", {},
         Attributes("get", "", "secrets", "", "lab", "pve")),
        ("GET", "/api/v1/namespaces/lab/secrets", {"fieldSelector": "metadata.name=pve"},
         Attributes("list", "", "secrets", "", "lab", "pve")),
        ("POST", "/api/v1/namespaces/lab/events", {},
         Attributes("create", "", "events", "", "lab")),
        ("DELETE", "/api/v1/namespaces/lab/events", {},
         Attributes("deletecollection", "", "events", "", "lab")),
        ("GET", "/api/v1/namespaces/lab", {},
         Attributes("get", "", "namespaces", "", "lab", "lab")),
        ("PUT", "/api/v1/namespaces/lab/finalize", {},
         Attributes("update", "", "namespaces", "finalize", "lab", "lab")),
        ("GET", "/apis/proxmox.vmop.dev/v1alpha1", {},
         Attributes("get", path="/apis/proxmox.vmop.dev/v1alpha1")),
        ("GET", "/api/v1", {}, Attributes("get", path="/api/v1")),
        ("GET", "/version", {}, Attributes("get", path="/version")),
    ],
)  # fmt: skip
def test_requests_map_to_rbac_attributes_as_the_api_server_reads_them(
    method: str, path: str, query: dict[str, str], expected: Attributes
) -> None:
    assert request_attributes(method, path, query) == expected
