"""The sample objects' statuses, produced by the operator's own code.

Each recipe below plays one situation of ``samples/`` against a fresh in-process Proxmox
simulator and returns the ProxmoxVM object as the API server would hold it afterwards. The
status comes from the real code, called as the kopf handlers in ``handlers.py`` call it:

- while the object lives, ``Reconciler.run_pass``, its ``status`` merged into the object's
  status as kopf merges a handler's patch (a JSON merge patch);
- once it is deleted, ``Destroyer.run_pass`` on the request ``handlers.destroy_request``
  builds from a ``kopf.Body``, its status patch (phase, ``status.destroy``, the conditions)
  merged the same way.

Time is simulated and shared: the simulator runs frozen (its clock moves only when a recipe
waits) and the operator's ``now`` is ``START`` plus the same simulated seconds, so a pass
that asks to be run again after ``retry_after`` seconds runs then, tasks end when they would
on a cluster, nothing sleeps and the output is the same on every run. What would still vary
is normalised: the simulator's loopback address (a random port) reads as
``pve.example.org:8006`` in error messages, and its wall clock starts at ``START``, so task
UPIDs carry the same start times on every run.

The samples' ``description``, ``healthStatus`` and ``kstatus`` are judgements and stay in the
YAML, edited by hand; only ``object`` is written from here. After a change to the status the
operator writes, regenerate and review the expectations:

    .venv/bin/python -m tests.gitops.capture --write   # rewrite each sample's object
    .venv/bin/python -m tests.gitops.capture           # only list the samples that differ
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime
import difflib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kopf
import yaml

from proxmox_vm_operator import handlers, metrics
from proxmox_vm_operator.controller.budget import TaskBudget
from proxmox_vm_operator.controller.connections import ClientPool
from proxmox_vm_operator.controller.destroyer import Destroyer, DestroyPass
from proxmox_vm_operator.controller.reconciler import ReconcilePass, Reconciler, ReconcileRequest
from proxmox_vm_operator.domain.model import FINALIZER, format_time
from proxmox_vm_operator.simulator import Simulator

from ..fake_secrets import FakeSecrets
from ..reconcile.driver import TOKEN_ID, TOKEN_SECRET, merge_patch
from .sample_objects import SAMPLES_DIR

REGENERATE = ".venv/bin/python -m tests.gitops.capture --write"
START = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
CREATED = "2030-01-01T11:59:59Z"  # the object exists a second before the operator sees it
NAMESPACE = "lab"
SECRET = "pve"
FROZEN = 1e-9  # simulator time scale: its clock moves only when a recipe waits
STALL_AFTER = 600.0  # the operator's --stall-after default
TASKS_PER_NODE = 4  # the operator's --max-tasks-per-node default
MAX_PASSES = 60
PUBLIC_HOST, PUBLIC_PORT = "pve.example.org", 8006

# Samples no recipe produces, and why.
WITHOUT_RECIPE = {
    "new-object-no-status": "no pass has run yet: the operator has written nothing",
}

# The spec most samples share: a small VM with one disk and one NIC.
WEB = {
    "cores": 2,
    "memoryMiB": 2048,
    "disks": [{"slot": "scsi0", "storage": "local-lvm", "sizeGiB": 20}],
    "networks": [{"slot": "net0", "bridge": "vmbr0"}],
    "tags": ["web"],
}


class CaptureError(AssertionError):
    """A recipe did not reach its situation within its bound of passes."""


def spec(**overrides: Any) -> dict[str, Any]:
    """``WEB`` on pve1 with the lab's Secret, changed by ``overrides`` (None drops a key)."""
    fields: dict[str, Any] = {"connectionRef": {"name": SECRET}, "node": "pve1"}
    fields.update(copy.deepcopy(WEB))
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not None}


@dataclass
class VM:
    """One ProxmoxVM object as the API server holds it; kopf hands it to the handlers."""

    name: str
    uid: str
    spec: dict[str, Any]
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    deletion_timestamp: str | None = None

    def manifest(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": NAMESPACE,
            "uid": self.uid,
            "generation": self.generation,
            "creationTimestamp": CREATED,
            "finalizers": [FINALIZER],
        }
        if self.deletion_timestamp is not None:
            metadata["deletionTimestamp"] = self.deletion_timestamp
            metadata["deletionGracePeriodSeconds"] = 0
        obj: dict[str, Any] = {
            "apiVersion": "proxmox.vmop.dev/v1alpha1",
            "kind": "ProxmoxVM",
            "metadata": metadata,
            "spec": copy.deepcopy(self.spec),
        }
        if self.status:
            obj["status"] = copy.deepcopy(self.status)
        return obj

    def condition(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status.get("conditions", []) if c["type"] == type_), None)

    @property
    def reason(self) -> str | None:
        """The Ready condition's reason; None before the first pass."""
        ready = self.condition("Ready")
        return None if ready is None else str(ready["reason"])

    def edit(self, **changes: Any) -> None:
        """The user changes the spec: a new generation (None removes a key)."""
        merge_patch(self.spec, changes)
        self.generation += 1


