"""The status subresource: /status changes only the status; the main endpoint ignores it."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import CRDS_URL, HTTP, PVMS_URL, manifest, vm

VM1 = f"{PVMS_URL}/vm1"


@pytest.fixture(autouse=True)
def vm1(http: HTTP, crd: object) -> None:
    http.post(PVMS_URL, {**vm(), "status": {"phase": "Forged"}})


def test_create_drops_the_status(http: HTTP) -> None:
    assert "status" not in http.get(VM1).json()


def test_status_endpoint_changes_only_the_status(http: HTTP) -> None:
    patch = {
        "metadata": {"labels": {"x": "y"}},
        "spec": {"cores": 9},
        "status": {"phase": "Running"},
    }
    body = http.patch(f"{VM1}/status", patch).json()
    assert body["status"] == {"phase": "Running"}
    assert body["spec"]["cores"] == 2 and "labels" not in body["metadata"]
    assert body["metadata"]["generation"] == 1


def test_main_endpoint_ignores_the_status(http: HTTP) -> None:
    http.patch(f"{VM1}/status", {"status": {"phase": "Running"}})
    body = http.patch(VM1, {"spec": {"cores": 4}, "status": {"phase": "Forged"}}).json()
    assert (body["spec"]["cores"], body["status"]) == (4, {"phase": "Running"})
    replaced = http.put(VM1, {**body, "status": None}).json()
    assert replaced["status"] == {"phase": "Running"}


def test_status_put_replaces_the_status(http: HTTP) -> None:
    current = http.patch(f"{VM1}/status", {"status": {"phase": "Running", "vmid": 1}}).json()
    body = http.put(f"{VM1}/status", {**current, "status": {"phase": "Stopped"}}).json()
    assert body["status"] == {"phase": "Stopped"}


def test_status_endpoint_is_404_without_the_subresource(http: HTTP) -> None:
    crd: dict[str, Any] = manifest("proxmoxvm-crd.yaml")
    crd["metadata"]["name"] = "widgets.proxmox.vmop.dev"
    crd["spec"]["names"] = {"kind": "Widget", "plural": "widgets"}
    del crd["spec"]["versions"][0]["subresources"]
    http.post(CRDS_URL, crd)
    url = "/apis/proxmox.vmop.dev/v1alpha1/namespaces/default/widgets"
    http.post(url, {"metadata": {"name": "w"}, "status": {"kept": True}})
    assert http.get(f"{url}/w").json()["status"] == {"kept": True}
    assert http.patch(f"{url}/w", {"status": {"kept": False}}).json()["status"] == {"kept": False}
    assert http.patch(f"{url}/w/status", {"status": {}}).status_code == 404
    assert http.delete(f"{VM1}/status").status_code == 405
