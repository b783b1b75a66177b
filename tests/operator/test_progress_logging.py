"""A destroy or reconcile that is merely not finished is not logged as an error."""

from __future__ import annotations

import logging

import pytest

from proxmox_vm_operator.handlers import IN_PROGRESS, STALLED, ProgressLogFilter


def _record(reason: str) -> logging.LogRecord:
    return logging.LogRecord(
        "kopf.objects",
        logging.ERROR,
        __file__,
        1,
        "Handler %r failed temporarily: %s",
        ("destroy", reason),
        None,
    )


@pytest.mark.parametrize(
    ("reason", "level"),
    [
        (f"{IN_PROGRESS}started task UPID:x", logging.INFO),
        (f"{STALLED}connection refused", logging.WARNING),
        ("boom: an unexpected error", logging.ERROR),
    ],
)
def test_progress_is_info_a_stall_a_warning_and_anything_else_stays_an_error(
    reason: str, level: int
) -> None:
    record = _record(reason)
    assert ProgressLogFilter().filter(record)
    assert record.levelno == level
    assert record.levelname == logging.getLevelName(level)


def test_the_per_event_tracking_handler_does_not_log_each_success() -> None:
    quiet = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Handler 'track_objects' succeeded.", (), None
    )
    other = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Handler 'reconcile' succeeded.", (), None
    )
    assert not ProgressLogFilter().filter(quiet)
    assert ProgressLogFilter().filter(other)
