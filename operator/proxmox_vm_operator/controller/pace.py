"""How a pass spends time and requests: the operator's pacing, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..domain.status import Event


@dataclass(frozen=True)
class Checkpoint:
    """What a pass that goes on after a call writes before it waits (the handler's, through
    the API server): the status a restart must not lose, and the events so far, so that a
    crash during the wait loses neither."""

    # Merges a JSON merge patch into the object's status now.
    write_status: Callable[[dict[str, object]], Awaitable[None]]
    post_events: Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class Pace:
    """The defaults make a pass do one step and read everything afresh: what the controller
    tests drive pass by pass on a simulated clock. ``Pace.operator()`` is what the operator
    runs with."""

    # How long a pass may follow the tasks it started (and wait for a task slot) before it
    # hands back to kopf; 0: return after each call.
    follow_within: float = 0.0
    # How old a cluster or node listing may be when it only says where a VM is or what runs
    # on a node (a verdict that something is absent always asks afresh).
    listing_max_age: float = 0.0
    # How long a destroy pass waits on its first task before it writes that the destroy has
    # started (a destroy over by then writes nothing until its release). A shutdown deadline
    # is written at once whatever this says.
    checkpoint_after: float = 0.0
    # How often an idle object's VM is compared with its spec in full (config, power,
    # pending changes); between, the drift timer's pass stops at the shared cluster listing
    # when it shows nothing changed (power state, node, tags, lock). 0: every pass in full.
    full_check_after: float = 0.0
    # How old a listing the drift timer's pass accepts (Proxmox's own lags ~10 s).
    periodic_listing_max_age: float = 0.0

    @classmethod
    def operator(cls) -> Pace:
        # 10 s: a typical stop + delete (or create + start) ends inside one pass, and an
        # annotation put on the object meanwhile is seen within that bound. 2 s: `kubectl get`
        # shows a destroy that takes longer as Deleting within 2 s.
        return cls(
            follow_within=10.0,
            listing_max_age=5.0,
            checkpoint_after=2.0,
            full_check_after=3600.0,
            periodic_listing_max_age=10.0,
        )
