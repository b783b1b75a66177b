"""The operator's own Kubernetes reads (kopf does the rest): Secrets, through the official client.

The one place that configures and calls the ``kubernetes`` package; calls run in a worker
thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import kubernetes

from .domain.model import GROUP, PLURAL, VERSION


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


def _read_failure(what: str, exc: Exception) -> str:
    """Why ``what`` could not be read, in words that name it and never its contents."""
    if isinstance(exc, kubernetes.client.ApiException):
        return f"{what} could not be read: HTTP {exc.status} {exc.reason}"
    return f"{what} could not be read: {type(exc).__name__}"  # the client's connection


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, kubernetes.client.ApiException) and exc.status == 404


def _read_secret(namespace: str, name: str) -> SecretData:
    api = kubernetes.client.CoreV1Api()
    try:
        secret = api.read_namespaced_secret(name, namespace)
    except Exception as exc:
        if _not_found(exc):
            raise SecretUnavailable(f"Secret {namespace}/{name} not found") from None
        raise SecretUnavailable(_read_failure(f"Secret {namespace}/{name}", exc)) from None
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


class ObjectUnavailable(Exception):
    """The ProxmoxVM could not be read (not: it does not exist)."""


def _read_proxmoxvm(namespace: str, name: str) -> dict[str, Any] | None:
    api = kubernetes.client.CustomObjectsApi()
    try:
        found: object = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except Exception as exc:
        if _not_found(exc):
            return None
        raise ObjectUnavailable(_read_failure(f"ProxmoxVM {namespace}/{name}", exc)) from None
    if not isinstance(found, dict):
        raise ObjectUnavailable(f"ProxmoxVM {namespace}/{name}: unexpected answer")
    return found


async def read_proxmoxvm(namespace: str, name: str) -> dict[str, Any] | None:
    """The object as the API server has it now; None when it does not exist."""
    return await asyncio.to_thread(_read_proxmoxvm, namespace, name)


def _patch_proxmoxvm_status(namespace: str, name: str, patch: dict[str, object]) -> None:
    api = kubernetes.client.CustomObjectsApi()
    try:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": patch}
        )
    except Exception as exc:
        raise ObjectUnavailable(_read_failure(f"ProxmoxVM {namespace}/{name}", exc)) from None


async def patch_proxmoxvm_status(namespace: str, name: str, patch: dict[str, object]) -> None:
    """Merge ``patch`` into the object's status now (a pass that persists before it waits)."""
    if patch:
        await asyncio.to_thread(_patch_proxmoxvm_status, namespace, name, patch)
