"""Over real TLS: certificates are verified unless told otherwise, and the token is sent."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from proxmox_vm_operator.proxmox import (
    ConnectionSettings,
    ErrorKind,
    ProxmoxClient,
    RejectedError,
    UnauthorizedError,
    UnreachableError,
)

from .pve_wire import TOKEN_SECRET, FakePve, Reply

VERSION = Reply(data={"version": "9.1.1", "release": "9.1", "repoid": "14a22df"})


def client_for(data: dict[str, str]) -> ProxmoxClient:
    return ProxmoxClient(ConnectionSettings.from_secret_data(data), read_timeout=10)


async def test_a_self_signed_server_is_refused_without_its_ca(
    fake_pve: FakePve, secret_data: dict[str, str]
) -> None:
    fake_pve.reply("GET", "/version", VERSION)
    del secret_data["caCert"]
    async with client_for(secret_data) as proxmox:
        with pytest.raises(UnreachableError, match="TLS"):
            await proxmox.version()
    assert fake_pve.requests == []


async def test_the_ca_certificate_from_the_secret_verifies_the_server(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", "/version", VERSION)
    assert (await client.version()).version == "9.1.1"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_insecure_skips_verification_only_when_asked(
    fake_pve: FakePve, secret_data: dict[str, str]
) -> None:
    fake_pve.reply("GET", "/version", VERSION)
    del secret_data["caCert"]
    async with client_for({**secret_data, "insecureSkipTLSVerify": "true"}) as proxmox:
        assert (await proxmox.version()).version == "9.1.1"


async def test_the_api_token_goes_in_the_authorization_header(
    fake_pve: FakePve, client: ProxmoxClient
) -> None:
    fake_pve.reply("GET", "/version", VERSION)
    await client.version()
    [request] = fake_pve.requests
    assert request.headers["Authorization"] == f"PVEAPIToken=root@pam!ci={TOKEN_SECRET}"
    assert "Cookie" not in request.headers
    assert "CSRFPreventionToken" not in request.headers


async def test_a_refused_token_is_unauthorized(fake_pve: FakePve, client: ProxmoxClient) -> None:
    fake_pve.reply("GET", "/version", Reply(401, reason="Authentication failed!", raw_body=b""))
    with pytest.raises(UnauthorizedError) as raised:
        await client.version()
    assert raised.value.kind is ErrorKind.UNAUTHORIZED
    assert raised.value.status_code == 401


def test_the_ca_file_is_private_and_removed_on_close(secret_data: dict[str, str]) -> None:
    proxmox = client_for(secret_data)
    assert proxmox.ca_file is not None
    ca_file = Path(proxmox.ca_file)
    assert ca_file.read_text() == secret_data["caCert"].strip()
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o600
    proxmox.close()
    assert not ca_file.exists()
    proxmox.close()  # idempotent


async def test_a_path_prefix_is_put_in_front_of_api2_json(
    fake_pve: FakePve, secret_data: dict[str, str]
) -> None:
    async with client_for({**secret_data, "endpoint": f"{fake_pve.endpoint}/pve"}) as proxmox:
        with pytest.raises(RejectedError, match="not implemented"):
            await proxmox.version()
    assert fake_pve.requests[0].path == "/pve/api2/json/version"
