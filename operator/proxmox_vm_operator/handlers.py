"""kopf handlers: translate kopf's events into controller passes, and their results back.

Deliberately thin. Two rules keep the destroy safe (docs/design.md, "kopf"):
- no handler here has a timeout or a retry limit, and none raises a permanent error:
  kopf releases the finalizer after those, which would leak the VM;
- a pass that is not finished raises kopf.TemporaryError with the pass's delay, so no worker
  ever waits on Proxmox.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from . import kube, metrics
from .controller.destroyer import Destroyer, DestroyRequest
from .controller.pace import Checkpoint
from .controller.reconciler import Reconciler, ReconcileRequest
from .domain.destroy import Outcome, destroy_progress
from .domain.model import FINALIZER, GROUP, PLURAL, VERSION, DestroyMode, Phase, parse_time
from .domain.status import Event, StatusPatch, apply_merge_patch

DRIFT_CHECK_SECONDS = 60.0
# The operator's own registry: kopf's default one is process-global and replaceable.
registry = kopf.OperatorRegistry()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The service account in a pod, the kubeconfig elsewhere (kopf's own client login)."""
    info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
    return info


# kopf logs every TemporaryError as an error; a pass that is merely not finished yet says
# so with this prefix, and ProgressLogFilter logs it at INFO (or WARNING while stalled).
IN_PROGRESS = "in progress: "
STALLED = "stalled: "
QUIET_SUCCESS = "Handler 'track_objects' succeeded."


