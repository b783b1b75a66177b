"""The credentials Secret: a missing one is reported (Ready False, ConnectionUnavailable) without
crashing or calling Proxmox and is picked up once created; a wrong token is reported and a
fixed Secret is picked up; and the token secret never shows in the operator's log (verbose),
events, the object (status, annotations) or metrics."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
import requests

from .harness import Cluster, dig
from .lifecycle_helpers import (
    condition,
    wait_event,
    wait_gone,
    wait_phase,
    wait_reason,
)

VERBOSE = pytest.mark.sandbox(operator_args=("--verbose",))


def secret_manifest(cluster: Cluster, name: str, token_secret: str) -> str:
    """`kubectl create secret generic` in dry-run: the YAML a user would apply."""
    result = cluster.kubectl(
        "create",
        "secret",
        "generic",
        name,
        f"--from-literal=endpoint={cluster.sim.endpoint}",
        f"--from-literal=tokenId={cluster.token_id}",
        f"--from-literal=tokenSecret={token_secret}",
        f"--from-file=caCert={cluster.sim.ca_file}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    return result.stdout


def apply_secret(cluster: Cluster, name: str, token_secret: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=secret_manifest(cluster, name, token_secret))


def assert_never_shown(cluster: Cluster, *values: str) -> None:
    """None of `values` (nor their base64) in the objects, the events, the log or /metrics."""
    places = {
        "kubectl get pvm -o json": json.dumps(cluster.kubectl.json("get", "pvm")),
        "kubectl get events -o json": json.dumps(cluster.kubectl.json("get", "events")),
        "the operator log": cluster.operator.log_text(),
        "/metrics": requests.get(cluster.operator.metrics_url, timeout=5).text,
    }
    assert places["the operator log"].strip(), "no log to search"
    for value in values:
        encoded = base64.b64encode(value.encode()).decode()
        for where, text in places.items():
            assert value not in text, f"the token secret shows in {where}"
            assert encoded not in text, f"the token secret shows base64-encoded in {where}"


@VERBOSE
def test_a_missing_secret_is_reported_and_picked_up_once_created(cluster: Cluster) -> None:
    cluster.apply_vm("web-1", {"vmid": 600, "connectionRef": {"name": "pve-later"}})
    vm = wait_reason(cluster, "web-1", "ConnectionUnavailable", status="False", timeout=20)
    message = str(dig(condition(vm), "message"))
    assert "pve-later" in message and "not found" in message, message
    assert dig(vm, "status.phase") not in ("Running", "Failed")
    warning = wait_event(cluster, "web-1", "ConnectionUnavailable")
    assert warning["type"] == "Warning"
    assert cluster.operator.running, cluster.operator.log_tail()
    assert cluster.sim.requests == []

    apply_secret(cluster, "pve-later", cluster.token_secret)
    # Nothing watches Secrets: the operator looks again after 2, 4, 8, 16, then every 30 s.
    vm = wait_phase(cluster, "web-1", "Running", timeout=45)
    assert dig(vm, "status.vmid") == 600 and cluster.sim.vm(600) is not None
    assert {r.user for r in cluster.sim.requests} == {cluster.token_id}
    assert cluster.operator.running
    assert_never_shown(cluster, cluster.token_secret)


@VERBOSE
def test_a_wrong_token_is_reported_and_a_fixed_secret_is_used(cluster: Cluster) -> None:
    wrong = f"wrong-{secrets.token_urlsafe(18)}"
    apply_secret(cluster, "pve-rotated", wrong)
    cluster.apply_vm("web-2", {"vmid": 610, "connectionRef": {"name": "pve-rotated"}})
    vm = wait_reason(cluster, "web-2", "ProxmoxUnauthorized", status="False", timeout=20)
    assert dig(condition(vm, "Stalled"), "status") == "True"  # a wrong token needs a human
    assert not cluster.sim.vm_exists(610)
    refused = [r for r in cluster.sim.requests if r.status == 401]
    assert refused, cluster.sim.requests
    assert all(r.status == 401 for r in cluster.sim.requests)
    message = str(dig(condition(vm), "message"))
    assert message and wrong not in message

    apply_secret(cluster, "pve-rotated", cluster.token_secret)  # rotate to the right token
    wait_phase(cluster, "web-2", "Running", timeout=30)
    assert cluster.sim.vm(610) is not None

    cluster.delete_vm("web-2")
    wait_gone(cluster, "web-2", timeout=30)
    assert not cluster.sim.vm_exists(610)
    assert_never_shown(cluster, cluster.token_secret, wrong)
