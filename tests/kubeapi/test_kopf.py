"""A real kopf operator (kopf_operator.py) through a full lifecycle against the threaded server."""

from __future__ import annotations

import pathlib
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from .helpers import CRDS_URL, FINALIZER, HTTP, PVMS, PVMS_URL, manifest, vm

OPERATOR = str(pathlib.Path(__file__).with_name("kopf_operator.py"))
PEERING_URL = "/apis/kopf.dev/v1/namespaces/default/kopfpeerings/default"


@pytest.fixture(autouse=True)
def _kopf_url(server: KubeAPIServer, crd: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEAPI_TEST_URL", server.url)


def run_lifecycle(server: KubeAPIServer, http: HTTP, *options: str) -> KopfRunner:
    args = ["run", "--verbose", "--namespace=default", *options, OPERATOR]
    with KopfRunner(args, registry=kopf.OperatorRegistry(), timeout=30) as runner:
        http.post(PVMS_URL, vm())

        def handled(api: Any) -> bool:
            obj = api.get_object(PVMS, "vm1", "default")
            return FINALIZER in obj["metadata"].get("finalizers", []) and "create_vm" in obj.get(
                "status", {}
            )

        server.wait_for(handled)
        deleting = http.delete(f"{PVMS_URL}/vm1")
        assert deleting.status_code == 200 and deleting.json()["metadata"]["deletionTimestamp"]
        server.wait_for(lambda api: api.get_object(PVMS, "vm1", "default") is None)
        assert http.get(f"{PVMS_URL}/vm1").status_code == 404
    assert runner.exit_code == 0 and runner.exception is None
    assert "Handler 'create_vm' succeeded" in runner.output
    assert "Handler 'delete_vm' succeeded" in runner.output

    history = [v for v in server.history(PVMS, "vm1", "default") if v is not None]
    assert "finalizers" not in history[0]["metadata"]
    assert any(FINALIZER in v["metadata"].get("finalizers", []) for v in history)
    assert (
        history[-1]["metadata"]["deletionTimestamp"] and "finalizers" not in history[-1]["metadata"]
    )
    assert history[-1]["status"]["create_vm"] == {"vmid": 101}
    reasons = [e["reason"] for e in http.get("/api/v1/namespaces/default/events").json()["items"]]
    assert {"Created", "Deleted"} <= set(reasons)  # posted by kopf with generateName
    return runner


def test_kopf_standalone(server: KubeAPIServer, http: HTTP) -> None:
    runner = run_lifecycle(server, http, "--standalone")
    assert "Keep-alive" not in runner.output


def test_kopf_with_peering(server: KubeAPIServer, http: HTTP) -> None:
    for crd in manifest("kopf-peering-crds.yaml"):
        http.post(CRDS_URL, crd)
    http.post(PEERING_URL.rsplit("/", 1)[0], {"metadata": {"name": "default"}})
    runner = run_lifecycle(server, http)
    peering_patches = [
        v for v in server.history("kopf.dev/v1/kopfpeerings", "default", "default") if v
    ]
    assert any(v.get("status") for v in peering_patches), "kopf announced itself in the peering"
    assert not http.get(PEERING_URL).json().get("status"), "and removed itself at exit"
    assert "Keep-alive in 'default' in 'default': ok." in runner.output
