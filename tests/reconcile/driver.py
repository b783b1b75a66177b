"""A stand-in for kopf around ``Reconciler.run_pass``: status merging, events, re-runs.

kopf merges each pass's ``status`` into ``.status`` as a JSON merge patch (a value of None
deletes the key), posts the events, and runs the handler again after ``retry_after`` seconds
while it is not None. The driver does the same against the real simulator, with a fake
clock that moves one second per pass (condition timestamps have second resolution) and a
short real sleep between passes so that simulator tasks, sped up, make progress.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxmox_vm_operator.controller.connections import ClientPool
from proxmox_vm_operator.controller.reconciler import (
    LiveReader,
    ReconcilePass,
    Reconciler,
    ReconcileRequest,
)
from proxmox_vm_operator.domain.destroy import Event
from proxmox_vm_operator.simulator import Simulator
from proxmox_vm_operator.simulator.api import RecordedRequest

from ..fake_secrets import FakeSecrets

TOKEN_ID = "root@pam!op"
TOKEN_SECRET = "reconcile-test-secret"  # a credential of the throw-away simulator only
UID = "0f8e2a6c-3b1d-4c5e-9a7f-112233445566"
OWNER_TAG = f"vmop-{UID}"
NAME = "web-1"
NAMESPACE = "lab"
SECRET_NAME = "pve"
START = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})

Predicate = Callable[["Driver"], bool]


def base_spec(**overrides: Any) -> dict[str, Any]:
    """A spec in the CRD's shape; keys given as None are left out."""
    spec: dict[str, Any] = {"connectionRef": {"name": SECRET_NAME}, "node": "pve1"}
    spec.update(overrides)
    return {key: value for key, value in spec.items() if value is not None}


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place: None deletes, objects merge, the rest replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        elif isinstance(value, Mapping):
            fresh: dict[str, Any] = {}
            merge_patch(fresh, value)
            target[key] = fresh
        else:
            target[key] = copy.deepcopy(value)


def is_write(request: RecordedRequest) -> bool:
    return request.method in WRITE_METHODS


def fake_secrets(sim: Simulator) -> FakeSecrets:
    return FakeSecrets(
        sim, token_id=TOKEN_ID, token_secret=TOKEN_SECRET, namespace=NAMESPACE, name=SECRET_NAME
    )


def pool_for(secrets: FakeSecrets) -> ClientPool:
    return ClientPool(secret_reader=secrets)


@dataclass
class PassRecord:
    number: int
    now: datetime.datetime
    result: ReconcilePass
    requests: list[RecordedRequest]
    status: dict[str, Any]  # the object's status after the merge

    @property
    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if is_write(r)]


