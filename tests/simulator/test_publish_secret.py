"""`proxmox-vm-operator simulator --publish-secret`: the simulator writes the operator's
credentials Secret (with its freshly made CA) through the Kubernetes API, and keeps it so.

The Kubernetes API is the emulator, served from this process so waits are on its changes; the
simulator is the real command line in a child process, configured by a kubeconfig as a user
outside a cluster would.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import kubernetes
import pytest

from proxmox_vm_operator.cli import main
from proxmox_vm_operator.proxmox import ConnectionSettings, ProxmoxClient, ProxmoxError
from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer
from proxmox_vm_operator.simulator.publish import (
    Credentials,
    PublishError,
    SecretPublisher,
    SecretRef,
)

NAMESPACE = "proxmox-sandbox"
SECRET = "pve-sandbox"
TOKEN_ID = "root@pam!sandbox"
SERVICE_HOST = "pve-simulator.proxmox-sandbox.svc"
PUBLISHED_KEYS = {"endpoint", "tokenId", "tokenSecret", "caCert"}
SECRETS = "v1/secrets"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster:
    """The Kubernetes API emulator, with a kubeconfig and a client for it."""

    def __init__(self, server: KubeAPIServer, kubeconfig: Path) -> None:
        self.server = server
        self.kubeconfig = kubeconfig
        client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        self.core: Any = kubernetes.client.CoreV1Api(client)

    def create_namespace(self, name: str = NAMESPACE) -> None:
        self.core.create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )

    def secret(self) -> dict[str, Any] | None:
        return self.server.get_object(SECRETS, SECRET, NAMESPACE)

    def wait_for_secret(self, *, unlike: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Secret once it has data (other data than `unlike`'s, when given)."""

        def published(api: Any) -> dict[str, Any] | None:
            secret = api.get_object(SECRETS, SECRET, NAMESPACE)
            if not secret or not secret.get("data"):
                return None
            if unlike is not None and secret["data"] == unlike["data"]:
                return None
            return dict(secret)

        secret = self.server.wait_for(published, timeout=20)
        assert secret is not None
        return secret


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with KubeAPIServer() as server:
        yield Cluster(server, server.write_kubeconfig(tmp_path / "kubeconfig"))
        failures = server.call(lambda api: list(api.errors))
        assert failures == [], "the emulator failed on some requests"


class SimulatorProcess:
    """The simulator command line as a child process; its output is collected line by line."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.port = _free_port()
        env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("proxmox-vm-operator")),
                "simulator",
                "--port",
                str(self.port),
                *[arg.replace("{port}", str(self.port)) for arg in args],
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONUNBUFFERED": "1"},
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, fragment: str, timeout: float = 20) -> str:
        """Wait for a line of output (stdout or stderr) containing `fragment`."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no output line with {fragment!r}: {self.output}") from None
            if line is None:
                continue
            self.output.append(line)
            if fragment in line:
                return line

    def finish(self, timeout: float = 15, *, terminate: bool = True) -> int:
        """SIGTERM (unless it exits by itself); its exit code, with all output collected."""
        if terminate and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        finally:
            self.process.kill()
        for reader in self._readers:
            reader.join(timeout)
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self.output.append(line)
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.output)


@contextmanager
def simulator(cluster: Cluster, *args: str) -> Iterator[SimulatorProcess]:
    """A simulator publishing the Secret; it must stop cleanly and never print the secret."""
    run = SimulatorProcess(
        cluster, "--token", TOKEN_ID, "--publish-secret", f"{NAMESPACE}/{SECRET}", *args
    )
    try:
        yield run
    finally:
        code = run.finish()
    assert code == 0, run.text
    secret = cluster.secret()
    if secret and secret.get("data"):
        assert decoded(secret)["tokenSecret"] not in run.text


async def version_via(data: dict[str, str]) -> str:
    """Connect the operator's own client with exactly these Secret data; the PVE version."""
    async with ProxmoxClient(ConnectionSettings.from_secret_data(data), read_timeout=10) as client:
        return (await client.version()).version


def tls_handshake(port: int, ca_cert: str, server_name: str) -> None:
    """A verified handshake with 127.0.0.1:`port` as if it were reached as `server_name`."""
    context = ssl.create_default_context(cadata=ca_cert)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name),
    ):
        pass


