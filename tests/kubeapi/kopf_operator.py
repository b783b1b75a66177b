"""A throwaway kopf operator that the emulator's tests run with KopfRunner (not a test module)."""

from __future__ import annotations

import os
from typing import Any

import kopf

FINALIZER = "kubeapi.test/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.watching.server_timeout = 1  # re-watch often: from the last resourceVersion


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    # kopf's default login reads $KUBECONFIG when `kubernetes` is imported: too early for tests.
    return kopf.ConnectionInfo(server=os.environ["KUBEAPI_TEST_URL"], default_namespace="default")


@kopf.on.create("proxmox.vmop.dev", "v1alpha1", "proxmoxvms")
def create_vm(body: kopf.Body, **_: Any) -> dict[str, int]:
    kopf.info(body, reason="Created", message="The test operator saw the VM.")
    return {"vmid": 101}  # kopf stores it in status.create_vm


@kopf.on.delete("proxmox.vmop.dev", "v1alpha1", "proxmoxvms")
def delete_vm(body: kopf.Body, **_: Any) -> None:
    kopf.info(body, reason="Deleted", message="The test operator released the VM.")
