"""A stand-in for kopf that runs the destroy finalizer against the Proxmox simulator.

The driver does what kopf and the handlers in ``handlers.py`` do for a ProxmoxVM being deleted:
it keeps the object (plain dicts, as kopf hands them over), calls ``Destroyer.run_pass`` with
what the object holds, writes the status patch the pass returns exactly as ``handlers.destroy``
does (applied as a merge patch; nothing else survives a pass) and runs
the next pass ``retry_after`` seconds later, until the finalizer may go or a bound of passes
is reached. Every pass is recorded: what it called in Proxmox, whether it
reported a stall, its events.

Time. One simulated clock serves both sides. The simulator runs with ``time_scale=FROZEN``
(a real second is a nanosecond of simulated time), so its clock moves only when the driver
moves it. Before each pass the driver advances the simulator with ``sim.advance`` to the
moment the pass is due and hands ``now = T0 + that moment`` to ``run_pass``. Simulator tasks
therefore end when the operator would see them end on a real cluster (a stop takes 1 s, a
destroy 2 s, HA acts after 10 s, an ACPI shutdown times out after its timeout), the runs are
deterministic (no test sleeps and races a scaled clock) and fast: a one-hour graceful wait is a
few hundred passes of milliseconds each. ``sim.advance`` first lets the simulator run what the
last call started up to its next wait, so a task's deadline counts from the call, as it would.
A scaled clock was rejected because the operator's ``now`` and the simulator's clock would
drift apart by the duration of each HTTP call, and instant mode (scale 0) lets an hour-long
shutdown timeout expire inside a single call.

Restarts. ``Operator`` holds what lives only in the operator's memory (the client pool and the
per-node task budget); ``Operator.restart()`` replaces both and the ``Destroyer``, as a new
process would. The driver keeps nothing between passes but the persisted object.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxmox_vm_operator.controller.budget import TaskBudget
from proxmox_vm_operator.controller.connections import ClientPool
from proxmox_vm_operator.controller.destroyer import Destroyer, DestroyPass, DestroyRequest
from proxmox_vm_operator.controller.pace import Checkpoint, Pace
from proxmox_vm_operator.domain.destroy import Event, Outcome, StallReason
from proxmox_vm_operator.domain.model import FINALIZER
from proxmox_vm_operator.proxmox.tasks import TaskWaiter
from proxmox_vm_operator.sandbox.apimachinery import merge_patch
from proxmox_vm_operator.simulator.api import RecordedRequest
from proxmox_vm_operator.simulator.server import Simulator

from ..fake_secrets import FakeSecrets

T0 = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
FROZEN = 1e-9  # simulator time scale: its clock moves only with sim.advance
NAMESPACE = "lab"
SECRET_NAME = "pve"
NODE = "pve1"
TOKEN_ID = "root@pam!op"
TOKEN_SECRET = "0f3d9c2e-5b7a-4e1f-8c6d-2a9b8e7f6c5d"
UID = "5e0c7a9d-3b1f-4d2e-9a8c-7f6e5d4c3b2a"
OTHER_UID = "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
DEFAULT_MAX_PASSES = 60


def ownership_tag(uid: str = UID) -> str:
    return f"vmop-{uid}"


def new_simulator(**kwargs: Any) -> Simulator:
    """A started simulator on loopback whose clock only the driver moves."""
    options: dict[str, Any] = {"tokens": {TOKEN_ID: TOKEN_SECRET}, "time_scale": FROZEN, "seed": 7}
    return Simulator(**{**options, **kwargs}).start()


def fake_secrets(sim: Simulator) -> FakeSecrets:
    return FakeSecrets(
        sim, token_id=TOKEN_ID, token_secret=TOKEN_SECRET, namespace=NAMESPACE, name=SECRET_NAME
    )


class Operator:
    """What an operator process keeps in memory; ``restart`` is a new process."""

    def __init__(
        self,
        secrets: FakeSecrets,
        *,
        stall_after: float = 600.0,
        per_node: int = 4,
        pace: Pace | None = None,
    ) -> None:
        self.secrets = secrets
        self.stall_after = stall_after
        self.per_node = per_node
        self.pace = pace or Pace()
        self.restarts = 0
        # The driver's clock once a Driver takes this operator (it reads the time after calls).
        self.clock: Callable[[], datetime.datetime] = lambda: T0
        # The driver's too: a pass that follows its task waits on the simulated clock.
        self.waiter = TaskWaiter()
        self._start()

    def _start(self) -> None:
        # Secrets are read on every pass: tests change them between passes.
        self.pool = ClientPool(secret_reader=self.secrets, reread_after=0.0)
        self.budget = TaskBudget(per_node=self.per_node)
        self.destroyer = Destroyer(
            self.pool,
            self.budget,
            stall_after=self.stall_after,
            clock=self.clock,
            pace=self.pace,
            waiter=self.waiter,
        )

    def restart(self) -> None:
        self.pool.close()
        self.restarts += 1
        self._start()

    def close(self) -> None:
        self.pool.close()


def proxmox_vm(
    vmid: int | None,
    *,
    name: str = "web-1",
    uid: str = UID,
    annotations: Mapping[str, str] | None = None,
    destroy: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A ProxmoxVM being deleted, as kopf hands it to the finalizer; ``vmid`` is status.vmid."""
    body: dict[str, Any] = {"connectionRef": {"name": SECRET_NAME}, "node": NODE, **spec}
    if vmid is not None:
        body.setdefault("vmid", vmid)
    if destroy is not None:
        body["destroy"] = dict(destroy)
    return {
        "apiVersion": "proxmox.vmop.dev/v1alpha1",
        "kind": "ProxmoxVM",
        "metadata": {
            "namespace": NAMESPACE,
            "name": name,
            "uid": uid,
            "annotations": dict(annotations or {}),
            "finalizers": [FINALIZER],
            "deletionTimestamp": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "spec": body,
        "status": {"vmid": vmid, "phase": "Running"} if vmid is not None else {},
    }


_VM_PATH = re.compile(r"^/nodes/[^/]+/qemu/(?P<vmid>\d+)(?P<rest>/.*)?$")


def call_name(request: RecordedRequest) -> str:
    """``stop``, ``shutdown``, ``delete``, ``config``... for a call on a VM, else method+path."""
    match = _VM_PATH.match(request.path)
    if match is None:
        return f"{request.method} {request.path}"
    rest = match["rest"] or ""
    if not rest:
        return "delete" if request.method == "DELETE" else request.method.lower()
    return rest.rsplit("/", 1)[-1]


def writes(requests: Iterable[RecordedRequest], vmid: int | None = None) -> list[RecordedRequest]:
    """The calls that may change something (anything but GET), optionally to one VM."""
    found = [r for r in requests if r.method != "GET"]
    if vmid is not None:
        found = [r for r in found if re.search(rf"/qemu/{vmid}(/|$)", r.path)]
    return found


def calls(
    requests: Iterable[RecordedRequest], name: str, vmid: int | None = None
) -> list[RecordedRequest]:
    """The write calls named ``name`` (see ``call_name``), optionally to one VM."""
    return [r for r in writes(requests, vmid) if call_name(r) == name]


@dataclass
class Pass:
    number: int
    at: float  # when it ran: seconds since T0 on the driver's clock
    action: str  # "stop", "shutdown+...", "delete", "wait", "release:deleted", ...
    outcome: Outcome | None
    step: str | None
    task_upid: str | None
    stalled: StallReason | None
    message: str
    retry_after: float
    events: list[Event]
    writes: list[RecordedRequest]
    restarted: bool


@dataclass
class Destroy:
    """One object being deleted, and everything that happened to it."""

    obj: dict[str, Any]
    due: float = 0.0
    passes: list[Pass] = field(default_factory=list)
    outcome: Outcome | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.obj["status"]
        return status

    @property
    def record(self) -> dict[str, Any] | None:
        return self.status.get("destroy")

    @property
    def annotations(self) -> dict[str, str]:
        annotations: dict[str, str] = self.obj["metadata"]["annotations"]
        return annotations

    @property
    def events(self) -> list[Event]:
        return [event for p in self.passes for event in p.events]

    def warnings(self) -> list[str]:
        return [event.reason for event in self.events if event.type == "Warning"]

    def stalls(self) -> list[tuple[float, StallReason]]:
        return [(p.at, p.stalled) for p in self.passes if p.stalled is not None]

    def actions(self) -> list[str]:
        return [p.action for p in self.passes]

    def describe(self) -> str:
        """The run as text, for assertion messages."""
        lines = [
            f"#{p.number} t={p.at:g} {p.action} step={p.step} stalled={p.stalled} "
            f"retry={p.retry_after:g} {p.message[:90]}"
            for p in self.passes
        ]
        return "\n".join(lines)


Hook = Callable[["Driver"], bool]


class Driver:
    """Runs destroy passes in time order over one or more objects, as kopf would."""

    def __init__(self, sim: Simulator, operator: Operator) -> None:
        self.sim = sim
        self.operator = operator
        operator.clock = self.now
        operator.destroyer.clock = self.now
        operator.waiter = TaskWaiter(monotonic=lambda: self.elapsed, sleep=self._sleep)
        operator.destroyer.waiter = operator.waiter
        self.elapsed = 0.0
        self.destroys: list[Destroy] = []
        # What passes persisted while they ran (before their end), per object name.
        self.persisted: dict[str, list[dict[str, object]]] = {}
        self._seen = len(sim.requests)

    async def _sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def add(self, obj: dict[str, Any]) -> Destroy:
        destroy = Destroy(obj, due=self.elapsed)
        self.destroys.append(destroy)
        return destroy

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the simulator and the operator alike."""
        if seconds > 0:
            self.sim.advance(seconds)
            self.elapsed += seconds

    def now(self) -> datetime.datetime:
        return T0 + datetime.timedelta(seconds=self.elapsed)

    async def step(self, *, restart: bool = False) -> Pass:
        """Run the next due pass (restarting the operator first if asked)."""
        pending = [d for d in self.destroys if not d.done]
        assert pending, "every destroy is finished"
        destroy = min(pending, key=lambda d: d.due)
        self.advance(destroy.due - self.elapsed)
        if restart:
            self.operator.restart()
        meta = destroy.obj["metadata"]
        request = DestroyRequest(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            annotations=dict(meta["annotations"]),
            spec=dict(destroy.obj["spec"]),
            status=dict(destroy.obj["status"]),
        )

        posted: list[Event] = []

        async def persist(patch: dict[str, object]) -> None:
            self.persisted.setdefault(meta["name"], []).append(patch)
            destroy.obj["status"] = merge_patch(destroy.status, patch)

        checkpoint = Checkpoint(write_status=persist, post_events=posted.extend)
        result = await self.operator.destroyer.run_pass(request, self.now(), checkpoint)
        result.events[:0] = posted
        made = self.sim.requests[self._seen :]
        self._seen += len(made)
        record = self._persist(destroy, result)
        changes = writes(made)
        parts = [call_name(r) for r in changes]
        if result.outcome is not None:
            parts.append(f"release:{result.outcome.value}")
        done = Pass(
            number=len(destroy.passes) + 1,
            at=self.elapsed,
            action="+".join(parts) or "wait",
            outcome=result.outcome,
            step=record.get("step") if record else None,
            task_upid=record.get("taskUpid") if record else None,
            stalled=result.stalled,
            message=result.message,
            retry_after=result.retry_after,
            events=list(result.events),
            writes=changes,
            restarted=restart,
        )
        destroy.passes.append(done)
        destroy.outcome = result.outcome
        destroy.due = self.elapsed + result.retry_after
        return done

    @staticmethod
    def _persist(destroy: Destroy, result: DestroyPass) -> dict[str, Any] | None:
        """The pass's status patch, applied as the API server applies kopf's patch: an RFC
        7386 merge patch, where an omitted field is kept and only an explicit null clears one.
        The rest of a pass is lost."""
        destroy.obj["status"] = merge_patch(
            destroy.status, result.status.to_merge_patch(destroy.status)
        )
        return destroy.record

    async def run(
        self,
        *,
        max_passes: int = DEFAULT_MAX_PASSES,
        until: Hook | None = None,
        restart_every_pass: bool = False,
    ) -> int:
        """Run passes until every destroy is done, ``until`` holds, or ``max_passes`` ran."""
        count = 0
        while count < max_passes and any(not d.done for d in self.destroys):
            if until is not None and until(self):
                break
            await self.step(restart=restart_every_pass)
            count += 1
        return count

    async def destroy(self, obj: dict[str, Any], **options: Any) -> Destroy:
        """Add one object and run it to the end (or the bound)."""
        destroy = self.add(obj)
        await self.run(**options)
        return destroy


async def run_until(driver: Driver, condition: Callable[[Destroy], bool], limit: int = 60) -> None:
    """Run until the (first) destroy satisfies ``condition``; fail if it never does."""
    destroy = driver.destroys[0]
    await driver.run(max_passes=limit, until=lambda _: condition(destroy))
    assert condition(destroy), f"condition never held:\n{destroy.describe()}"
