"""Connection settings, parsed and validated from the credentials Secret's keys: endpoint,
tokenId and tokenSecret, optionally caCert or insecureSkipTLSVerify (docs/api.md)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from pydantic import BaseModel, ConfigDict, SecretStr

DEFAULT_PORT = 8006

# pve-access-control: user `[^\s:/]+` (may itself contain '@'), realm and token name
# `[A-Za-z][A-Za-z0-9.\-_]+`.
_TOKEN_ID = re.compile(
    r"(?P<user>[^\s:/!]+@[A-Za-z][A-Za-z0-9.\-_]+)!(?P<name>[A-Za-z][A-Za-z0-9.\-_]+)"
)
# The secret goes into an HTTP header: printable ASCII only, so requests never has to complain
# about it (its complaint would quote the header value).
_TOKEN_SECRET = re.compile(r"[\x21-\x7e]+")


class InvalidConnectionSettings(ValueError):
    """The Secret cannot be used; `problems` lists every reason, none quoting the token secret."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid Proxmox connection Secret: " + "; ".join(problems))


class ConnectionSettings(BaseModel):
    """Where and how to reach one Proxmox VE cluster. Build it with `from_secret_data`."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = DEFAULT_PORT
    path_prefix: str | None = None
    token_user: str  # user@realm
    token_name: str
    token_secret: SecretStr
    ca_cert_pem: str | None = None
    insecure_skip_tls_verify: bool = False

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = f"/{self.path_prefix}" if self.path_prefix else ""
        return f"https://{host}:{self.port}{prefix}"

    @property
    def token_id(self) -> str:
        return f"{self.token_user}!{self.token_name}"

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> ConnectionSettings:
        """Parse the Secret's decoded string data; raise `InvalidConnectionSettings`."""
        values = {key: value.strip() for key, value in data.items() if value and value.strip()}
        problems = [f"missing key {key!r}" for key in _REQUIRED if key not in values]
        secret = values.get("tokenSecret", "")

        def show(value: str) -> str:
            if secret and secret in value:
                return "(value hidden: it contains the token secret)"
            return repr(value)

        if secret and not _TOKEN_SECRET.fullmatch(secret):
            problems.append("tokenSecret must be printable ASCII without spaces")

        token = _TOKEN_ID.fullmatch(values.get("tokenId", ""))
        if "tokenId" in values and not token:
            hint = " without the secret" if "=" in values["tokenId"] else ""
            problems.append(f"tokenId must look like user@realm!tokenname{hint}")

        endpoint = None
        if "endpoint" in values:
            endpoint = _parse_endpoint(values["endpoint"], show, problems)

        insecure = values.get("insecureSkipTLSVerify", "false").lower()
        if insecure not in ("true", "false"):
            problems.append("insecureSkipTLSVerify must be 'true' or 'false'")
        ca_cert = values.get("caCert")
        if ca_cert is not None:
            try:
                x509.load_pem_x509_certificates(ca_cert.encode())
            except ValueError:
                problems.append("caCert is not a PEM-encoded X.509 certificate")
            if insecure == "true":
                problems.append("set either caCert or insecureSkipTLSVerify, not both")

        if problems or token is None or endpoint is None:
            raise InvalidConnectionSettings(problems)
        host, port, path_prefix = endpoint
        return cls(
            host=host,
            port=port,
            path_prefix=path_prefix,
            token_user=token["user"],
            token_name=token["name"],
            token_secret=SecretStr(secret),
            ca_cert_pem=ca_cert,
            insecure_skip_tls_verify=insecure == "true",
        )


_REQUIRED = ("endpoint", "tokenId", "tokenSecret")


def _parse_endpoint(
    raw: str, show: Callable[[str], str], problems: list[str]
) -> tuple[str, int, str | None] | None:
    """(host, port, path prefix), or None after appending the reason to `problems`."""
    parts = urlsplit(raw)
    if "@" in parts.netloc:
        problems.append("endpoint must not contain credentials; use tokenId and tokenSecret")
        return None
    if parts.scheme.lower() != "https":
        problems.append(
            f"endpoint must start with https:// (Proxmox VE serves its API over TLS only), "
            f"got {show(raw)}"
        )
        return None
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        problems.append(f"endpoint has an invalid port: {show(raw)}")
        return None
    if not parts.hostname:
        problems.append(f"endpoint has no host name: {show(raw)}")
        return None
    if parts.query or parts.fragment:
        problems.append(f"endpoint must not have a query or fragment: {show(raw)}")
        return None
    prefix = parts.path.strip("/")
    if "api2" in prefix.split("/"):
        problems.append(
            f"endpoint is the server's base URL, without /api2/json: expected "
            f"https://host:8006, got {show(raw)}"
        )
        return None
    return parts.hostname, port, prefix or None