class Lab:
    """A simulator, the operator's parts wired as ``proxmox-vm-operator run`` wires them,
    and the shared simulated clock."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.secrets = FakeSecrets(
            sim, token_id=TOKEN_ID, token_secret=TOKEN_SECRET, namespace=NAMESPACE, name=SECRET
        )
        self.pool = ClientPool(secret_reader=self.secrets)
        budget = TaskBudget(TASKS_PER_NODE)
        self.runtime = handlers.Runtime(
            reconciler=Reconciler(self.pool, budget),
            destroyer=Destroyer(self.pool, budget, stall_after=STALL_AFTER, clock=self.now),
            tracker=metrics.DestroyTracker(),
        )
        self.elapsed = 0.0

    def now(self) -> datetime.datetime:
        return START + datetime.timedelta(seconds=self.elapsed)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass for Proxmox and the operator alike."""
        if seconds > 0:
            self.sim.advance(seconds)
            self.elapsed += seconds

    # -- the reconcile handler ---------------------------------------------------------------

    async def reconcile(self, vm: VM) -> ReconcilePass:
        """One pass of the create/update/resume handler (``handlers._reconcile``)."""
        request = ReconcileRequest(
            namespace=NAMESPACE,
            name=vm.name,
            uid=vm.uid,
            generation=vm.generation,
            spec=copy.deepcopy(vm.spec),
            status=copy.deepcopy(vm.status),
        )
        result = await self.runtime.reconciler.run_pass(request, self.now())
        merge_patch(vm.status, result.status.to_merge_patch(vm.status))
        return result

    async def reconcile_until(self, vm: VM, done: Callable[[VM], bool]) -> None:
        """Pass after pass, each when the last one asked for it, until ``done`` holds."""
        reasons: list[str | None] = []
        for _ in range(MAX_PASSES):
            result = await self.reconcile(vm)
            reasons.append(vm.reason)
            if done(vm):
                return
            if result.retry_after is None:
                break  # kopf would not run the handler again by itself
            self.wait(result.retry_after)
        raise CaptureError(f"{vm.name}: the situation never came; Ready reasons: {reasons}")

    async def settle(self, vm: VM) -> None:
        """Reconcile until a pass asks for no retry: the operator is done with the spec."""
        for _ in range(MAX_PASSES):
            result = await self.reconcile(vm)
            if result.retry_after is None:
                return
            self.wait(result.retry_after)
        raise CaptureError(f"{vm.name}: not settled after {MAX_PASSES} passes ({vm.reason})")

    # -- the delete handler ------------------------------------------------------------------

    def delete(self, vm: VM) -> None:
        """``kubectl delete``: the API server sets deletionTimestamp and bumps the generation."""
        vm.deletion_timestamp = format_time(self.now())
        vm.generation += 1

    async def destroy(self, vm: VM) -> DestroyPass:
        """One pass of the finalizer (``handlers.destroy``): the request the handler builds,
        and the status patch the pass returns (events and metrics aside)."""
        body = kopf.Body(cast(kopf.RawBody, vm.manifest()))
        request = handlers.destroy_request(body)
        result = await self.runtime.destroyer.run_pass(request, self.now())
        merge_patch(vm.status, result.status.to_merge_patch(vm.status))
        return result

    async def destroy_until(self, vm: VM, done: Callable[[DestroyPass], bool]) -> None:
        """Finalizer passes, each when the last one asked for it, until ``done`` holds."""
        steps: list[str] = []
        for _ in range(MAX_PASSES):
            result = await self.destroy(vm)
            steps.append(f"{vm.status.get('destroy', {}).get('step')}/{result.stalled}")
            if done(result):
                return
            if result.done:
                break
            self.wait(result.retry_after)
        raise CaptureError(f"{vm.name}: the destroy never got there; passes: {steps}")


# -- the recipes ------------------------------------------------------------------------------

Recipe = Callable[[Lab], Awaitable[VM]]
RECIPES: dict[str, Recipe] = {}


