"""Transport and envelope: TLS with a pinned CA, PVE's error shapes, 501s, connection closing."""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any

import pytest
import requests
from proxmoxer import ProxmoxAPI, ResourceException

from proxmox_vm_operator.simulator import Simulator

from .helpers import TOKEN_HEADER, TOKEN_SECRET, client_for, raw

MISSING_CONFIG = "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"


def test_tls_is_verified_with_the_simulator_ca_file(sim: Simulator, px: Any) -> None:
    assert sim.endpoint.startswith("https://127.0.0.1:")
    assert px.version.get() == {"version": "9.1.1", "release": "9.1", "repoid": "4e4f7a1c"}
    reply = requests.get(
        f"{sim.endpoint}/api2/json/version",
        headers={"Authorization": TOKEN_HEADER},
        verify=str(sim.ca_file),
        timeout=5,
    )
    assert reply.status_code == 200
    assert reply.json() == {"data": {"version": "9.1.1", "release": "9.1", "repoid": "4e4f7a1c"}}


def test_tls_is_rejected_without_the_ca_file(sim: Simulator) -> None:
    default_verify = ProxmoxAPI(
        sim.host, port=sim.port, user="root@pam", token_name="ci", token_value=TOKEN_SECRET
    )
    with pytest.raises(requests.exceptions.SSLError):
        default_verify.version.get()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{sim.endpoint}/api2/json/version", timeout=5)


def test_error_message_is_the_reason_phrase_and_in_the_json_body(sim: Simulator, px: Any) -> None:
    with pytest.raises(ResourceException) as failed:
        px.nodes("pve1").qemu(100).status.current.get()
    assert failed.value.status_code == 500
    assert failed.value.status_message == "Internal Server Error"
    assert failed.value.content == MISSING_CONFIG
    assert failed.value.errors is None

    reply = raw(sim, "GET", "/nodes/pve1/qemu/100/status/current")
    assert (reply.status_code, reply.reason) == (500, MISSING_CONFIG)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == {"data": None, "message": MISSING_CONFIG + "\n"}


def test_parameter_errors_add_an_errors_map(sim: Simulator, px: Any) -> None:
    with pytest.raises(ResourceException) as failed:
        px.nodes("pve1").qemu.post(vmid=100, bogus=1)
    assert failed.value.status_code == 400
    assert failed.value.content == "Parameter verification failed."
    expected = {
        "bogus": "property is not defined in schema and the schema does not allow additional"
        " properties"
    }
    assert failed.value.errors == expected

    reply = raw(sim, "POST", "/nodes/pve1/qemu", data={"vmid": "100", "bogus": "1"})
    assert (reply.status_code, reply.reason) == (400, "Parameter verification failed.")
    assert reply.json() == {
        "data": None,
        "message": "Parameter verification failed.\n",
        "errors": expected,
    }


def test_unknown_paths_are_501_not_implemented(sim: Simulator, px: Any) -> None:
    sim.add_vm(100)
    with pytest.raises(ResourceException) as failed:
        px.nodes("pve1").qemu(100).status.foo.post()
    assert failed.value.status_code == 501
    assert failed.value.content == "Method 'POST /nodes/pve1/qemu/100/status/foo' not implemented"

    reply = raw(sim, "GET", "/nodes/x/foo")
    assert (reply.status_code, reply.reason) == (501, "Method 'GET /nodes/x/foo' not implemented")
    assert reply.json() == {"data": None, "message": "Method 'GET /nodes/x/foo' not implemented\n"}
    # A known path with a method it does not have is just as unknown.
    reply = raw(sim, "DELETE", "/version")
    assert (reply.status_code, reply.reason) == (501, "Method 'DELETE /version' not implemented")
    # Authentication comes before routing.
    reply = raw(sim, "GET", "/nodes/x/foo", auth=False)
    assert (reply.status_code, reply.reason) == (401, "No ticket")


def test_only_the_first_line_of_a_message_is_the_reason_phrase(sim: Simulator) -> None:
    sim.fail_next(r"^/version$", status=500, message="first line\nsecond line")
    reply = raw(sim, "GET", "/version")
    assert (reply.status_code, reply.reason) == (500, "first line")
    assert reply.json() == {"data": None, "message": "first line\nsecond line\n"}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_body_on_get_or_delete_is_501_with_an_empty_body(sim: Simulator, method: str) -> None:
    sim.add_vm(100)
    reply = raw(sim, method, "/nodes/pve1/qemu/100", data={"purge": "1"})
    assert reply.status_code == 501
    assert reply.reason == f"Unexpected content for method '{method}'"
    assert reply.content == b""
    assert sim.vm_exists(100)


def _exchange(sim: Simulator, payload: bytes) -> bytes:
    """Send raw HTTP over TLS and read until the server closes (or 5 s pass: a test failure)."""
    context = ssl.create_default_context(cafile=str(sim.ca_file))
    with (
        socket.create_connection((sim.host, sim.port), timeout=5) as plain,
        context.wrap_socket(plain, server_hostname=sim.host) as tls,
    ):
        tls.sendall(payload)
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
        return received


def _request(path: str) -> bytes:
    return (
        f"GET /api2/json{path} HTTP/1.1\r\nHost: pve\r\nAuthorization: {TOKEN_HEADER}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()


def test_replies_of_400_and_above_close_the_connection(sim: Simulator) -> None:
    # Pipelined on one keep-alive connection: the 200 keeps it open, the 500 closes it, so
    # the third request is never answered and the server ends the stream (no read timeout).
    stream = _exchange(
        sim,
        _request("/version") + _request("/nodes/pve1/qemu/100/status/current") + _request("/"),
    )
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ([^\r]*)\r\n", stream)
    assert statuses == [(b"200", b"OK"), (b"500", MISSING_CONFIG.encode())]
    assert b"Connection: close" in stream.split(b"HTTP/1.1 500")[1]


def test_one_simulators_ca_does_not_verify_another(sim: Simulator) -> None:
    other = Simulator(tokens={"root@pam!ci": TOKEN_SECRET}).start()
    try:
        pinned_wrong = ProxmoxAPI(
            other.host,
            port=other.port,
            user="root@pam",
            token_name="ci",
            token_value=TOKEN_SECRET,
            verify_ssl=str(sim.ca_file),
        )
        with pytest.raises(requests.exceptions.SSLError):
            pinned_wrong.version.get()
        assert client_for(other).version.get()["version"] == "9.1.1"
    finally:
        other.stop()
