"""CREATE and GET: server-set metadata, generateName, namespaces from the URL, error bodies."""

from __future__ import annotations

import re
from typing import Any

import pytest

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from .helpers import HTTP, PVMS, PVMS_URL, vm

pytestmark = pytest.mark.usefixtures("crd")


def test_create_sets_server_metadata(http: HTTP) -> None:
    response = http.post(PVMS_URL, {"metadata": {"name": "vm1"}, "spec": {"cores": 2}})
    assert response.status_code == 201
    body = response.json()
    meta = body["metadata"]
    assert (body["apiVersion"], body["kind"]) == ("proxmox.vmop.dev/v1alpha1", "ProxmoxVM")
    assert (meta["name"], meta["namespace"], meta["generation"]) == ("vm1", "default", 1)
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["resourceVersion"].isdigit()
    assert http.get(f"{PVMS_URL}/vm1").json() == body


def test_create_ignores_client_set_system_fields(http: HTTP) -> None:
    meta = {"name": "vm1", "uid": "mine", "resourceVersion": "999", "generation": 7,
            "deletionTimestamp": "2020-01-01T00:00:00Z"}  # fmt: skip
    created = http.post(PVMS_URL, vm(**meta)).json()["metadata"]
    assert created["uid"] != "mine" and created["generation"] == 1
    assert created["resourceVersion"] != "999" and "deletionTimestamp" not in created


def test_generate_name(http: HTTP) -> None:
    names = {
        http.post(PVMS_URL, vm("", generateName="web-")).json()["metadata"]["name"]
        for _ in range(3)
    }
    assert len(names) == 3
    assert all(re.fullmatch(r"web-[a-z0-9]{5}", name) for name in names)


def test_name_or_generate_name_is_required(http: HTTP) -> None:
    response = http.post(PVMS_URL, {"spec": {}})
    assert (response.status_code, response.json()["reason"]) == (422, "Invalid")


def test_namespace_comes_from_the_url(http: HTTP) -> None:
    assert http.post(PVMS_URL, vm()).json()["metadata"]["namespace"] == "default"
    mismatch = http.post(PVMS_URL, vm("vm2", namespace="other"))
    assert (mismatch.status_code, mismatch.json()["reason"]) == (400, "BadRequest")


def test_unknown_namespace_is_404(http: HTTP) -> None:
    response = http.post("/apis/proxmox.vmop.dev/v1alpha1/namespaces/nowhere/proxmoxvms", vm())
    assert response.status_code == 404
    assert response.json()["message"] == 'namespaces "nowhere" not found'


def test_duplicate_is_409_already_exists(http: HTTP) -> None:
    http.post(PVMS_URL, vm())
    response = http.post(PVMS_URL, vm())
    assert response.status_code == 409
    assert response.json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 409,
        "reason": "AlreadyExists", "message": 'proxmoxvms.proxmox.vmop.dev "vm1" already exists',
        "details": {"name": "vm1", "group": "proxmox.vmop.dev", "kind": "proxmoxvms"},
    }  # fmt: skip


def test_missing_object_is_404_not_found(http: HTTP) -> None:
    response = http.get(f"{PVMS_URL}/ghost")
    assert response.status_code == 404
    status: dict[str, Any] = response.json()
    assert (status["kind"], status["status"], status["reason"]) == ("Status", "Failure", "NotFound")
    assert status["message"] == 'proxmoxvms.proxmox.vmop.dev "ghost" not found'
    assert status["details"] == {"name": "ghost", "group": "proxmox.vmop.dev", "kind": "proxmoxvms"}


def test_unknown_resource_and_wrong_scope_are_404(http: HTTP) -> None:
    assert http.get("/apis/proxmox.vmop.dev/v1alpha1/namespaces/default/widgets").status_code == 404
    assert http.get("/apis/proxmox.vmop.dev/v1alpha1/proxmoxvms/vm1").status_code == 404
    assert http.get("/api/v1/namespaces/default/namespaces/x").status_code == 404


def test_resource_version_bumps_on_every_change_generation_on_spec_only(http: HTTP) -> None:
    rv = [int(http.post(PVMS_URL, vm()).json()["metadata"]["resourceVersion"])]
    steps = [
        ({"metadata": {"labels": {"a": "b"}}}, ""),
        ({"spec": {"cores": 4}}, ""),
        ({"status": {"phase": "Running"}}, "/status"),
    ]
    generations = []
    for patch, subresource in steps:
        meta = http.patch(f"{PVMS_URL}/vm1{subresource}", patch).json()["metadata"]
        rv.append(int(meta["resourceVersion"]))
        generations.append(meta["generation"])
    assert rv == sorted(set(rv))
    assert generations == [1, 2, 2]


def test_no_op_change_keeps_the_resource_version(http: HTTP, server: KubeAPIServer) -> None:
    before = http.post(PVMS_URL, vm()).json()
    after = http.patch(f"{PVMS_URL}/vm1", {"spec": {"cores": 2}}).json()
    assert after == before
    assert len(server.history(PVMS, "vm1", "default")) == 1


def test_dry_run_stores_nothing(http: HTTP, server: KubeAPIServer) -> None:
    assert http.post(PVMS_URL, vm(), dryRun="All").status_code == 201
    assert server.get_object(PVMS, "vm1", "default") is None
