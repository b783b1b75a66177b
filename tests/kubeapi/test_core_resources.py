"""Core resources: namespaces, secrets, events (as kopf posts them)."""

from __future__ import annotations

import base64

from .helpers import HTTP


def test_initial_namespaces(http: HTTP) -> None:
    items = http.get("/api/v1/namespaces").json()["items"]
    assert [ns["metadata"]["name"] for ns in items] == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
    ]
    default = http.get("/api/v1/namespaces/default").json()
    assert (default["kind"], default["status"]["phase"]) == ("Namespace", "Active")
    assert default["metadata"]["labels"] == {"kubernetes.io/metadata.name": "default"}


def test_namespace_create_status_and_selectors(http: HTTP) -> None:
    created = http.post(
        "/api/v1/namespaces", {"metadata": {"name": "lab", "labels": {"team": "a"}}}
    )
    assert created.status_code == 201 and created.json()["spec"] == {"finalizers": ["kubernetes"]}
    assert http.get("/api/v1/namespaces/lab/status").json()["metadata"]["name"] == "lab"
    selected = http.get("/api/v1/namespaces", labelSelector="team=a").json()["items"]
    assert [ns["metadata"]["name"] for ns in selected] == ["lab"]
    phase = http.get("/api/v1/namespaces", fieldSelector="status.phase=Active").json()["items"]
    assert len(phase) == 5


def test_secret_string_data_is_encoded(http: HTTP) -> None:
    secret = {
        "metadata": {"name": "pve"},
        "stringData": {"tokenSecret": "s3cr3t"},
        "data": {"a": "Yg=="},
    }
    body = http.post("/api/v1/namespaces/default/secrets", secret).json()
    assert "stringData" not in body and body["type"] == "Opaque"
    assert (
        base64.b64decode(body["data"]["tokenSecret"]) == b"s3cr3t" and body["data"]["a"] == "Yg=="
    )


def test_events_are_posted_with_generate_name(http: HTTP) -> None:
    event = {
        "metadata": {"namespace": "default", "generateName": "kopf-event-"},
        "action": "Action", "reason": "Created", "type": "Normal", "message": "VM created",
        "involvedObject": {"kind": "ProxmoxVM", "name": "vm1", "namespace": "default"},
    }  # fmt: skip
    names = {
        http.post("/api/v1/namespaces/default/events", event).json()["metadata"]["name"]
        for _ in range(2)
    }
    assert len(names) == 2 and all(name.startswith("kopf-event-") for name in names)
    found = http.get("/api/v1/namespaces/default/events", fieldSelector="involvedObject.name=vm1")
    assert len(found.json()["items"]) == 2


def test_protobuf_bodies_are_415_with_a_hint(http: HTTP) -> None:
    response = http.request(
        "POST", "/api/v1/namespaces", b"k8s\x00...", "application/vnd.kubernetes.protobuf"
    )
    assert response.status_code == 415 and "kubectl apply" in response.json()["message"]
