"""What each act of the demo claims, checked against what the demo saw: checks that can fail.

The demo records an act as an `ActRecord` (the operator's calls to Proxmox, from the
simulator's request log; the events and conditions, through kubectl) and each function here
turns one act's claims into `Check`s. They are pure, so a story that did not happen (a
graceful shutdown in act 1, a stop before the deadline in act 2) is a failing check, and the
demo exits non-zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

WARNING = "Warning"
STALLED_UNREACHABLE = ("DeletionStalled", "True", "ProxmoxUnreachable")


@dataclasses.dataclass(frozen=True)
class Check:
    claim: str
    held: bool
    evidence: str = ""


@dataclasses.dataclass(frozen=True)
class ProxmoxCall:
    """A write the operator made to the VM, and when into the act the demo first saw it."""

    at: float
    method: str
    path: str  # relative to /api2/json
    params: Mapping[str, Any]

    @property
    def action(self) -> str:
        """``shutdown``, ``stop``, ``delete``, or another write (``config``, ``start``...)."""
        if self.method == "DELETE":
            return "delete"
        return self.path.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        params = " ".join(f"{key}={value}" for key, value in self.params.items())
        return f"{self.method} {self.path}" + (f" {params}" if params else "")


@dataclasses.dataclass
class ActRecord:
    """What the demo saw during one act; times are seconds after the act's `kubectl delete`."""

    vmid: int
    calls: list[ProxmoxCall] = dataclasses.field(default_factory=list)
    events: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (type, reason)
    # (type, status, reason) of every condition state seen, with when it was first seen
    conditions: dict[tuple[str, str, str], float] = dataclasses.field(default_factory=dict)
    fallback_used: bool = False
    released_at: float | None = None  # the object was gone
    vm_exists: bool = True  # in Proxmox, when the act ended

    def calls_to(self, action: str) -> list[ProxmoxCall]:
        return [call for call in self.calls if call.action == action]


def _count(calls: Sequence[ProxmoxCall], what: str) -> str:
    return f"{len(calls)} {what}" + ("" if len(calls) == 1 else "s")


def _overrules_shutdown(call: ProxmoxCall) -> bool:
    return str(call.params.get("overrule-shutdown")) == "1"


def _released(act: ActRecord) -> Check:
    deletes = act.calls_to("delete")
    held = len(deletes) == 1 and not act.vm_exists and act.released_at is not None
    state = "gone from Proxmox" if not act.vm_exists else "still in Proxmox"
    released = "object released" if act.released_at is not None else "object still there"
    return Check(
        "the VM was deleted, then the object released",
        held,
        f"{_count(deletes, 'DELETE')}, VM {act.vmid} {state}, {released}",
    )


def default_stop(act: ActRecord, *, released_within: float) -> list[Check]:
    """Act 1: the default policy never asks the guest; the delete is over in seconds."""
    shutdowns, stops = act.calls_to("shutdown"), act.calls_to("stop")
    warnings = [reason for kind, reason in act.events if kind == WARNING]
    took = act.released_at
    return [
        Check(
            "no graceful shutdown was sent to the guest",
            not shutdowns,
            _count(shutdowns, "call") + " to status/shutdown",
        ),
        Check(
            "one hard stop, with overrule-shutdown=1",
            len(stops) == 1 and _overrules_shutdown(stops[0]),
            "; ".join(map(str, stops)) or "no stop",
        ),
        _released(act),
        Check(
            f"the object was released within {released_within:g} s of kubectl delete",
            took is not None and took <= released_within,
            f"after {took:.1f} s" if took is not None else "not released",
        ),
        Check("no Warning event", not warnings, ", ".join(warnings) or "only Normal events"),
    ]


def shutdown_fallback(act: ActRecord, *, timeout_seconds: int) -> list[Check]:
    """Act 2: one bounded graceful shutdown, then a forced stop at the deadline, reported."""
    shutdowns, stops = act.calls_to("shutdown"), act.calls_to("stop")
    timeout = int(shutdowns[0].params.get("timeout", 0)) if len(shutdowns) == 1 else 0
    # The deadline is startedAt (whole seconds) + the timeout: up to a second earlier.
    earliest = timeout_seconds - 1
    forced = (
        len(stops) == 1
        and len(shutdowns) == 1
        and _overrules_shutdown(stops[0])
        and stops[0].at >= max(shutdowns[0].at, earliest)
    )
    return [
        Check(
            f"one graceful shutdown, bounded by the {timeout_seconds} s policy",
            len(shutdowns) == 1 and 1 <= timeout <= timeout_seconds,
            "; ".join(map(str, shutdowns)) or "no shutdown",
        ),
        Check(
            "a forced stop (overrule-shutdown=1) once the deadline had passed",
            forced,
            "; ".join(f"{call} at {call.at:.1f} s" for call in stops) or "no stop",
        ),
        Check(
            "status.destroy.fallbackUsed became true",
            act.fallback_used,
            "seen" if act.fallback_used else "never seen",
        ),
        Check(
            "a Warning ShutdownTimedOut event",
            (WARNING, "ShutdownTimedOut") in act.events,
            ", ".join(f"{kind} {reason}" for kind, reason in act.events) or "no events",
        ),
        _released(act),
    ]


def outage(
    act: ActRecord,
    *,
    stall_after: float,
    restored_at: float,
    vm_existed_during_outage: bool,
    stalled_gauge: float | None,
) -> list[Check]:
    """Act 3: no answer is never "gone"; the stall is reported, and the destroy resumes."""
    stalled_at = act.conditions.get(STALLED_UNREACHABLE)
    released = act.released_at
    repeated = {
        action: len(act.calls_to(action))
        for action in ("shutdown", "stop", "delete")
        if len(act.calls_to(action)) > 1
    }
    return [
        Check(
            "the object kept its finalizer while Proxmox was unreachable",
            released is None or released >= restored_at,
            f"released {released - restored_at:.1f} s after the restore"
            if released is not None
            else "never released",
        ),
        Check(
            f"DeletionStalled=True (ProxmoxUnreachable) after --stall-after {stall_after:g} s",
            stalled_at is not None and stalled_at >= stall_after - 1,
            f"seen {stalled_at:.1f} s after kubectl delete"
            if stalled_at is not None
            else "never seen",
        ),
        Check(
            "the VM still existed in Proxmox during the outage",
            vm_existed_during_outage,
            f"VM {act.vmid} " + ("existed" if vm_existed_during_outage else "was gone"),
        ),
        Check(
            'proxmoxvm_destroys_stalled{reason="ProxmoxUnreachable"} was 1 during the stall',
            stalled_gauge == 1,
            f"{stalled_gauge:g}" if stalled_gauge is not None else "not exported",
        ),
        _released(act),
        Check(
            "no destructive call was made twice",
            not repeated,
            ", ".join(f"{n} x {action}" for action, n in repeated.items()) or "each at most once",
        ),
    ]
