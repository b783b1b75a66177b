"""The token secret never shows in reprs, exception texts or logs."""

from __future__ import annotations

import logging

import pytest

from proxmox_vm_operator.proxmox import (
    ConnectionSettings,
    InvalidConnectionSettings,
    ProxmoxClient,
    ProxmoxError,
)

from .pve_wire import TOKEN_SECRET, FakePve, Reply, closed_port


def assert_hidden(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), *map(str, exc.args)):
        assert TOKEN_SECRET not in text


async def test_client_errors_and_logs_never_contain_the_secret(
    fake_pve: FakePve,
    client: ProxmoxClient,
    secret_data: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_pve.reply("GET", "/version", Reply(401, reason="Authentication failed!", raw_body=b""))
    fake_pve.reply("GET", "/cluster/resources", Reply(200, raw_body=b"<html>"))
    fake_pve.reply(
        "POST",
        "/nodes/pve1/qemu/9000/clone",
        Reply(400, reason="Parameter verification failed.", errors={"newid": "VM 100 exists"}),
    )
    unreachable = ProxmoxClient(
        ConnectionSettings.from_secret_data(
            {**secret_data, "endpoint": f"https://127.0.0.1:{closed_port()}"}
        )
    )
    attempts = [
        client.version(),
        client.list_vms(),
        client.clone_vm("pve1", 9000, 100),
        client.create_vm("pve1", 100, {"skiplock": 1}),
        client.task_status("not-a-upid"),
        unreachable.version(),
    ]
    raised: list[BaseException] = []
    for attempt in attempts:
        with pytest.raises(ProxmoxError) as error:
            await attempt
        raised.append(error.value)
    unreachable.close()

    assert len(raised) == 6
    for exc in raised:
        assert_hidden(exc)
    assert caplog.records, "expected the client and urllib3 to log at DEBUG"
    assert TOKEN_SECRET not in caplog.text
    assert TOKEN_SECRET not in repr(client)


def test_settings_errors_never_contain_the_secret() -> None:
    bad_inputs = [
        {"tokenSecret": TOKEN_SECRET},
        {"endpoint": f"http://{TOKEN_SECRET}:8006", "tokenId": "x", "tokenSecret": TOKEN_SECRET},
        {"endpoint": "https://pve", "tokenId": f"root@pam!op={TOKEN_SECRET}",
         "tokenSecret": TOKEN_SECRET},
        {"endpoint": f"https://pve/{TOKEN_SECRET}/api2/json", "tokenId": "root@pam!op",
         "tokenSecret": TOKEN_SECRET},
        {"endpoint": "https://pve", "tokenId": "root@pam!op", "tokenSecret": TOKEN_SECRET,
         "caCert": TOKEN_SECRET, "insecureSkipTLSVerify": TOKEN_SECRET},
    ]  # fmt: skip
    for data in bad_inputs:
        with pytest.raises(InvalidConnectionSettings) as raised:
            ConnectionSettings.from_secret_data(data)
        assert_hidden(raised.value)
