"""kopf must never be able to release the finalizer on its own, and must keep its progress.

kopf drops a failed handler after a timeout, a retry limit or a permanent error, and then
removes the finalizer: the VM would leak. These tests read kopf's registry and settings as the
operator configures them.
"""

from __future__ import annotations

import kopf
import pytest

from proxmox_vm_operator import handlers
from proxmox_vm_operator.crd import custom_resource_definition
from proxmox_vm_operator.domain.model import FINALIZER


def _our_handlers() -> list[object]:
    registry = handlers.registry
    return [
        *registry._changing.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
    ]


def test_the_destroy_handler_is_registered_and_needs_the_finalizer() -> None:
    destroy = [h for h in _our_handlers() if getattr(h, "id", "") == "destroy"]
    assert len(destroy) == 1
    assert destroy[0].requires_finalizer  # type: ignore[attr-defined]


def _label(handler: object) -> str:
    return f"{getattr(handler, 'id', '?')}-{getattr(handler, 'reason', None) or 'timer'}"


@pytest.mark.parametrize("handler", _our_handlers(), ids=_label)
def test_no_handler_has_a_timeout_a_retry_limit_or_gives_up_on_errors(handler: object) -> None:
    assert handler.timeout is None  # type: ignore[attr-defined]
    assert handler.retries is None  # type: ignore[attr-defined]
    assert handler.errors in (None, kopf.ErrorsMode.TEMPORARY)  # type: ignore[attr-defined]


def test_settings_use_our_finalizer_and_keep_progress_out_of_the_strict_status() -> None:
    settings = handlers.operator_settings(standalone=False)
    assert settings.persistence.finalizer == FINALIZER == "proxmox.vmop.dev/destroy"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert not settings.peering.standalone
    assert handlers.operator_settings(standalone=True).peering.standalone


def test_the_status_schema_is_strict_so_kopf_could_not_keep_progress_there() -> None:
    version = custom_resource_definition()["spec"]["versions"][0]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "kopf" not in status["properties"]
    assert not status.get("x-kubernetes-preserve-unknown-fields")
