"""The install (`kubectl kustomize manifests/`) and the samples render, every object in them is
valid for Kubernetes, and the operator's Deployment runs it as designed: two peered replicas
spread across nodes, non-root with a read-only root filesystem, probes on the liveness
endpoint and a Service for the metrics port.

kubectl must be on PATH (`kubectl kustomize` is built in): without it these tests skip, or fail
when CI=true.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import kopf
import kubernetes_validate
import pytest

from proxmox_vm_operator.cli import build_parser
from proxmox_vm_operator.proxmox.settings import ConnectionSettings

from .rendering import (
    CRD_FILE,
    INSTALL,
    KUBERNETES_VERSIONS,
    SAMPLES,
    SECRET_TEMPLATE,
    Obj,
    crds_by_kind,
    find,
    group_of,
    kustomize,
    load_yaml,
    validate_builtin,
    validate_custom,
)

NAMESPACE = "proxmox-vm-operator"
COMMON_LABELS = {
    "app.kubernetes.io/name": "proxmox-vm-operator",
    "app.kubernetes.io/part-of": "proxmox-vm-operator",
}
METRICS_SERVICE = "proxmox-vm-operator-metrics"


@pytest.fixture(scope="module")
def install() -> list[Obj]:
    return kustomize(INSTALL)


@pytest.fixture(scope="module")
def samples() -> list[Obj]:
    return kustomize(SAMPLES)


@pytest.fixture(scope="module")
def crds(install: list[Obj]) -> dict[tuple[str, str], Obj]:
    return crds_by_kind(install)


def is_custom(obj: Obj, crds: dict[tuple[str, str], Obj]) -> bool:
    return (group_of(obj), obj["kind"]) in crds


def deployment(install: list[Obj]) -> Obj:
    return find(install, "Deployment", "proxmox-vm-operator")


def operator_container(install: list[Obj]) -> Obj:
    (container,) = deployment(install)["spec"]["template"]["spec"]["containers"]
    container: Obj
    return container


def operator_args(install: list[Obj]) -> Any:
    """The container's arguments as the operator's own command line parses them."""
    return build_parser().parse_args(operator_container(install)["args"])


def container_port(container: Obj, port: int | str) -> int:
    """A probe's or a Service's port, by name or number, as the container's port number."""
    if isinstance(port, int):
        return port
    (match,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(match)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------------------------- validity


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_builtin_object_of_the_install_and_samples_is_valid_in_strict_mode(
    install: list[Obj], samples: list[Obj], crds: dict[tuple[str, str], Obj], version: str
) -> None:
    builtin = [o for o in install + samples if not is_custom(o, crds)]
    assert {o["kind"] for o in builtin} >= {
        "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
        "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Service",
    }  # fmt: skip
    for obj in builtin:  # an object of a kind it has no schema for fails too
        validate_builtin(obj, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_custom_object_fits_the_schema_of_its_crd_in_the_render(
    install: list[Obj], samples: list[Obj], crds: dict[tuple[str, str], Obj], version: str
) -> None:
    custom = [o for o in install + samples if is_custom(o, crds)]
    assert {o["kind"] for o in custom} == {"ClusterKopfPeering", "ProxmoxVM"}
    for obj in custom:
        validate_custom(obj, crds, version)


def test_the_rendered_proxmoxvm_crd_is_the_generated_file_with_the_common_labels(
    crds: dict[tuple[str, str], Obj],
) -> None:
    (generated,) = load_yaml(CRD_FILE)
    expected = copy.deepcopy(generated)
    expected["metadata"]["labels"] = {**generated["metadata"].get("labels", {}), **COMMON_LABELS}
    assert crds["proxmox.vmop.dev", "ProxmoxVM"] == expected


def test_namespaced_objects_are_in_the_operator_namespace_and_no_other_has_one(
    install: list[Obj], crds: dict[tuple[str, str], Obj]
) -> None:
    cluster_scoped = {
        "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
        *(kind for (_, kind), crd in crds.items() if crd["spec"]["scope"] == "Cluster"),
    }  # fmt: skip
    for obj in install:
        namespace = obj["metadata"].get("namespace")
        where = f"{obj['kind']} {obj['metadata']['name']}"
        assert namespace == (None if obj["kind"] in cluster_scoped else NAMESPACE), where
        assert obj["metadata"]["labels"].items() >= COMMON_LABELS.items(), where
    assert find(install, "Namespace")["metadata"]["name"] == NAMESPACE


def test_no_two_objects_share_a_kind_and_name(install: list[Obj], samples: list[Obj]) -> None:
    for objects in (install, samples):
        keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
        assert len(keys) == len(set(keys)), keys


# ----------------------------------------------------------------------- the validators


@pytest.fixture
def minimal_vm(samples: list[Obj]) -> Obj:
    return copy.deepcopy(find(samples, "ProxmoxVM", "minimal"))


def _mutations() -> Iterator[tuple[str, Any]]:
    def unknown_spec_field(vm: Obj) -> None:
        vm["spec"]["cpus"] = 2

    def unknown_nested_field(vm: Obj) -> None:
        vm["spec"]["destroy"] = {"mode": "Stop", "graceful": True}

    def wrong_enum(vm: Obj) -> None:
        vm["spec"]["destroy"] = {"mode": "Halt"}

    def out_of_bounds(vm: Obj) -> None:
        vm["spec"]["vmid"] = 99

    def wrong_type(vm: Obj) -> None:
        vm["spec"]["cores"] = "two"

    def missing_required(vm: Obj) -> None:
        del vm["spec"]["connectionRef"]

    def unknown_metadata_field(vm: Obj) -> None:
        vm["metadata"]["label"] = {"a": "b"}

    def unknown_top_level_field(vm: Obj) -> None:
        vm["specs"] = {}

    for mutate in (
        unknown_spec_field, unknown_nested_field, wrong_enum, out_of_bounds, wrong_type,
        missing_required, unknown_metadata_field, unknown_top_level_field,
    ):  # fmt: skip
        yield mutate.__name__, mutate


@pytest.mark.parametrize(("mutation", "mutate"), list(_mutations()))
def test_the_crd_validator_rejects_a_broken_proxmoxvm(
    minimal_vm: Obj, crds: dict[tuple[str, str], Obj], mutation: str, mutate: Any
) -> None:
    validate_custom(minimal_vm, crds, KUBERNETES_VERSIONS[0])  # valid before the mutation
    mutate(minimal_vm)
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(minimal_vm, crds, KUBERNETES_VERSIONS[0])


def test_the_crd_validator_rejects_a_namespaced_or_extended_cluster_peering(
    install: list[Obj], crds: dict[tuple[str, str], Obj]
) -> None:
    peering = find(install, "ClusterKopfPeering")
    with_namespace = copy.deepcopy(peering)
    with_namespace["metadata"]["namespace"] = NAMESPACE
    with_spec = {**copy.deepcopy(peering), "spec": {"priority": 1}}
    for broken in (with_namespace, with_spec):
        with pytest.raises(jsonschema.ValidationError):
            validate_custom(broken, crds, KUBERNETES_VERSIONS[0])


def test_strict_validation_rejects_an_unknown_field_in_a_builtin_object(
    install: list[Obj],
) -> None:
    broken = copy.deepcopy(deployment(install))
    validate_builtin(broken, KUBERNETES_VERSIONS[0])
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(broken, KUBERNETES_VERSIONS[0])


# ---------------------------------------------------------------------- the operator's pod


def test_two_peered_replicas_watch_every_namespace(install: list[Obj]) -> None:
    args = operator_args(install)
    assert deployment(install)["spec"]["replicas"] == 2
    assert args.command == "run"
    assert args.all_namespaces and not args.namespace
    assert not args.standalone, "two replicas without peering would both act on every VM"
    assert args.log_format == "json"
    # -A peers through the cluster-wide peering object with kopf's default name.
    peering = find(install, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == kopf.OperatorSettings().peering.name
    env = {e["name"]: e for e in operator_container(install).get("env", [])}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_operator_pod_runs_as_non_root_with_a_read_only_root_filesystem(
    install: list[Obj],
) -> None:
    pod = deployment(install)["spec"]["template"]["spec"]
    container = operator_container(install)
    context = {**pod["securityContext"], **container["securityContext"]}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context or context["privileged"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "the only writable place is an emptyDir"
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == find(install, "ServiceAccount")["metadata"]["name"]
    assert 30 <= pod["terminationGracePeriodSeconds"] <= 120
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_the_probes_ask_the_liveness_endpoint_the_operator_serves(install: list[Obj]) -> None:
    container, args = operator_container(install), operator_args(install)
    for probe in ("livenessProbe", "readinessProbe"):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == "/healthz", probe
        assert container_port(container, http_get["port"]) == args.liveness_port, probe


def test_the_metrics_service_reaches_the_metrics_port_of_the_operator_pods(
    install: list[Obj],
) -> None:
    service = find(install, "Service", METRICS_SERVICE)
    pod_labels = deployment(install)["spec"]["template"]["metadata"]["labels"]
    service_labels = {
        "app.kubernetes.io/name": "proxmox-vm-operator",
        "app.kubernetes.io/component": "metrics",
    }
    assert service["metadata"]["labels"].items() >= service_labels.items()
    assert selects(service["spec"]["selector"], pod_labels)
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("metrics", 8000)
    assert isinstance(port["targetPort"], str), "a named port follows the container's"
    container = operator_container(install)
    assert container_port(container, port["targetPort"]) == operator_args(install).metrics_port


def test_the_deployment_selector_matches_its_own_pods_only_by_name_and_component(
    install: list[Obj],
) -> None:
    spec = deployment(install)["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "proxmox-vm-operator",
        "app.kubernetes.io/component": "operator",
    }
    assert selects(selector, spec["template"]["metadata"]["labels"])


def test_the_disruption_budget_covers_the_operator_pods_and_keeps_one(install: list[Obj]) -> None:
    budget = find(install, "PodDisruptionBudget")["spec"]
    pod_labels = deployment(install)["spec"]["template"]["metadata"]["labels"]
    assert selects(budget["selector"]["matchLabels"], pod_labels)
    replicas = deployment(install)["spec"]["replicas"]
    allowed = budget.get("maxUnavailable", replicas - budget.get("minAvailable", replicas))
    assert allowed == 1 == replicas - 1


def test_replicas_spread_across_nodes(install: list[Obj]) -> None:
    pod = deployment(install)["spec"]["template"]["spec"]
    pod_labels = deployment(install)["spec"]["template"]["metadata"]["labels"]
    spreads = [
        c
        for c in pod.get("topologySpreadConstraints", [])
        if c["topologyKey"] == "kubernetes.io/hostname"
        and selects(c["labelSelector"]["matchLabels"], pod_labels)
    ]
    assert spreads, "no spread of the operator's pods across nodes"


def test_the_cluster_role_is_bound_to_the_operator_service_account(install: list[Obj]) -> None:
    binding = find(install, "ClusterRoleBinding")
    role = find(install, "ClusterRole")
    account = find(install, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]


def test_the_image_is_named_for_kustomize_images_overrides(install: list[Obj]) -> None:
    assert operator_container(install)["image"] == "proxmox-vm-operator:0.1.0"


# ---------------------------------------------------------------------------------- samples


def test_the_samples_cover_minimal_full_clone_and_orphan(samples: list[Obj]) -> None:
    vms = {o["metadata"]["name"]: o["spec"] for o in samples if o["kind"] == "ProxmoxVM"}
    assert len(vms) == len(samples), "the samples are ProxmoxVMs only"
    minimal = [s for s in vms.values() if s.keys() == {"connectionRef", "node"}]
    shutdown = [s for s in vms.values() if s.get("destroy", {}).get("mode") == "Shutdown"]
    cloned = [s for s in vms.values() if "cloneFrom" in s.get("source", {})]
    orphan = [s for s in vms.values() if s.get("deletionPolicy") == "Orphan"]
    assert minimal and shutdown and cloned and orphan, sorted(vms)


def test_applying_the_samples_never_overwrites_credentials(samples: list[Obj]) -> None:
    assert not [o for o in samples if o["kind"] == "Secret"]


def test_the_secret_template_is_a_valid_secret_the_operator_accepts(samples: list[Obj]) -> None:
    (secret,) = load_yaml(SECRET_TEMPLATE)
    for version in KUBERNETES_VERSIONS:
        validate_builtin(secret, version)
    settings = ConnectionSettings.from_secret_data(secret["stringData"])
    assert not settings.insecure_skip_tls_verify
    text = SECRET_TEMPLATE.read_text()
    for optional in ("caCert", "insecureSkipTLSVerify"):
        assert f"# {optional}:" in text, f"the template documents the optional key {optional}"
    for privilege in ("VM.Allocate", "VM.Audit", "VM.PowerMgmt", "Datastore.AllocateSpace"):
        assert privilege in text
    references = {o["spec"]["connectionRef"]["name"] for o in samples}
    assert references == {secret["metadata"]["name"]}
