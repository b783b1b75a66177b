"""The operator's own Kubernetes reads (kopf does the rest): Secrets, through the official client.

The one place that configures and calls the ``kubernetes`` package; calls run in a worker
thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass

import kubernetes


class SecretUnavailable(Exception):
    """The Secret cannot be read; the message names it and never its contents."""


@dataclass(frozen=True)
class SecretData:
    resource_version: str
    data: dict[str, str]


def configure() -> None:
    """Use the in-cluster service account, or the kubeconfig outside a cluster."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def _read_secret(namespace: str, name: str) -> SecretData:
    api = kubernetes.client.CoreV1Api()
    try:
        secret = api.read_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            raise SecretUnavailable(f"Secret {namespace}/{name} not found") from None
        raise SecretUnavailable(
            f"Secret {namespace}/{name} could not be read: HTTP {exc.status} {exc.reason}"
        ) from None
    except Exception as exc:  # connection problems of the client
        raise SecretUnavailable(
            f"Secret {namespace}/{name} could not be read: {type(exc).__name__}"
        ) from None
    decoded: dict[str, str] = {}
    for key, value in (secret.data or {}).items():
        try:
            decoded[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            raise SecretUnavailable(
                f"Secret {namespace}/{name} key {key!r} is not valid base64 UTF-8 text"
            ) from None
    version = secret.metadata.resource_version if secret.metadata else None
    return SecretData(str(version or ""), decoded)


async def read_secret(namespace: str, name: str) -> SecretData:
    return await asyncio.to_thread(_read_secret, namespace, name)
