"""PATCH (merge, JSON, strategic) and PUT, with resourceVersion preconditions."""

from __future__ import annotations

import pytest

from .helpers import HTTP, JSON_PATCH, MERGE_PATCH, PVMS_URL, vm

pytestmark = pytest.mark.usefixtures("crd")
VM1 = f"{PVMS_URL}/vm1"


@pytest.fixture(autouse=True)
def vm1(http: HTTP, crd: object) -> None:
    body = vm(labels={"a": "1", "b": "2"})
    body["spec"]["disks"] = [{"slot": "scsi0", "sizeGiB": 20}]
    assert http.post(PVMS_URL, body).status_code == 201


def test_merge_patch_merges_maps_deletes_nulls_replaces_lists(http: HTTP) -> None:
    patch = {
        "metadata": {"labels": {"a": None, "c": "3"}},
        "spec": {"cores": None, "disks": [], "memoryMiB": 512},
    }
    body = http.patch(VM1, patch, MERGE_PATCH).json()
    assert body["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert body["spec"] == {"node": "pve1", "disks": [], "memoryMiB": 512}


def test_merge_patch_can_put_a_scalar_over_a_map(http: HTTP) -> None:
    assert http.patch(VM1, {"spec": {"disks": "none"}}).json()["spec"]["disks"] == "none"


def test_strategic_merge_patch_is_treated_as_a_merge_patch(http: HTTP) -> None:
    response = http.patch(VM1, {"spec": {"cores": 8}}, "application/strategic-merge-patch+json")
    assert response.json()["spec"]["cores"] == 8


def test_json_patch(http: HTTP) -> None:
    rv = http.get(VM1).json()["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
        {"op": "replace", "path": "/spec/cores", "value": 3},
        {"op": "remove", "path": "/spec/disks/0"},
    ]
    body = http.patch(VM1, ops, JSON_PATCH).json()
    assert body["metadata"]["finalizers"] == ["x/y"]
    assert body["spec"] == {"node": "pve1", "cores": 3, "disks": []}


def test_json_patch_failed_test_is_422_and_changes_nothing(http: HTTP) -> None:
    before = http.get(VM1).json()
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "remove", "path": "/spec"},
    ]
    response = http.patch(VM1, ops, JSON_PATCH)
    assert (response.status_code, response.json()["reason"]) == (422, "Invalid")
    assert (
        http.patch(VM1, [{"op": "remove", "path": "/spec/nothing"}], JSON_PATCH).status_code == 422
    )
    assert http.get(VM1).json() == before


def test_server_side_apply_is_not_emulated(http: HTTP) -> None:
    response = http.request("PATCH", VM1, {"spec": {}}, "application/apply-patch+yaml")
    assert (response.status_code, response.json()["reason"]) == (415, "UnsupportedMediaType")


def test_patch_with_a_stale_resource_version_is_409(http: HTTP) -> None:
    response = http.patch(VM1, {"metadata": {"resourceVersion": "1"}, "spec": {"cores": 5}})
    assert (response.status_code, response.json()["reason"]) == (409, "Conflict")


def test_patch_of_a_missing_object_is_404(http: HTTP) -> None:
    assert http.patch(f"{PVMS_URL}/ghost", {"spec": {}}).status_code == 404


def test_put_replaces_and_keeps_system_metadata(http: HTTP) -> None:
    current = http.get(VM1).json()
    replacement = {
        **current,
        "spec": {"node": "pve2"},
        "metadata": {**current["metadata"], "uid": "forged"},
    }
    body = http.put(VM1, replacement).json()
    assert body["spec"] == {"node": "pve2"}
    assert body["metadata"]["uid"] == current["metadata"]["uid"]
    assert body["metadata"]["generation"] == 2
    assert int(body["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])


def test_put_with_a_stale_resource_version_is_409_conflict(http: HTTP) -> None:
    current = http.get(VM1).json()
    http.patch(VM1, {"spec": {"cores": 3}})
    response = http.put(VM1, {**current, "spec": {"node": "pve2"}})
    assert response.status_code == 409
    assert response.json()["reason"] == "Conflict"
    assert "the object has been modified" in response.json()["message"]


def test_put_without_a_resource_version_is_unconditional(http: HTTP) -> None:
    response = http.put(VM1, {"metadata": {"name": "vm1"}, "spec": {"node": "pve3"}})
    assert response.json()["spec"] == {"node": "pve3"}


def test_put_with_another_name_is_400(http: HTTP) -> None:
    assert http.put(VM1, vm("vm2")).status_code == 400
