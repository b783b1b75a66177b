"""Publish the simulator's connection details as the operator's credentials Secret.

The simulator makes a new CA each time it starts, so no manifest can carry its ``caCert``. With
``--publish-secret NAMESPACE/NAME`` the simulator writes that Secret itself once it serves,
with the keys of the credentials Secret (docs/api.md, "The credentials Secret"): ``endpoint``
(the advertised URL, e.g. the in-cluster Service name), ``tokenId``, ``tokenSecret`` and
``caCert``. TLS verification stays on: the Secret never carries ``insecureSkipTLSVerify``.

Ownership: the simulator owns the Secret's ``data`` whole (keys other than these are dropped;
a leftover ``insecureSkipTLSVerify`` would contradict ``caCert``) and keeps its labels and
annotations, so a placeholder applied by kubectl, kustomize or Argo CD stays theirs. A restart
replaces the CA in place; while serving, the simulator checks the Secret again every resync
interval and puts it back if it was edited or deleted. An unchanged Secret is never written,
so the operator does not rebuild its clients for nothing.

Kubernetes access: the pod's service account in a cluster, else the kubeconfig (``KUBECONFIG``
or ``~/.kube/config``). It needs ``get`` and ``update`` on the Secret, and ``create`` only when
the Secret does not exist yet.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import kubernetes

REQUEST_TIMEOUT = 10.0
PUBLISHED_BY = "proxmox.vmop.dev/published-by"
PUBLISHER = "proxmox-vm-operator simulator"
# Statuses no retry can fix: a bad request, missing or insufficient credentials, an invalid or
# immutable object. Everything else (no connection, 404 for a namespace still being created,
# 409, 429, 5xx) is retried.
_PERMANENT = frozenset({400, 401, 403, 422})
_CONFLICT_ATTEMPTS = 5

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

Outcome = Literal["created", "updated", "unchanged"]


class PublishError(Exception):
    """Publishing cannot succeed until a person changes something (permissions, names)."""


@dataclass(frozen=True)
class SecretRef:
    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        namespace, sep, name = text.partition("/")
        if (
            not sep
            or not _DNS_LABEL.fullmatch(namespace)
            or not _DNS_SUBDOMAIN.fullmatch(name)
            or len(name) > 253
        ):
            raise ValueError(f"expected NAMESPACE/NAME in lower-case DNS names, got {text!r}")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Credentials:
    endpoint: str
    token_id: str
    token_secret: str = field(repr=False)
    ca_cert: str

    def secret_data(self) -> dict[str, str]:
        """The Secret's ``data``: the credentials Secret's keys, base64-encoded."""
        plain = {
            "endpoint": self.endpoint,
            "tokenId": self.token_id,
            "tokenSecret": self.token_secret,
            "caCert": self.ca_cert,
        }
        return {key: base64.b64encode(value.encode()).decode() for key, value in plain.items()}


def advertised_host(endpoint: str) -> str:
    """The host name of an ``https://HOST[:PORT]`` endpoint; `ValueError` for anything else."""
    parts = urlsplit(endpoint)
    if parts.scheme != "https":
        raise ValueError(f"must start with https://, got {endpoint!r}")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ValueError(f"has an invalid port: {endpoint!r}") from None
    if not parts.hostname or "@" in parts.netloc:
        raise ValueError(f"must name a host and no credentials: {endpoint!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"must be the base URL https://HOST[:PORT], got {endpoint!r}")
    return parts.hostname


def core_api() -> Any:
    """A ``CoreV1Api`` for the pod's service account, else for the kubeconfig."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise PublishError(
                f"no Kubernetes API to publish to: not in a cluster and no usable kubeconfig "
                f"({exc})"
            ) from None
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


class _Retry(Exception):
    """A failure worth retrying; the message is safe to print."""


def _say(message: str) -> None:
    print(message, flush=True)


def _complain(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SecretPublisher:
    """Writes `credentials` into the Secrets `targets` and keeps them so."""

    def __init__(
        self,
        api: Any,
        credentials: Credentials,
        targets: Sequence[SecretRef],
        *,
        report: Callable[[str], None] = _say,
        warn: Callable[[str], None] = _complain,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._api = api
        self._credentials = credentials
        self._targets = list(targets)
        self._report = report
        self._warn = warn
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff

    def publish(self, stop: threading.Event) -> bool:
        """Publish to every target, retrying transient failures with capped backoff.

        Returns True once all are published, False when `stop` was set first; raises
        `PublishError` on a failure no retry can fix.
        """
        delay = self._initial_backoff
        for ref in self._targets:
            while True:
                try:
                    outcome = self._sync(ref)
                except _Retry as exc:
                    self._warn(f"cannot publish Secret {ref} yet: {exc}; retrying in {delay:g}s")
                    if stop.wait(delay):
                        return False
                    delay = min(delay * 2, self._max_backoff)
                    continue
                self._published(ref, outcome)
                delay = self._initial_backoff
                break
        return True

    def resync(self, stop: threading.Event, interval: float) -> None:
        """Until `stop` is set, put back every `interval` seconds what was changed or deleted."""
        while not stop.wait(interval):
            for ref in self._targets:
                try:
                    outcome = self._sync(ref)
                except (_Retry, PublishError) as exc:
                    self._warn(f"cannot resync Secret {ref}: {exc}; next try in {interval:g}s")
                    continue
                if outcome != "unchanged":
                    self._published(ref, outcome)

    def _published(self, ref: SecretRef, outcome: Outcome) -> None:
        self._report(
            f"published: Secret {ref} ({outcome}; endpoint {self._credentials.endpoint}, "
            f"token {self._credentials.token_id})"
        )

    def _sync(self, ref: SecretRef) -> Outcome:
        """One attempt: create the Secret, or update it when its data differ."""
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                return self._write(ref)
            except kubernetes.client.ApiException as exc:
                if exc.status == 409:  # changed meanwhile, or created by someone else: again
                    continue
                raise self._classify(ref, exc) from None
            except PublishError:
                raise
            except Exception as exc:  # no connection, timeouts, TLS problems of the client
                raise _Retry(f"{type(exc).__name__}: {self._redact(str(exc))}") from None
        raise _Retry("the Secret kept changing while it was written (HTTP 409)")

    def _write(self, ref: SecretRef) -> Outcome:
        desired = self._credentials.secret_data()
        client = kubernetes.client
        try:
            current = self._api.read_namespaced_secret(
                ref.name, ref.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=ref.name, namespace=ref.namespace, annotations={PUBLISHED_BY: PUBLISHER}
                ),
                type="Opaque",
                data=dict[str, bytes | str](desired),
            )
            self._api.create_namespaced_secret(
                ref.namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
            return "created"
        if current.type not in (None, "Opaque"):
            raise PublishError(f"Secret {ref} has type {current.type}; it must be Opaque")
        if current.immutable:
            raise PublishError(f"Secret {ref} is immutable; delete it to let it be published")
        if (current.data or {}) == desired:
            return "unchanged"
        current.data = desired
        current.string_data = None
        current.metadata.annotations = {
            **(current.metadata.annotations or {}),
            PUBLISHED_BY: PUBLISHER,
        }
        self._api.replace_namespaced_secret(
            ref.name, ref.namespace, current, _request_timeout=REQUEST_TIMEOUT
        )
        return "updated"

    def _classify(self, ref: SecretRef, exc: Any) -> Exception:
        message = f"HTTP {exc.status} {exc.reason}"
        detail = _status_message(exc.body)
        if detail:
            message += f": {self._redact(detail)}"
        if exc.status == 403:
            message += (
                " (the simulator needs get and update on this Secret, and create while it does "
                "not exist; the sandbox overlay applies it empty)"
            )
        if exc.status in _PERMANENT:
            return PublishError(f"Secret {ref}: {message}")
        return _Retry(message)

    def _redact(self, text: str) -> str:
        return text.replace(self._credentials.token_secret, "(token secret)")


def _status_message(body: object) -> str:
    """The ``message`` of a Kubernetes ``Status`` reply, when the body is one."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str):
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) else ""


def keep_published(
    credentials: Credentials,
    targets: Sequence[SecretRef],
    stop: threading.Event,
    *,
    resync_interval: float,
) -> None:
    """Publish, then keep the Secrets as published until `stop` is set (the command line).

    Raises `PublishError` when the first publication cannot succeed.
    """
    publisher = SecretPublisher(core_api(), credentials, targets)
    if publisher.publish(stop):
        publisher.resync(stop, resync_interval)