# ------------------------------------------------------------------------------------- tests


async def test_the_published_secret_connects_the_operator_over_verified_tls(
    cluster: Cluster,
) -> None:
    cluster.create_namespace()
    with simulator(cluster, "--advertise-endpoint", "https://localhost:{port}") as run:
        secret = cluster.wait_for_secret()
        data = decoded(secret)
        assert set(data) == PUBLISHED_KEYS  # never insecureSkipTLSVerify
        assert secret["type"] == "Opaque"
        assert data["endpoint"] == f"https://localhost:{run.port}"
        assert data["tokenId"] == TOKEN_ID
        assert data["caCert"].startswith("-----BEGIN CERTIFICATE-----")
        assert await version_via(data) == "9.1.1"
        run.expect(f"published: Secret {NAMESPACE}/{SECRET} (created")


def test_the_server_certificate_covers_the_advertised_host_and_tls_sans(cluster: Cluster) -> None:
    cluster.create_namespace()
    advertised = f"https://{SERVICE_HOST}:8006"
    extra = "pve-simulator.proxmox-sandbox.svc.cluster.local"
    with simulator(cluster, "--advertise-endpoint", advertised, "--tls-san", extra) as run:
        data = decoded(cluster.wait_for_secret())
        assert data["endpoint"] == advertised
        tls_handshake(run.port, data["caCert"], SERVICE_HOST)
        tls_handshake(run.port, data["caCert"], extra)
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            tls_handshake(run.port, data["caCert"], "pve.example.org")


async def test_a_restarted_simulator_replaces_the_ca_in_the_same_secret(cluster: Cluster) -> None:
    cluster.create_namespace()
    port = _free_port()
    endpoint = f"https://127.0.0.1:{port}"
    with simulator(cluster, "--port", str(port), "--advertise-endpoint", endpoint):
        first = cluster.wait_for_secret()
    with simulator(cluster, "--port", str(port), "--advertise-endpoint", endpoint) as run:
        second = cluster.wait_for_secret(unlike=first)
        run.expect(f"published: Secret {NAMESPACE}/{SECRET} (updated")
        old, new = decoded(first), decoded(second)
        assert second["metadata"]["uid"] == first["metadata"]["uid"]  # updated, not recreated
        assert new["caCert"] != old["caCert"]
        assert await version_via(new) == "9.1.1"
        with pytest.raises(ProxmoxError):  # verification is on: the old CA no longer fits
            await version_via({**new, "caCert": old["caCert"]})


def test_a_placeholder_secret_is_filled_in_and_keeps_its_metadata(cluster: Cluster) -> None:
    """The sandbox overlay applies an empty Secret so the simulator needs no create right."""
    cluster.create_namespace()
    placeholder: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET,
            "labels": {"app.kubernetes.io/part-of": "proxmox-vm-operator"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "type": "Opaque",
        "data": {"insecureSkipTLSVerify": base64.b64encode(b"true").decode()},
    }
    created = cluster.core.create_namespaced_secret(NAMESPACE, placeholder)
    with simulator(cluster, "--advertise-endpoint", "https://localhost:{port}") as run:
        secret = cluster.wait_for_secret(unlike={"data": placeholder["data"]})
        run.expect("(updated;")
    assert set(decoded(secret)) == PUBLISHED_KEYS
    assert secret["metadata"]["uid"] == created.metadata.uid
    assert secret["metadata"]["labels"] == placeholder["metadata"]["labels"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in secret["metadata"]["annotations"]


def test_a_secret_edited_or_deleted_while_serving_is_put_back(cluster: Cluster) -> None:
    cluster.create_namespace()
    options = ("--advertise-endpoint", "https://localhost:{port}", "--publish-resync", "0.1")
    with simulator(cluster, *options):
        published = cluster.wait_for_secret()
        edited = {**published["data"], "insecureSkipTLSVerify": base64.b64encode(b"true").decode()}
        cluster.core.patch_namespaced_secret(SECRET, NAMESPACE, {"data": edited})
        restored = cluster.wait_for_secret(unlike={"data": edited})
        assert restored["data"] == published["data"]

        cluster.core.delete_namespaced_secret(SECRET, NAMESPACE)
        recreated = cluster.wait_for_secret()
        assert recreated["metadata"]["uid"] != published["metadata"]["uid"]
        assert recreated["data"] == published["data"]


def test_publishing_waits_for_the_namespace_to_appear(cluster: Cluster) -> None:
    with simulator(cluster, "--advertise-endpoint", "https://localhost:{port}") as run:
        line = run.expect("cannot publish Secret")
        assert f'namespaces "{NAMESPACE}" not found' in line
        assert "retrying in 1s" in line
        cluster.create_namespace()
        assert set(decoded(cluster.wait_for_secret())) == PUBLISHED_KEYS


def test_an_unwritable_secret_stops_the_simulator_with_the_reason(cluster: Cluster) -> None:
    cluster.create_namespace()
    cluster.core.create_namespaced_secret(
        NAMESPACE,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "immutable": True},
    )
    run = SimulatorProcess(
        cluster,
        *("--token", TOKEN_ID, "--publish-secret", f"{NAMESPACE}/{SECRET}"),
        *("--advertise-endpoint", "https://localhost:{port}"),
    )
    run.expect("cannot publish the credentials Secret")
    assert run.finish(terminate=False) == 1
    assert f"Secret {NAMESPACE}/{SECRET} is immutable" in run.text
    untouched = cluster.secret()
    assert untouched is not None and not untouched.get("data")


