"""DELETE: finalizers, deletionTimestamp, propagation policies, namespaces and CRDs."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from .helpers import CRDS, CRDS_URL, FINALIZER, HTTP, JSON_PATCH, PVMS, PVMS_URL, vm

pytestmark = pytest.mark.usefixtures("crd")
VM1 = f"{PVMS_URL}/vm1"


def release(http: HTTP, url: str = VM1) -> None:
    rv = http.get(url).json()["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
           {"op": "remove", "path": "/metadata/finalizers/0"}]  # fmt: skip
    assert http.patch(url, ops, JSON_PATCH).status_code == 200


def test_delete_without_finalizers_is_immediate(http: HTTP, server: KubeAPIServer) -> None:
    created = http.post(PVMS_URL, vm()).json()
    response = http.delete(VM1)
    assert response.status_code == 200
    assert response.json()["metadata"]["uid"] == created["metadata"]["uid"]
    assert http.get(VM1).status_code == 404
    assert server.history(PVMS, "vm1", "default")[-1] is None
    assert http.post(PVMS_URL, vm()).status_code == 201  # the name is free again


def test_finalizers_keep_the_object_until_released(http: HTTP, server: KubeAPIServer) -> None:
    http.post(PVMS_URL, vm(finalizers=[FINALIZER]))
    deleting = http.delete(VM1).json()["metadata"]
    assert deleting["deletionTimestamp"] and deleting["generation"] == 2
    assert http.get(VM1).json()["metadata"]["deletionTimestamp"] == deleting["deletionTimestamp"]
    patched = http.patch(VM1, {"metadata": {"labels": {"still": "patchable"}}})
    assert patched.status_code == 200

    release(http)
    assert http.get(VM1).status_code == 404
    history = server.history(PVMS, "vm1", "default")
    assert history[-1] is None and "finalizers" not in history[-2]["metadata"]


def test_repeated_delete_is_a_no_op(http: HTTP) -> None:
    http.post(PVMS_URL, vm(finalizers=[FINALIZER]))
    first = http.delete(VM1).json()
    again = http.delete(VM1)
    assert again.status_code == 200 and again.json() == first


def test_no_new_finalizers_once_deleting(http: HTTP) -> None:
    http.post(PVMS_URL, vm(finalizers=[FINALIZER]))
    http.delete(VM1)
    response = http.patch(VM1, {"metadata": {"finalizers": [FINALIZER, "other/one"]}})
    assert (response.status_code, response.json()["reason"]) == (422, "Invalid")
    assert "no new finalizers" in response.json()["message"]


def test_delete_of_a_missing_object_is_404(http: HTTP) -> None:
    assert http.delete(f"{PVMS_URL}/ghost").json()["reason"] == "NotFound"


def test_delete_preconditions(http: HTTP) -> None:
    http.post(PVMS_URL, vm())
    stale = http.delete(VM1, {"preconditions": {"resourceVersion": "1"}})
    assert (stale.status_code, stale.json()["reason"]) == (409, "Conflict")
    assert http.delete(VM1, {"dryRun": ["All"]}).status_code == 200
    assert http.get(VM1).status_code == 200


@pytest.mark.parametrize("how", ["body", "query"])
def test_foreground_deletion_still_runs_our_finalizer(
    http: HTTP, server: KubeAPIServer, how: str
) -> None:
    """Argo CD and `kubectl delete --cascade=foreground` send propagationPolicy=Foreground."""
    http.post(PVMS_URL, vm(finalizers=[FINALIZER]))
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
    response = (
        http.delete(VM1, options)
        if how == "body"
        else http.delete(VM1, propagationPolicy="Foreground")
    )
    assert response.json()["metadata"]["finalizers"] == [FINALIZER, "foregroundDeletion"]
    # The garbage collector finds no dependents and drops its finalizer; ours stays.
    server.wait_for(
        lambda api: api.get_object(PVMS, "vm1", "default")["metadata"]["finalizers"] == [FINALIZER]
    )
    release(http)
    assert http.get(VM1).status_code == 404


def test_foreground_deletion_without_other_finalizers_goes_away(
    http: HTTP, server: KubeAPIServer
) -> None:
    http.post(PVMS_URL, vm())
    assert http.delete(VM1, propagationPolicy="Foreground").json()["metadata"]["deletionTimestamp"]
    server.wait_for(lambda api: api.get_object(PVMS, "vm1", "default") is None)


def test_orphan_deletion(http: HTTP, server: KubeAPIServer) -> None:
    http.post(PVMS_URL, vm())
    assert http.delete(VM1, orphanDependents="true").json()["metadata"]["finalizers"] == ["orphan"]
    server.wait_for(lambda api: api.get_object(PVMS, "vm1", "default") is None)


def test_namespace_deletion_deletes_its_objects_then_itself(
    http: HTTP, server: KubeAPIServer
) -> None:
    http.post("/api/v1/namespaces", {"metadata": {"name": "lab"}})
    lab_url = PVMS_URL.replace("/default/", "/lab/")
    http.post(lab_url, vm(finalizers=[FINALIZER]))
    namespace = http.delete("/api/v1/namespaces/lab").json()
    assert namespace["status"]["phase"] == "Terminating"
    server.wait_for(
        lambda api: api.get_object(PVMS, "vm1", "lab")["metadata"].get("deletionTimestamp")
    )
    refused = http.post(lab_url, vm("vm2"))
    assert (refused.status_code, refused.json()["reason"]) == (403, "Forbidden")
    assert http.get("/api/v1/namespaces/lab").status_code == 200  # waits for our finalizer

    release(http, f"{lab_url}/vm1")
    server.wait_for(lambda api: api.get_object("v1/namespaces", "lab") is None)


def test_protected_namespaces_cannot_be_deleted(http: HTTP) -> None:
    response = http.delete("/api/v1/namespaces/default")
    assert (response.status_code, response.json()["reason"]) == (403, "Forbidden")


def test_crd_deletion_deletes_its_objects_then_unregisters(
    http: HTTP, server: KubeAPIServer
) -> None:
    http.post(PVMS_URL, vm(finalizers=[FINALIZER]))
    http.delete(f"{CRDS_URL}/proxmoxvms.proxmox.vmop.dev")
    server.wait_for(
        lambda api: api.get_object(PVMS, "vm1", "default")["metadata"].get("deletionTimestamp")
    )
    assert http.post(PVMS_URL, vm("vm2")).json()["reason"] == "MethodNotAllowed"

    release(http)
    server.wait_for(lambda api: api.get_object(CRDS, "proxmoxvms.proxmox.vmop.dev") is None)
    assert http.get(PVMS_URL).status_code == 404
    assert "proxmox.vmop.dev" not in str(http.get("/apis").json())