@dataclass
class Driver:
    """One ProxmoxVM object as kopf would hold it, reconciled pass after pass."""

    sim: Simulator
    reconciler: Reconciler
    spec: dict[str, Any]
    name: str = NAME
    namespace: str = NAMESPACE
    uid: str = UID
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    passes: list[PassRecord] = field(default_factory=list)
    # kopf's ``retry``: how many passes in a row asked to be run again.
    attempt: int = 0
    # The object as the API server has it now, when a test makes it differ from the copy
    # the passes act on (a slow API server); None: the same as that copy.
    live: LiveReader | None = None
    # The passes are the drift timer's (ReconcileRequest.periodic).
    periodic: bool = False

    # -- one pass ---------------------------------------------------------------------------

    @property
    def now(self) -> datetime.datetime:
        return START + datetime.timedelta(seconds=len(self.passes))

    async def step(self) -> PassRecord:
        before = len(self.sim.requests)
        request = ReconcileRequest(
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            generation=self.generation,
            spec=copy.deepcopy(self.spec),
            status=copy.deepcopy(self.status),
            live=self.live,
            retry=self.attempt,
            periodic=self.periodic,
        )
        now = self.now
        result = await self.reconciler.run_pass(request, now)
        merge_patch(self.status, result.status.to_merge_patch(self.status))
        self.events.extend(result.events)
        self.attempt = 0 if result.retry_after is None else self.attempt + 1
        record = PassRecord(
            len(self.passes) + 1,
            now,
            result,
            self.sim.requests[before:],
            copy.deepcopy(self.status),
        )
        self.passes.append(record)
        return record

    # -- many passes ------------------------------------------------------------------------

    async def run(
        self,
        *,
        until: Predicate | None = None,
        max_passes: int = 40,
        timeout: float = 6.0,
    ) -> list[PassRecord]:
        """Pass after pass until ``retry_after`` is None (or ``until`` holds); bounded.

        Raises AssertionError when the bound is reached first, with the passes' story.
        """
        first = len(self.passes)
        deadline = time.monotonic() + timeout
        while True:
            record = await self.step()
            if until is not None and until(self):
                return self.passes[first:]
            if until is None and record.result.retry_after is None:
                return self.passes[first:]
            if len(self.passes) - first >= max_passes or time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled after {len(self.passes) - first} passes:\n"
                    + self.story(self.passes[first:])
                )
            await asyncio.sleep(min(record.result.retry_after or 0.05, 0.05))

    async def settle(self, **bounds: Any) -> PassRecord:
        """Run until a pass asks for no retry; return that last pass."""
        return (await self.run(**bounds))[-1]

    async def run_passes(self, count: int) -> list[PassRecord]:
        """Exactly ``count`` passes (for states that keep asking for a retry)."""
        records = []
        for _ in range(count):
            record = await self.step()
            records.append(record)
            await asyncio.sleep(min(record.result.retry_after or 0.0, 0.05))
        return records

    def update_spec(self, **changes: Any) -> None:
        """The user edits the spec: a new generation; None removes a key."""
        merge_patch(self.spec, changes)
        self.generation += 1
        self.attempt = 0

    # -- reading the result -----------------------------------------------------------------

    @property
    def ready(self) -> dict[str, Any]:
        found = [c for c in self.status.get("conditions", []) if c.get("type") == "Ready"]
        assert len(found) == 1, f"expected one Ready condition in {self.status}"
        return found[0]

    @property
    def reason(self) -> str | None:
        """The Ready condition's reason, None before the first pass."""
        found = [c for c in self.status.get("conditions", []) if c.get("type") == "Ready"]
        return str(found[0]["reason"]) if found else None

    @property
    def vmid(self) -> int:
        return int(self.status["vmid"])

    def event_reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def requests(self) -> list[RecordedRequest]:
        return [r for p in self.passes for r in p.requests]

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests() if is_write(r)]

    @staticmethod
    def story(records: list[PassRecord], last: int = 12) -> str:
        """One line per pass (the last ``last`` of them): Ready, retry, calls, message."""
        lines = [f"({len(records) - last} earlier passes left out)"] if len(records) > last else []
        for record in records[-last:]:
            ready = next(
                (c for c in record.status.get("conditions", []) if c.get("type") == "Ready"), {}
            )
            calls = ", ".join(f"{r.method} {r.path} -> {r.status}" for r in record.requests)
            lines.append(
                f"#{record.number} Ready={ready.get('status')}/{ready.get('reason')} "
                f"retry={record.result.retry_after} [{calls}] {ready.get('message', '')}"
            )
        return "\n".join(lines)


# -- looking at the simulator ---------------------------------------------------------------


def vm_state(sim: Simulator, vmid: int) -> dict[str, Any]:
    """The simulator's own view of a VM; it must exist."""
    state = sim.vm(vmid)
    assert state is not None, f"VM {vmid} does not exist"
    return state


def tag_set(value: object) -> set[str]:
    return {t for t in str(value or "").replace(",", ";").split(";") if t}


def writes_to(requests: list[RecordedRequest], vmid: int) -> list[RecordedRequest]:
    """Write calls addressed to VM ``vmid`` (its own path, or a clone naming it as newid)."""
    prefix = f"/qemu/{vmid}"
    return [
        r
        for r in requests
        if is_write(r)
        and (
            r.path.endswith(prefix)
            or f"{prefix}/" in r.path
            or str(r.params.get("vmid")) == str(vmid)
            or str(r.params.get("newid")) == str(vmid)
        )
    ]