def test_a_given_token_secret_is_published_and_never_printed(cluster: Cluster) -> None:
    cluster.create_namespace()
    token_secret = "7f0c9a52-2b1e-4f7d-9b59-3c1d2a8e6f10"
    run = SimulatorProcess(
        cluster,
        *("--token", f"{TOKEN_ID}={token_secret}", "--publish-secret", f"{NAMESPACE}/{SECRET}"),
        *("--advertise-endpoint", "https://localhost:{port}"),
    )
    data = decoded(cluster.wait_for_secret())
    run.expect("published:")
    assert run.finish() == 0
    assert data["tokenSecret"] == token_secret
    assert token_secret not in run.text
    assert f"tokens: {TOKEN_ID}" in run.text


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--publish-secret", "no-slash"], "expected NAMESPACE/NAME"),
        (["--token", TOKEN_ID, "--publish-secret", "Upper/case"], "expected NAMESPACE/NAME"),
        (["--publish-secret", f"{NAMESPACE}/{SECRET}"], "needs a --token"),
        (
            ["--host", "0.0.0.0", "--token", TOKEN_ID, "--publish-secret", f"{NAMESPACE}/{SECRET}"],
            "needs --advertise-endpoint",
        ),
        (["--advertise-endpoint", "http://pve:8006"], "must start with https://"),
        (["--advertise-endpoint", "https://pve:8006/api2/json"], "must be the base URL"),
    ],
)
def test_publishing_options_are_checked_before_anything_starts(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulator", "--port", "1", *args]) == 2
    assert complaint in capsys.readouterr().err


class ForbiddingApi:
    """A CoreV1Api whose every call the API server refuses with 403, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> None:
        self.calls += 1
        message = (
            f'secrets "{name}" is forbidden: User '
            '"system:serviceaccount:proxmox-sandbox:pve-simulator" cannot get resource'
        )
        body = json.dumps({"kind": "Status", "message": message})
        raise kubernetes.client.ApiException(status=403, reason="Forbidden", body=body)


def test_a_forbidden_secret_fails_at_once_naming_the_rights_it_needs() -> None:
    api = ForbiddingApi()
    credentials = Credentials("https://localhost:8006", TOKEN_ID, "not-for-logs", "PEM")
    warnings: list[str] = []
    publisher = SecretPublisher(
        api,
        credentials,
        [SecretRef(NAMESPACE, SECRET)],
        report=warnings.append,
        warn=warnings.append,
    )
    with pytest.raises(PublishError) as raised:
        publisher.publish(threading.Event())
    assert api.calls == 1  # no retries: only a person can fix permissions
    assert "HTTP 403 Forbidden" in str(raised.value)
    assert "cannot get resource" in str(raised.value)
    assert "needs get and update on this Secret" in str(raised.value)
    assert warnings == []
