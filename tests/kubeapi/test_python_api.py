"""The Python side: the threaded server's helpers, the in-loop `serve()`, kmock reactions."""

from __future__ import annotations

import pathlib

import aiohttp
import pytest
import yaml

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIEmulator, KubeAPIServer, serve

from .helpers import HTTP, PVMS, PVMS_URL, vm


def test_kubeconfig_points_at_the_server(server: KubeAPIServer, tmp_path: pathlib.Path) -> None:
    config = yaml.safe_load(server.write_kubeconfig(tmp_path / "kc", namespace="lab").read_text())
    assert config["clusters"][0]["cluster"]["server"] == server.url
    assert config["contexts"][0]["context"]["namespace"] == "lab"
    assert config["current-context"] == config["contexts"][0]["name"]


@pytest.mark.usefixtures("crd")
def test_objects_are_readable_and_seedable_from_python(server: KubeAPIServer, http: HTTP) -> None:
    seeded = server.create_object(PVMS, vm(), namespace="default")
    assert http.get(f"{PVMS_URL}/vm1").json() == seeded
    http.patch(f"{PVMS_URL}/vm1", {"spec": {"cores": 3}})
    assert server.get_object(PVMS, "vm1", "default")["spec"]["cores"] == 3
    assert [o["metadata"]["name"] for o in server.list_objects(PVMS)] == ["vm1"]
    http.delete(f"{PVMS_URL}/vm1")
    assert [v and v["spec"]["cores"] for v in server.history(PVMS, "vm1", "default")] == [
        2,
        3,
        3,
        None,
    ]
    assert server.call(
        lambda api: api.objects[PVMS, "default", "vm1"].history[0] >= {"spec": {"cores": 2}}
    )


@pytest.mark.usefixtures("crd")
def test_wait_for_returns_the_truthy_result_or_times_out(server: KubeAPIServer) -> None:
    server.create_object(PVMS, vm(), namespace="default")
    found = server.wait_for(lambda api: api.get_object(PVMS, "vm1", "default"), timeout=1)
    assert found["metadata"]["name"] == "vm1"
    with pytest.raises(TimeoutError):
        server.wait_for(lambda api: api.get_object(PVMS, "vm2", "default"), timeout=0.1)


@pytest.mark.usefixtures("crd")
def test_kmock_reactions_take_precedence_for_fault_injection(
    server: KubeAPIServer, http: HTTP
) -> None:
    server.call(lambda api: api["patch"][:1] << 503)
    assert http.patch(f"{PVMS_URL}/vm1", {}).status_code == 503
    assert http.patch(f"{PVMS_URL}/vm1", {}).status_code == 404  # the emulator again


def test_server_stops_and_frees_its_port() -> None:
    with KubeAPIServer() as server:
        url = server.url
    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(OSError):  # requests.ConnectionError
        HTTP(url).get("/version")


async def test_serve_in_the_current_loop() -> None:
    async with serve() as (emulator, url), aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/namespaces/default") as response:
            assert (await response.json())["metadata"]["name"] == "default"
        assert emulator.get_object("v1/namespaces", "default") is not None


@pytest.mark.kmock(cls=KubeAPIEmulator)
async def test_as_the_class_of_kmocks_own_fixture(kmock: KubeAPIEmulator) -> None:
    secret = {"metadata": {"name": "pve"}, "stringData": {"a": "b"}}
    assert (await kmock.post("/api/v1/namespaces/default/secrets", json=secret)).status == 201
    assert kmock.objects["v1/secrets", "default", "pve"] >= {"data": {"a": "Yg=="}}