class ProgressLogFilter(logging.Filter):
    """Keep the operator's log honest: progress is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.getMessage() == QUIET_SUCCESS:
            return False  # it runs on every watch event; its success says nothing
        if record.levelno == logging.ERROR and "failed temporarily" in record.msg:
            text = record.getMessage()
            if f"failed temporarily: {IN_PROGRESS}" in text:
                record.levelno, record.levelname = logging.INFO, "INFO"
            elif f"failed temporarily: {STALLED}" in text:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


@dataclass
class Runtime:
    """What the handlers need, built once by ``proxmox-vm-operator run`` (kopf's memo)."""

    reconciler: Reconciler
    destroyer: Destroyer
    tracker: metrics.DestroyTracker
    objects: metrics.ObjectTracker = field(default_factory=metrics.ObjectTracker)


def operator_settings(*, standalone: bool) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    # Progress and the diff base live in annotations: the status schema is strict, so an API
    # server would prune kopf's default status.kopf field and kopf would lose its progress.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.watching.server_timeout = 300
    settings.peering.standalone = standalone
    return settings


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _post(body: kopf.Body, events: Sequence[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def _write_status(
    body: kopf.Body,
    patch: kopf.Patch,
    status: StatusPatch,
    current: Mapping[str, Any] | None = None,
) -> None:
    """The pass's typed status patch, as the merge patch kopf sends: only what changed since
    ``current`` (the status as the API server holds it; the event's copy by default)."""
    base = dict(body.status) if current is None else current
    for key, value in status.to_merge_patch(base).items():
        patch.status[key] = value


def _checkpoint(body: kopf.Body, tracker: metrics.DestroyTracker | None = None) -> Checkpoint:
    """What a pass writes before it waits: the status now, and the events so far. With a
    ``tracker``, the destroy gauges follow what was written at once: the watch event of the
    write reaches this object's handlers only once the pass is over."""
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    status: dict[str, object] = dict(body.status)

    async def write_status(patch: dict[str, object]) -> None:
        nonlocal status
        await kube.patch_proxmoxvm_status(namespace, name, patch)
        status = apply_merge_patch(status, patch)
        if tracker is not None:
            _track_destroy(tracker, namespace, name, status)

    return Checkpoint(write_status=write_status, post_events=functools.partial(_post, body))


# ------------------------------------------------------------------------------ reconcile


async def _reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: Any, *, retry: int, periodic: bool
) -> None:
    runtime: Runtime = memo.runtime
    meta = body.metadata
    request = ReconcileRequest(
        namespace=str(meta.namespace),
        name=str(meta.name),
        uid=str(meta.uid),
        generation=meta.get("generation"),
        spec=dict(body.spec),
        status=dict(body.status),
        live=functools.partial(kube.read_proxmoxvm, str(meta.namespace), str(meta.name)),
        retry=retry,
        periodic=periodic,
    )
    result = await runtime.reconciler.run_pass(request, _now(), _checkpoint(body))
    if not result.skipped:  # a drift pass beside another pass of the object did nothing
        metrics.reconciles.labels(result.progress.value).inc()
    _write_status(body, patch, result.status, result.persisted)
    _post(body, result.events)
    if result.retry_after is not None and not periodic:
        raise kopf.TemporaryError(f"{IN_PROGRESS}reconcile", delay=result.retry_after)


@kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
@kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
@kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int, **_: Any) -> None:
    if body.metadata.get("deletionTimestamp"):
        return
    await _reconcile(body, patch, memo, retry=retry, periodic=False)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=DRIFT_CHECK_SECONDS,
    idle=DRIFT_CHECK_SECONDS / 2,
    registry=registry,
)
async def check_drift(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
    """A periodic pass, for changes made in Proxmox behind the operator's back."""
    if body.metadata.get("deletionTimestamp"):
        return
    await _reconcile(body, patch, memo, retry=0, periodic=True)


# -------------------------------------------------------------------------------- destroy


def destroy_request(body: kopf.Body) -> DestroyRequest:
    """What the destroyer needs of the object, as plain data."""
    meta = body.metadata
    return DestroyRequest(
        namespace=str(meta.namespace),
        name=str(meta.name),
        uid=str(meta.uid),
        annotations=dict(meta.annotations),
        # Kept as it is: a spec that is not even an object must still be destroyable.
        spec=body.get("spec"),
        status=dict(body.status),
        generation=meta.get("generation"),
    )


@kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
async def destroy(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    checkpoint = _checkpoint(body, runtime.tracker)
    result = await runtime.destroyer.run_pass(destroy_request(body), _now(), checkpoint)
    _post(body, result.events)
    if not result.done:  # a released object is gone a moment later: no status to write
        _write_status(body, patch, result.status, result.persisted)
    if result.error is not None:
        metrics.destroy_errors.labels(result.error.value).inc()
    if result.fallback:
        metrics.destroy_fallbacks.inc()
    if result.done:
        assert result.outcome is not None
        _finished(body, runtime, result.mode, result.outcome)
        return
    prefix = STALLED if result.stalled else IN_PROGRESS
    message = f"{prefix}{result.message or 'destroy'}"
    raise kopf.TemporaryError(message, delay=result.retry_after)


@kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
def track_objects(body: kopf.Body, event: Mapping[str, Any], memo: Any, **_: Any) -> None:
    """Count objects by phase as the watch sees them. An object gone by any route (a
    finalizer removed by hand, too) has no destroy in flight."""
    runtime: Runtime = memo.runtime
    meta = body.metadata
    if event.get("type") == "DELETED":
        runtime.objects.gone(str(meta.uid))
        runtime.reconciler.forget(str(meta.uid))
        runtime.tracker.finish(str(meta.namespace), str(meta.name))
        return
    if meta.get("deletionTimestamp"):
        phase = Phase.DELETING.value
        _track_destroy_from_status(body, runtime)
    else:
        phase = str(body.status.get("phase") or Phase.PENDING.value)
    runtime.objects.seen(str(meta.uid), phase)


def _track_destroy_from_status(body: kopf.Body, runtime: Runtime) -> None:
    """The destroy gauges follow the persisted status.destroy as soon as the watch shows it,
    so a restarted operator rebuilds them at once, not at the object's next (backed-off)
    destroy pass."""
    meta = body.metadata
    if FINALIZER not in (meta.get("finalizers") or []):
        return  # already released (its DELETED event follows)
    _track_destroy(runtime.tracker, str(meta.namespace), str(meta.name), body.status)


def _track_destroy(
    tracker: metrics.DestroyTracker, namespace: str, name: str, status: Mapping[str, Any]
) -> None:
    progress = destroy_progress(status)
    if progress is None:
        return  # not started
    tracker.update(namespace, name, progress.started.timestamp(), progress.step, progress.stalled)


def _finished(body: kopf.Body, runtime: Runtime, mode: DestroyMode, outcome: Outcome) -> None:
    meta = body.metadata
    runtime.tracker.finish(str(meta.namespace), str(meta.name))
    deleted_at = meta.get("deletionTimestamp")
    if deleted_at:
        since = parse_time(deleted_at)
        metrics.destroy_duration.labels(mode.value, outcome.value).observe(
            max(0.0, (_now() - since).total_seconds())
        )
    logging.getLogger(__name__).info("released %s/%s: %s", meta.namespace, meta.name, outcome.value)