def recipe(name: str) -> Callable[[Recipe], Recipe]:
    def register(function: Recipe) -> Recipe:
        RECIPES[name] = function
        return function

    return register


def web_1(**overrides: Any) -> VM:
    """The object most situations follow, from creation on."""
    return VM("web-1", "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", spec(**overrides))


@recipe("provisioning-first-pass")
async def provisioning_first_pass(lab: Lab) -> VM:
    vm = web_1()
    await lab.reconcile(vm)
    return vm


@recipe("provisioning-creating")
async def provisioning_creating(lab: Lab) -> VM:
    vm = web_1()
    await lab.reconcile_until(vm, lambda v: "task" in v.status)
    return vm


@recipe("starting")
async def starting(lab: Lab) -> VM:
    vm = web_1()
    await lab.reconcile_until(vm, lambda v: v.reason == "Starting")
    return vm


@recipe("ready-running")
async def ready_running(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    return vm


@recipe("updating")
async def updating(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    vm.edit(cores=4)
    await lab.reconcile(vm)
    return vm


@recipe("ready-reboot-pending")
async def ready_reboot_pending(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    vm.edit(cores=4)
    await lab.settle(vm)
    return vm


@recipe("spec-change-not-yet-observed")
async def spec_change_not_yet_observed(lab: Lab) -> VM:
    vm = await ready_reboot_pending(lab)
    vm.edit(memoryMiB=4096)  # no pass yet
    return vm


@recipe("stopping")
async def stopping(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    vm.edit(powerState="Stopped")
    await lab.reconcile_until(vm, lambda v: v.reason == "Stopping")
    return vm


@recipe("ready-stopped")
async def ready_stopped(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    vm.edit(powerState="Stopped")
    await lab.settle(vm)
    return vm


@recipe("vm-locked")
async def vm_locked(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    lab.sim.set_lock(int(vm.status["vmid"]), "backup")
    await lab.reconcile(vm)  # the drift check finds the lock
    return vm


@recipe("vm-paused")
async def vm_paused(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    lab.sim.pause(int(vm.status["vmid"]))
    await lab.settle(vm)  # the drift check finds the VM paused, and leaves it
    return vm


@recipe("proxmox-unreachable")
async def proxmox_unreachable(lab: Lab) -> VM:
    lab.sim.make_unreachable("refuse")
    vm = VM("web-2", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", spec())
    await lab.reconcile(vm)
    return vm


@recipe("proxmox-unauthorized")
async def proxmox_unauthorized(lab: Lab) -> VM:
    lab.secrets.update(tokenSecret="revoked-in-proxmox")  # Proxmox answers 401
    vm = VM("web-6", "3a4b5c6d-7e8f-4a9b-8c0d-1e2f3a4b5c6d", spec())
    await lab.reconcile(vm)
    return vm


@recipe("invalid-spec")
async def invalid_spec(lab: Lab) -> VM:
    vm = VM("web-3", "8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e", spec(cores=0))
    await lab.reconcile(vm)
    return vm


@recipe("not-owned")
async def not_owned(lab: Lab) -> VM:
    lab.sim.add_vm(150, running=True, name="legacy-db", tags=["legacy"])
    vm = VM("legacy-db", "9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f", spec(vmid=150))
    await lab.settle(vm)
    return vm


@recipe("source-not-found")
async def source_not_found(lab: Lab) -> VM:
    clone = spec(disks=None, source={"cloneFrom": {"vmid": 9000}})
    vm = VM("from-template", "0d1e2f3a-4b5c-4d6e-9f7a-8b9c0d1e2f3a", clone)
    await lab.reconcile_until(vm, lambda v: v.reason == "SourceNotFound")
    return vm


@recipe("connection-unavailable")
async def connection_unavailable(lab: Lab) -> VM:
    missing = spec(connectionRef={"name": "pve-prod"})  # no such Secret
    vm = VM("web-4", "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", missing)
    await lab.reconcile(vm)
    return vm


@recipe("create-failed")
async def create_failed(lab: Lab) -> VM:
    out_of_space = "unable to create VM 100 - lvcreate 'pve/vm-100-disk-0' error: out of space"
    lab.sim.fail_task("qmcreate", message=out_of_space)
    vm = VM("web-5", "2f3a4b5c-6d7e-4f8a-9b0c-1d2e3f4a5b6c", spec())
    await lab.reconcile_until(vm, lambda v: v.reason not in (None, "Provisioning"))
    return vm


@recipe("deleting-not-started")
async def deleting_not_started(lab: Lab) -> VM:
    vm = web_1()
    await lab.settle(vm)
    lab.delete(vm)  # the finalizer has not run yet
    return vm


@recipe("deleting-shutting-down")
async def deleting_shutting_down(lab: Lab) -> VM:
    graceful = spec(destroy={"mode": "Shutdown", "shutdownTimeoutSeconds": 300})
    vm = VM("app-1", "2b3c4d5e-6f70-4a81-9b2c-3d4e5f607182", graceful)
    await lab.settle(vm)
    lab.delete(vm)
    await lab.destroy(vm)  # the first pass asks the guest to shut down
    return vm


@recipe("deleting-stalled-unreachable")
async def deleting_stalled_unreachable(lab: Lab) -> VM:
    vm = VM("db-1", "3c4d5e6f-7081-4b92-8c3d-4e5f60718293", spec())
    await lab.settle(vm)
    lab.sim.make_unreachable("refuse")
    lab.delete(vm)
    await lab.destroy_until(vm, lambda result: result.stalled is not None)
    return vm


# -- running them -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_lab() -> AsyncIterator[Lab]:
    """A fresh simulator and operator: every recipe starts from an empty cluster."""
    sim = Simulator(
        nodes=["pve1", "pve2"], tokens={TOKEN_ID: TOKEN_SECRET}, time_scale=FROZEN, seed=7
    )
    sim.clock.epoch_origin = START.timestamp()  # task UPIDs start at START, not today
    with sim:
        made = Lab(sim)
        try:
            yield made
        finally:
            made.pool.close()


def normalised(value: Any, sim: Simulator) -> Any:
    """``value`` with the simulator's loopback address replaced by a stable, public one."""
    if isinstance(value, str):
        return value.replace(
            f"host='{sim.host}', port={sim.port}", f"host='{PUBLIC_HOST}', port={PUBLIC_PORT}"
        ).replace(f"{sim.host}:{sim.port}", f"{PUBLIC_HOST}:{PUBLIC_PORT}")
    if isinstance(value, dict):
        return {key: normalised(item, sim) for key, item in value.items()}
    if isinstance(value, list):
        return [normalised(item, sim) for item in value]
    return value


async def capture(name: str) -> dict[str, Any]:
    """The object of sample ``name`` as the operator's code leaves it now, normalised."""
    async with open_lab() as lab:
        vm = await RECIPES[name](lab)
        return dict(normalised(vm.manifest(), lab.sim))


def sample_path(name: str) -> Path:
    return SAMPLES_DIR / f"{name}.yaml"


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)


def difference(name: str, committed: Any, produced: Any) -> str:
    """A unified diff of the committed and the produced object, as YAML."""
    lines = difflib.unified_diff(
        dump({"object": committed}).splitlines(),
        dump({"object": produced}).splitlines(),
        f"{name}.yaml (committed)",
        f"{name} (the operator now)",
        lineterm="",
    )
    return "\n".join(lines)


def stale_message(name: str, committed: Any, produced: Any) -> str:
    return (
        f"samples/{name}.yaml no longer shows what the operator writes. Regenerate the samples "
        f"with `{REGENERATE}`, then review each changed sample's healthStatus and kstatus "
        f"expectations (and docs/gitops.md) by hand:\n" + difference(name, committed, produced)
    )


def write(name: str, produced: dict[str, Any]) -> bool:
    """Replace the sample's ``object``, keeping its description and expectations."""
    path = sample_path(name)
    if not path.exists():
        raise SystemExit(
            f"{path} does not exist: write its description, healthStatus and kstatus first "
            "(the expectations are judgements), then run this again"
        )
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["object"] = produced
    text = dump(document)
    if text == path.read_text(encoding="utf-8"):
        return False
    path.write_text(text, encoding="utf-8")
    return True


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.gitops.capture", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the samples' objects")
    parser.add_argument("names", nargs="*", help="samples to capture (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"no recipe for {', '.join(unknown)}; recipes: {', '.join(sorted(RECIPES))}")
    stale = []
    for name in args.names or sorted(RECIPES):
        produced = await capture(name)
        if args.write:
            if write(name, produced):
                print(f"rewrote samples/{name}.yaml: review its healthStatus and kstatus")
            continue
        path = sample_path(name)
        committed = (
            yaml.safe_load(path.read_text(encoding="utf-8"))["object"] if path.exists() else None
        )
        if committed != produced:
            stale.append(name)
            print(difference(name, committed, produced))
    if stale:
        print(f"\n{len(stale)} stale: {', '.join(stale)}; run `{REGENERATE}`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
