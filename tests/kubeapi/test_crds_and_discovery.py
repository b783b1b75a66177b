"""CRD registration and API discovery."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import CRDS_URL, HTTP, manifest


def resources(http: HTTP, group_version: str) -> dict[str, dict[str, Any]]:
    body = http.get(
        f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    ).json()
    assert body["kind"] == "APIResourceList" and body["groupVersion"] == group_version
    return {entry["name"]: entry for entry in body["resources"]}


def test_posting_a_crd_registers_its_resource_and_subresources(http: HTTP) -> None:
    assert http.get("/apis/proxmox.vmop.dev").status_code == 404
    http.post(CRDS_URL, manifest("proxmoxvm-crd.yaml"))
    served = resources(http, "proxmox.vmop.dev/v1alpha1")
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    assert served["proxmoxvms"] == {
        "name": "proxmoxvms", "singularName": "proxmoxvm", "namespaced": True, "kind": "ProxmoxVM",
        "verbs": verbs, "shortNames": ["pvm"], "categories": ["proxmox"],
    }  # fmt: skip
    assert served["proxmoxvms/status"] == {
        "name": "proxmoxvms/status", "singularName": "", "namespaced": True, "kind": "ProxmoxVM",
        "verbs": ["get", "patch", "update"],
    }  # fmt: skip
    group = http.get("/apis/proxmox.vmop.dev").json()
    assert group["preferredVersion"] == {
        "groupVersion": "proxmox.vmop.dev/v1alpha1",
        "version": "v1alpha1",
    }
    assert "proxmox.vmop.dev" in [g["name"] for g in http.get("/apis").json()["groups"]]


def test_crd_is_established_at_once(http: HTTP) -> None:
    crd = http.post(CRDS_URL, manifest("proxmoxvm-crd.yaml")).json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["shortNames"] == ["pvm"]
    assert crd["status"]["storedVersions"] == ["v1alpha1"]
    assert crd["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]


def test_served_versions_share_the_objects_of_the_storage_version(http: HTTP) -> None:
    crd = manifest("proxmoxvm-crd.yaml")
    v1alpha1 = crd["spec"]["versions"][0]
    v1 = {**v1alpha1, "name": "v1", "storage": False}
    crd["spec"]["versions"] = [v1, v1alpha1, {**v1, "name": "v2", "served": False}]
    http.post(CRDS_URL, crd)
    assert http.get("/apis/proxmox.vmop.dev").json()["preferredVersion"]["version"] == "v1"
    assert http.get("/apis/proxmox.vmop.dev/v2").status_code == 404
    http.post(
        "/apis/proxmox.vmop.dev/v1alpha1/namespaces/default/proxmoxvms", {"metadata": {"name": "a"}}
    )
    seen = http.get("/apis/proxmox.vmop.dev/v1/namespaces/default/proxmoxvms/a").json()
    assert seen["apiVersion"] == "proxmox.vmop.dev/v1"


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("metadata", "name"), "wrong", "metadata.name"),
        (("spec", "scope"), "Galaxy", "spec.scope"),
        (("spec", "group"), "", "spec.group"),
    ],
)
def test_invalid_crds_are_422(http: HTTP, path: tuple[str, str], value: str, problem: str) -> None:
    crd = manifest("proxmoxvm-crd.yaml")
    crd[path[0]][path[1]] = value
    response = http.post(CRDS_URL, crd)
    assert (response.status_code, response.json()["reason"]) == (422, "Invalid")
    assert problem in response.json()["message"]


def test_kopf_peering_crds_work(http: HTTP) -> None:
    for crd in manifest("kopf-peering-crds.yaml"):
        assert http.post(CRDS_URL, crd).status_code == 201
    assert resources(http, "kopf.dev/v1")["clusterkopfpeerings"]["namespaced"] is False
    peering = {"metadata": {"name": "default"}, "status": {"me": {"priority": 0}}}
    assert (
        http.post("/apis/kopf.dev/v1/namespaces/default/kopfpeerings", peering).status_code == 201
    )
    assert http.post("/apis/kopf.dev/v1/clusterkopfpeerings", peering).status_code == 201
    patched = http.patch("/apis/kopf.dev/v1/clusterkopfpeerings/default", {"status": {"me": None}})
    assert patched.json()["status"] == {}


def test_core_discovery_is_v1_without_short_names_on_subresources(http: HTTP) -> None:
    assert http.get("/api").json()["versions"] == ["v1"]
    core = resources(http, "v1")
    assert core["namespaces"]["shortNames"] == ["ns"] and core["namespaces"]["namespaced"] is False
    assert "shortNames" not in core["namespaces/status"]
    assert {"secrets", "events", "configmaps"} <= core.keys()


def test_version_endpoint(http: HTTP) -> None:
    assert http.get("/version").json()["major"] == "1"
    assert http.get("/openapi/v2").status_code == 404


def test_updating_a_crd_updates_its_registration(http: HTTP) -> None:
    http.post(CRDS_URL, manifest("proxmoxvm-crd.yaml"))
    url = f"{CRDS_URL}/proxmoxvms.proxmox.vmop.dev"
    http.patch(url, {"spec": {"names": {"shortNames": ["pvm", "vm"]}}})
    assert resources(http, "proxmox.vmop.dev/v1alpha1")["proxmoxvms"]["shortNames"] == ["pvm", "vm"]
    invalid = http.patch(url, {"spec": {"scope": "Galaxy"}})
    assert (invalid.status_code, invalid.json()["reason"]) == (422, "Invalid")


def test_openapi_v3_lets_kubectl_validate_server_side_and_explain(http: HTTP) -> None:
    http.post(CRDS_URL, manifest("proxmoxvm-crd.yaml"))
    index = http.get("/openapi/v3").json()["paths"]
    assert {"api/v1", "apis/proxmox.vmop.dev/v1alpha1"} <= index.keys()
    document = http.get(index["apis/proxmox.vmop.dev/v1alpha1"]["serverRelativeURL"]).json()
    patch = document["paths"][
        "/apis/proxmox.vmop.dev/v1alpha1/namespaces/{namespace}/proxmoxvms/{name}"
    ]["patch"]
    gvk = {"group": "proxmox.vmop.dev", "version": "v1alpha1", "kind": "ProxmoxVM"}
    assert patch["x-kubernetes-group-version-kind"] == gvk
    assert patch["parameters"][0]["name"] == "fieldValidation"
    schema = document["components"]["schemas"]["dev.vmop.proxmox.v1alpha1.ProxmoxVM"]
    assert schema["x-kubernetes-group-version-kind"] == [gvk]
    assert schema["properties"]["spec"]["properties"]["cores"]["type"] == "integer"
    assert http.get("/openapi/v3/apis/nothing/v1").status_code == 404
