"""A tiny Proxmox-shaped HTTPS server that records what goes over the wire.

It answers only what a test scripted (`fake_pve.reply(...)`), in PVE's envelope: the error
text as the HTTP reason phrase, `{"data": ...}` bodies, and a closed connection after errors.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN_ID = "root@pam!ci"
TOKEN_SECRET = "9d2f3c1e-7b4a-4e8c-a1d5-0f6e2b7c9a13"
UPID = "UPID:pve1:0001A2B3:00C8D7E6:6740A3F1:qmstop:100:root@pam!ci:"


@dataclass(frozen=True)
class Pki:
    cert_pem: str
    cert_file: Path
    key_file: Path


def make_pki(directory: Path) -> Pki:
    """A self-signed certificate for 127.0.0.1, like a fresh PVE node's pve-ssl.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_text(cert_pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(cert_pem, cert_file, key_file)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # below /api2/json, percent-decoded
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    data: Any = None
    reason: str | None = None  # PVE puts its error text here
    errors: dict[str, str] | None = None
    raw_body: bytes | None = None


Responder = Reply | Callable[[Recorded], Reply]


@dataclass
class FakePve:
    endpoint: str = ""
    requests: list[Recorded] = field(default_factory=list)
    routes: dict[tuple[str, str], Responder] = field(default_factory=dict)
    # Called (in the server thread) as soon as a request has been recorded.
    on_request: Callable[[Recorded], None] | None = None

    def reply(self, method: str, path: str, responder: Responder) -> None:
        self.routes[(method, path)] = responder

    def answer(self, request: Recorded) -> Reply:
        responder = self.routes.get((request.method, request.path))
        if responder is None:
            return Reply(501, reason=f"Method '{request.method} {request.path}' not implemented")
        return responder(request) if callable(responder) else responder


def _handler_for(fake: FakePve) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle()

        do_POST = do_PUT = do_DELETE = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            request = Recorded(
                method=self.command,
                path=unquote(url.path).removeprefix("/api2/json"),
                query=parse_qs(url.query),
                form=parse_qs(body),
                headers=dict(self.headers.items()),
            )
            fake.requests.append(request)
            if fake.on_request:
                fake.on_request(request)
            reply = fake.answer(request)
            if reply.raw_body is not None:
                payload = reply.raw_body
            else:
                envelope: dict[str, Any] = {"data": reply.data}
                if reply.status >= 400:
                    envelope["message"] = f"{reply.reason}\n"
                if reply.errors:
                    envelope["errors"] = reply.errors
                payload = json.dumps(envelope).encode()
            self.send_response(reply.status, reply.reason)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            if reply.status >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def serve(pki: Pki) -> Iterator[FakePve]:
    fake = FakePve()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.endpoint = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port that nothing listens on (just released by us)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def in_turn(*replies: Reply) -> Callable[[Recorded], Reply]:
    """Answer with each reply in turn, then keep repeating the last one."""
    remaining = list(replies)

    def respond(request: Recorded) -> Reply:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return respond
