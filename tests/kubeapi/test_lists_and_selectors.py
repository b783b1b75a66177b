"""LIST: the list kind and resourceVersion, label and field selectors."""

from __future__ import annotations

import pytest

from .helpers import HTTP, PVMS_URL, vm

pytestmark = pytest.mark.usefixtures("crd")


@pytest.fixture
def vms(http: HTTP, crd: object) -> None:
    http.post("/api/v1/namespaces", {"metadata": {"name": "lab"}})
    for name, labels, url in [
        ("web", {"tier": "front", "env": "prod"}, PVMS_URL),
        ("db", {"tier": "back", "env": "prod"}, PVMS_URL),
        ("scratch", {}, PVMS_URL),
        ("lab-vm", {"tier": "front"}, PVMS_URL.replace("/default/", "/lab/")),
    ]:
        assert http.post(url, vm(name, labels=labels)).status_code == 201


def names(http: HTTP, url: str = PVMS_URL, **params: str) -> list[str]:
    response = http.get(url, **params)
    assert response.status_code == 200, response.text
    return [item["metadata"]["name"] for item in response.json()["items"]]


@pytest.mark.usefixtures("vms")
def test_list_has_kind_and_resource_version(http: HTTP) -> None:
    body = http.get(PVMS_URL).json()
    assert (body["apiVersion"], body["kind"]) == ("proxmox.vmop.dev/v1alpha1", "ProxmoxVMList")
    latest = max(int(item["metadata"]["resourceVersion"]) for item in body["items"])
    assert int(body["metadata"]["resourceVersion"]) >= latest
    assert names(http) == ["db", "scratch", "web"]
    assert names(http, "/apis/proxmox.vmop.dev/v1alpha1/proxmoxvms") == [
        "db",
        "scratch",
        "web",
        "lab-vm",
    ]


@pytest.mark.usefixtures("vms")
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=front", ["web"]),
        ("tier==front", ["web"]),
        ("tier!=front", ["db", "scratch"]),
        ("tier in (front, back)", ["db", "web"]),
        ("tier notin (front)", ["db", "scratch"]),
        ("tier", ["db", "web"]),
        ("!tier", ["scratch"]),
        ("env=prod,tier in (back)", ["db"]),
        ("env=prod,!tier", []),
    ],
)
def test_label_selectors(http: HTTP, selector: str, expected: list[str]) -> None:
    assert names(http, labelSelector=selector) == expected


@pytest.mark.usefixtures("vms")
def test_field_selectors(http: HTTP) -> None:
    assert names(http, fieldSelector="metadata.name=web") == ["web"]
    assert names(http, fieldSelector="metadata.name!=web") == ["db", "scratch"]
    everywhere = "/apis/proxmox.vmop.dev/v1alpha1/proxmoxvms"
    assert names(http, everywhere, fieldSelector="metadata.namespace==lab") == ["lab-vm"]
    assert names(http, everywhere, fieldSelector="metadata.namespace!=lab,metadata.name!=db") == [
        "scratch",
        "web",
    ]


def test_bad_selectors_are_400(http: HTTP) -> None:
    assert http.get(PVMS_URL, labelSelector="a in b").status_code == 400
    response = http.get(PVMS_URL, fieldSelector="spec.node=pve1")
    assert (response.status_code, response.json()["message"]) == (
        400,
        "field label not supported: spec.node",
    )
