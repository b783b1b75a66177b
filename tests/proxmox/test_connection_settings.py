"""ConnectionSettings.from_secret_data: validation, defaults and a token secret that never shows."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.proxmox import ConnectionSettings, InvalidConnectionSettings

from .pve_wire import TOKEN_SECRET, Pki

VALID = {
    "endpoint": "https://pve.example.org:8006",
    "tokenId": "root@pam!operator",
    "tokenSecret": TOKEN_SECRET,
}


def problems_of(data: dict[str, str]) -> str:
    with pytest.raises(InvalidConnectionSettings) as raised:
        ConnectionSettings.from_secret_data(data)
    message = str(raised.value)
    assert TOKEN_SECRET not in message
    assert TOKEN_SECRET not in repr(raised.value)
    return message


def test_a_minimal_secret_verifies_tls_with_the_system_store() -> None:
    settings = ConnectionSettings.from_secret_data(VALID)
    assert (settings.host, settings.port, settings.path_prefix) == ("pve.example.org", 8006, None)
    assert (settings.token_user, settings.token_name) == ("root@pam", "operator")
    assert settings.token_id == "root@pam!operator"
    assert settings.token_secret.get_secret_value() == TOKEN_SECRET
    assert settings.ca_cert_pem is None
    assert settings.insecure_skip_tls_verify is False
    assert settings.endpoint == "https://pve.example.org:8006"


def test_values_are_trimmed_so_a_trailing_newline_from_base64_does_not_break_the_header() -> None:
    settings = ConnectionSettings.from_secret_data({**VALID, "tokenSecret": TOKEN_SECRET + "\n"})
    assert settings.token_secret.get_secret_value() == TOKEN_SECRET


def test_the_port_defaults_to_8006_and_a_path_prefix_is_kept() -> None:
    settings = ConnectionSettings.from_secret_data(
        {**VALID, "endpoint": "https://proxy.example.org/pve/"}
    )
    assert (settings.port, settings.path_prefix) == (8006, "pve")
    assert settings.endpoint == "https://proxy.example.org:8006/pve"


def test_an_ipv6_endpoint_keeps_its_brackets_in_the_endpoint() -> None:
    settings = ConnectionSettings.from_secret_data({**VALID, "endpoint": "https://[fd00::5]:8443"})
    assert (settings.host, settings.port) == ("fd00::5", 8443)
    assert settings.endpoint == "https://[fd00::5]:8443"


def test_a_user_name_may_itself_contain_an_at_sign() -> None:
    settings = ConnectionSettings.from_secret_data(
        {**VALID, "tokenId": "ops@example.com@pve!k8s-op"}
    )
    assert (settings.token_user, settings.token_name) == ("ops@example.com@pve", "k8s-op")


@pytest.mark.parametrize("key", ["endpoint", "tokenId", "tokenSecret"])
@pytest.mark.parametrize("absent_as", ["missing", "empty"])
def test_each_required_key_is_reported_when_missing_or_empty(key: str, absent_as: str) -> None:
    data = dict(VALID)
    if absent_as == "missing":
        del data[key]
    else:
        data[key] = "  "
    assert f"missing key '{key}'" in problems_of(data)


def test_every_problem_is_reported_at_once() -> None:
    error = problems_of({"endpoint": "http://pve:8006", "tokenId": "root"})
    assert "missing key 'tokenSecret'" in error
    assert "https://" in error
    assert "tokenId must look like user@realm!tokenname" in error


@pytest.mark.parametrize(
    ("endpoint", "complaint"),
    [
        ("http://pve.example.org:8006", "must start with https://"),
        ("pve.example.org:8006", "must start with https://"),
        ("https://pve.example.org:99999", "invalid port"),
        ("https://:8006", "no host name"),
        ("https://pve.example.org:8006/?x=1", "query or fragment"),
        ("https://pve.example.org:8006/api2/json", "without /api2/json"),
        ("https://root:pw@pve.example.org:8006", "must not contain credentials"),
    ],
)
def test_a_bad_endpoint_is_explained(endpoint: str, complaint: str) -> None:
    assert complaint in problems_of({**VALID, "endpoint": endpoint})


def test_credentials_in_the_endpoint_are_not_echoed() -> None:
    assert "pw@" not in problems_of({**VALID, "endpoint": "https://root:pw@pve:8006"})


@pytest.mark.parametrize(
    "token_id", ["root@pam", "root!op", "root@pam!", "@pam!op", "root@pam!op extra", "root@1!op"]
)
def test_a_token_id_outside_the_grammar_is_refused(token_id: str) -> None:
    assert "tokenId must look like user@realm!tokenname" in problems_of(
        {**VALID, "tokenId": token_id}
    )


def test_a_token_id_with_the_secret_pasted_in_is_refused_without_echoing_it() -> None:
    message = problems_of({**VALID, "tokenId": f"root@pam!operator={TOKEN_SECRET}"})
    assert "without the secret" in message


def test_a_secret_pasted_into_the_endpoint_is_not_echoed() -> None:
    message = problems_of({**VALID, "endpoint": f"http://pve:8006/{TOKEN_SECRET}"})
    assert "value hidden" in message


def test_a_token_secret_that_cannot_go_into_a_header_is_refused() -> None:
    message = problems_of({**VALID, "tokenSecret": "abc def\x01"})
    assert "tokenSecret must be printable ASCII without spaces" in message
    assert "abc def" not in message


@pytest.mark.parametrize(("value", "insecure"), [("true", True), ("TRUE", True), ("false", False)])
def test_tls_verification_is_off_only_when_explicitly_true(value: str, insecure: bool) -> None:
    settings = ConnectionSettings.from_secret_data({**VALID, "insecureSkipTLSVerify": value})
    assert settings.insecure_skip_tls_verify is insecure


@pytest.mark.parametrize("value", ["yes", "1", "on"])
def test_an_ambiguous_insecure_flag_is_refused(value: str) -> None:
    assert "insecureSkipTLSVerify must be 'true' or 'false'" in problems_of(
        {**VALID, "insecureSkipTLSVerify": value}
    )


def test_a_ca_certificate_is_kept(pki: Pki) -> None:
    settings = ConnectionSettings.from_secret_data({**VALID, "caCert": pki.cert_pem})
    assert settings.ca_cert_pem == pki.cert_pem.strip()


def test_a_ca_certificate_that_is_not_pem_is_refused() -> None:
    assert "caCert is not a PEM-encoded X.509 certificate" in problems_of(
        {**VALID, "caCert": "not a certificate"}
    )


def test_a_ca_certificate_together_with_insecure_is_contradictory(pki: Pki) -> None:
    assert "not both" in problems_of(
        {**VALID, "caCert": pki.cert_pem, "insecureSkipTLSVerify": "true"}
    )


def test_the_token_secret_never_shows_in_repr_str_or_dumps() -> None:
    settings = ConnectionSettings.from_secret_data(VALID)
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert TOKEN_SECRET not in text
    assert "**********" in repr(settings)
