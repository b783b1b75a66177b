"""The official `kubernetes` Python client against the threaded server, via a kubeconfig."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from .helpers import manifest, vm

GROUP, VERSION, PLURAL = "proxmox.vmop.dev", "v1alpha1", "proxmoxvms"


@pytest.fixture
def api_client(server: KubeAPIServer, tmp_path: pathlib.Path) -> Iterator[client.ApiClient]:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    with config.new_client_from_config(config_file=str(kubeconfig)) as api_client:
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(
            manifest("proxmoxvm-crd.yaml")
        )
        yield api_client


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create(custom: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, body
    )
    return created


def test_crd_is_readable_as_a_typed_model(api_client: client.ApiClient) -> None:
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(
        "proxmoxvms.proxmox.vmop.dev"
    )
    assert crd.spec.names.short_names == ["pvm"]
    assert [c.type for c in crd.status.conditions] == ["NamesAccepted", "Established"]


def test_custom_object_lifecycle(custom: client.CustomObjectsApi) -> None:
    created = create(custom, vm(labels={"tier": "front"}))
    read = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "vm1")
    assert read == created
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "vm1", {"spec": {"cores": 4}}
    )
    assert patched["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "vm1", {"status": {"phase": "Running"}}
    )
    assert status["status"] == {"phase": "Running"}
    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, label_selector="tier=front"
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == ["vm1"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "vm1")
    with pytest.raises(ApiException) as error:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "vm1")
    assert error.value.status == 404


def test_conflicts_are_409(custom: client.CustomObjectsApi) -> None:
    stale = create(custom, vm())
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "vm1", {"spec": {"cores": 4}}
    )
    with pytest.raises(ApiException) as error:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "vm1", stale)
    assert (error.value.status, error.value.reason) == (409, "Conflict")
    with pytest.raises(ApiException) as error:
        create(custom, vm())
    assert error.value.status == 409


def test_watch_stream(custom: client.CustomObjectsApi) -> None:
    list_rv = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"][
        "resourceVersion"
    ]
    create(custom, vm("a"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "a")
    events = watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
        resource_version=list_rv, timeout_seconds=5,
    )  # fmt: skip
    seen = [(next(events)["type"]), next(events)["type"]]
    events.close()
    assert seen == ["ADDED", "DELETED"]


def test_core_api(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    assert "default" in [ns.metadata.name for ns in core.list_namespace().items]
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "pve"}, "stringData": {"tokenId": "a@pam!b"}}
    )
    core.patch_namespaced_secret(
        "pve", "default", {"metadata": {"labels": {"x": "y"}}}
    )  # strategic merge
    secret = core.read_namespaced_secret("pve", "default")
    assert secret.data == {"tokenId": "YUBwYW0hYg=="} and secret.metadata.labels == {"x": "y"}
    core.delete_namespaced_secret("pve", "default")
    assert core.list_namespaced_secret("default").items == []
