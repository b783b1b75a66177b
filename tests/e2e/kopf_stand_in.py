"""A tiny kopf operator standing in for the real one, to prove the sandbox (not a test module).

Run by test_sandbox_harness.py as `kopf run --standalone -n NS --liveness=... THIS_FILE`, with
KUBECONFIG set by the harness: the same process shape, login and finalizer as the operator.
"""

from __future__ import annotations

from typing import Any

import kopf

GROUP, VERSION, PLURAL = "proxmox.vmop.dev", "v1alpha1", "proxmoxvms"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "proxmox.vmop.dev/destroy"


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_vm(patch: kopf.Patch, **_: Any) -> None:
    patch.status["phase"] = "Running"


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_vm(body: kopf.Body, **_: Any) -> None:
    kopf.info(body, reason="Destroyed", message="The stand-in operator released the VM.")
