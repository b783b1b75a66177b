"""The behaviour of a Proxmox VE cluster on the paths the operator uses.

Each method is one API call. Its synchronous checks raise :class:`ApiError` (an HTTP error);
everything after the worker is forked runs in a task and fails as :class:`TaskError`, exactly
where qemu-server fails: checks in the API handler before ``fork_worker`` answer with an HTTP
error, while a lock timeout, a locked VM or a failed powerdown inside the worker ends the
task with that exit status after the call returned 200 with a UPID. That split is what a
client must get right.
All methods run on the simulator's event loop thread.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .clock import SimClock, WaitTimedOut
from .errors import ApiError, TaskError, config_missing, flock_timeout, param_error, vm_locked
from .faults import Faults
from .permissions import (
    ROOT_USER,
    Permissions,
    check_serial_options,
    check_vm_config_options,
    permission_denied,
    task_visible_to,
)
from .schema import VM_CONFIG, InvalidValue, normalize_tags
from .state import (
    CLOUD_INIT_KEYS,
    FAST_PLUG_KEYS,
    HOTPLUG_PREFIXES,
    SHARED_STORAGES,
    UPID_PATTERN,
    VM,
    ConfigValue,
    FileLock,
    GuestBehaviour,
    HAResource,
    Node,
    Task,
    Timings,
    make_upid,
    random_mac,
)
from .versions import DEFAULT_VERSION, PveVersion

Params = dict[str, Any]
Worker = Callable[[Task], Awaitable[None]]
Cleanup = Callable[[], None]

DISK_PREFIXES = ("scsi", "virtio", "sata", "ide", "efidisk", "tpmstate")
NEW_DISK = re.compile(r"(?P<storage>[A-Za-z][\w\-.]*):(?P<size>\d+(?:\.\d+)?)(?P<options>,.*)?")
DEFAULT_SHUTDOWN_TIMEOUT = 60


@dataclass(frozen=True)
class Listing:
    """A list reply with PVE's ``total`` next to ``data`` (task lists and logs)."""

    rows: list[dict[str, Any]]
    total: int


def _status_type(exitstatus: str | None) -> str:
    """pve-common upid_normalize_status_type."""
    if not exitstatus:
        return "unknown"
    if exitstatus == "OK":
        return "ok"
    if re.fullmatch(r"WARNINGS: \d+", exitstatus):
        return "warning"
    if exitstatus == "unexpected status":
        return "unknown"
    return "error"


def _agent_enabled(value: ConfigValue | None) -> bool:
    """The ``agent`` property string's default key ``enabled`` (a property-string boolean)."""
    if value is None:
        return False
    for part in str(value).split(","):
        key, sep, flag = part.partition("=")
        if not sep:
            key, flag = "enabled", key
        if key == "enabled":
            return flag.lower() in ("1", "on", "yes", "true")
    return False


def _key_prefix(key: str) -> str:
    return re.sub(r"\d+$", "", key)


class Cluster:
    def __init__(
        self,
        nodes: list[str],
        clock: SimClock,
        timings: Timings,
        faults: Faults,
        seed: int | None = None,
        default_guest: GuestBehaviour | None = None,
        version: PveVersion | None = None,
    ) -> None:
        self.clock = clock
        self.version_info = version or PveVersion.parse(DEFAULT_VERSION)
        self.permissions = Permissions()
        # How the guest of a VM created or cloned through the API behaves.
        self.default_guest = default_guest or GuestBehaviour()
        self.timings = timings
        self.faults = faults
        self.nodes = {name: Node(name) for name in nodes}
        self.vms: dict[int, VM] = {}
        self.containers: dict[int, str] = {}
        self.ha: dict[int, HAResource] = {}
        self.tasks: dict[str, Task] = {}
        self.flocks: dict[int, FileLock] = {}
        self.quorate = True
        self.rng = random.Random(seed)
        self._pids = itertools.count(self.rng.randrange(0x1000, 0x8000))
        self._background: set[asyncio.Task[None]] = set()
        self._ha_jobs: dict[int, asyncio.Task[None]] = {}

    # ----------------------------------------------------------------- helpers

    def background(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        async def run() -> None:
            await coro

        job = asyncio.ensure_future(run())
        self._background.add(job)
        job.add_done_callback(self._background.discard)
        return job

    async def close(self) -> None:
        jobs = [*self._background, *(t.worker for t in self.tasks.values() if t.worker)]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    def node(self, name: str) -> Node:
        """The node a /nodes/{node}/... call is proxied to."""
        node = self.nodes.get(name)
        if node is None:
            raise ApiError(
                500,
                f"hostname lookup '{name}' failed - failed to get address info for: "
                f"{name}: Name or service not known",
            )
        if not node.online:
            raise ApiError(595, "No route to host", empty_body=True)
        return node

    def vm_on_node(self, node: str, vmid: int) -> VM:
        self.node(node)
        vm = self.vms.get(vmid)
        if vm is None or vm.node != node:
            raise ApiError(500, config_missing(node, vmid))
        return vm

    def _vm_in_task(self, node: str, vmid: int) -> VM:
        vm = self.vms.get(vmid)
        if vm is None or vm.node != node:
            raise TaskError(config_missing(node, vmid))
        return vm

    def _require_quorum(self) -> None:
        if not self.quorate:
            raise ApiError(500, "cluster not ready - no quorum?")

    def _ha_managed(self, vmid: int) -> HAResource | None:
        resource = self.ha.get(vmid)
        return resource if resource is not None and resource.managed else None

    def flock_of(self, vmid: int) -> FileLock:
        """``/var/lock/qemu-server/lock-{vmid}.conf``: one per vmid, config or not."""
        lock = self.flocks.get(vmid)
        if lock is None:
            lock = self.flocks[vmid] = FileLock()
        return lock

    @asynccontextmanager
    async def flock(
        self, vm: VM | int, wait: float, *, shared: bool = False
    ) -> AsyncIterator[None]:
        """qemu-server's per-VM file lock; a waiter gives up after ``wait`` seconds."""
        vmid = vm if isinstance(vm, int) else vm.vmid
        lock = self.flock_of(vmid)
        try:
            await self.clock.within(lock.acquire(shared=shared), wait)
        except WaitTimedOut:
            raise TaskError(flock_timeout(vmid)) from None
        try:
            yield
        finally:
            await lock.release(shared=shared)

    async def spawn(
        self,
        node: str,
        task_type: str,
        task_id: str,
        user: str,
        work: Worker,
        cleanup: Cleanup | None = None,
    ) -> str:
        """Fork a worker; ``cleanup`` undoes its side effects when it fails (or is killed)."""
        pid = next(self._pids)
        starttime = int(self.clock.wall())
        pstart = int(self.clock.now() * 100) + 1000
        upid = make_upid(node, pid, pstart, starttime, task_type, task_id, user)
        task = Task(upid, node, task_type, task_id, user, starttime, pid, pstart)
        self.tasks[upid] = task
        counters = self.nodes[node]
        counters.tasks_running += 1
        counters.max_tasks_running = max(counters.max_tasks_running, counters.tasks_running)
        task.worker = asyncio.ensure_future(self._run_task(task, work, cleanup))
        return upid

    async def _run_task(self, task: Task, work: Worker, cleanup: Cleanup | None) -> None:
        try:
            injected = self.faults.take_task_failure(task.type, task.id)
            if injected is not None:
                raise TaskError(injected)
            await work(task)
            task.exitstatus = f"WARNINGS: {task.warnings}" if task.warnings else "OK"
            task.log.append(f"TASK {task.exitstatus}")
        except TaskError as exc:
            message = " ".join(str(exc).split())
            task.exitstatus = message
            task.log.append(f"TASK ERROR: {message}")
            if cleanup is not None:
                cleanup()
        except asyncio.CancelledError:
            # SIGTERM in fork_worker: die "received interrupt\n"
            task.exitstatus = "received interrupt"
            task.log.append("TASK ERROR: received interrupt")
            if cleanup is not None:
                cleanup()
        finally:
            task.endtime = int(self.clock.wall())
            self.nodes[task.node].tasks_running -= 1
            task.finished.set()

    def _allocate(self, vm: VM, values: Mapping[str, Any]) -> dict[str, ConfigValue]:
        """Turn create-style values into stored ones: allocate ``storage:size`` disks, add MACs."""
        stored: dict[str, ConfigValue] = {}
        storages = self.nodes[vm.node].storages
        for key, value in values.items():
            prefix = _key_prefix(key)
            if prefix in DISK_PREFIXES and isinstance(value, str):
                match = NEW_DISK.fullmatch(value)
                if match:
                    storage = match["storage"]
                    if storage not in storages:  # checked before the fork; kept as a guard
                        raise TaskError(f"storage '{storage}' does not exist")
                    volume = f"{storage}:vm-{vm.vmid}-disk-{next(vm.disk_counter)}"
                    options = match["options"] or ""
                    value = f"{volume}{options},size={match['size']}G"
            elif prefix == "net" and isinstance(value, str):
                model, _, rest = value.partition(",")
                if "=" not in model:
                    model = f"{model}={random_mac(self.rng)}"
                value = f"{model},{rest}" if rest else model
            elif key == "description" and isinstance(value, str):
                value = value.rstrip()
            stored[key] = value
        return stored

    def _check_storages(self, node: str, values: Mapping[str, Any], user: str) -> None:
        """Qemu.pm check_storage_access (before the fork): a new disk needs
        Datastore.AllocateSpace on its storage, then the storage must exist (a 500)."""
        for key, value in values.items():
            if _key_prefix(key) in DISK_PREFIXES and isinstance(value, str):
                match = NEW_DISK.fullmatch(value)
                if match is None:
                    continue
                self.permissions.check(
                    user, f"/storage/{match['storage']}", ["Datastore.AllocateSpace"]
                )
                if match["storage"] not in self.nodes[node].storages:
                    raise ApiError(500, f"storage '{match['storage']}' does not exist")

    def _check_pool_exists(self, pool: str | None) -> None:
        """RPCEnvironment.pm check_pool_exist: a 403, for root@pam too."""
        if pool is not None and pool not in self.permissions.pools:
            raise permission_denied(f"pool '{pool}' does not exist")

    def _power_off(self, vm: VM) -> None:
        vm.running = False
        vm.paused = False
        vm.started_at = None

    def _power_on(self, vm: VM) -> None:
        vm.apply_pending()
        vm.running = True
        vm.paused = False
        vm.started_at = self.clock.now()

    async def _guest_shutdown(self, task: Task, vm: VM, timeout: float, force: bool) -> None:
        """The qmshutdown wait: the guest powers off on its own or the timeout runs out."""
        guest = vm.guest
        if guest.obeys_acpi and guest.shutdown_seconds <= timeout:
            await self.clock.sleep(guest.shutdown_seconds)
            self._power_off(vm)
            return
        await self.clock.sleep(timeout)
        if not force:
            raise TaskError("VM quit/powerdown failed - got timeout")
        task.log.append("VM still running - terminating now with SIGTERM")
        await self.clock.sleep(self.timings.stop)
        self._power_off(vm)

    # -------------------------------------------------------------- reads

    def version(self) -> dict[str, Any]:
        """pve-manager PVE/API2.pm version: the pve-manager version, x.y release, git id."""
        info = self.version_info
        return {"version": str(info), "release": info.release, "repoid": info.repoid}

    def list_nodes(self, user: str = ROOT_USER) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Nodes.pm index (API2Tools extract_node_stats): every node is
        listed; its figures only to those with Sys.Audit on it."""
        entries: list[dict[str, Any]] = []
        for node in self.nodes.values():
            entry: dict[str, Any] = {
                "node": node.name,
                "type": "node",
                "id": f"node/{node.name}",
                "status": "online" if node.online else "offline",
            }
            if self.permissions.allowed(user, f"/nodes/{node.name}", ["Sys.Audit"]):
                entry.update(maxcpu=16, maxmem=64 * 2**30)
            entries.append(entry)
        return entries

    def _vm_stats(self, vm: VM) -> dict[str, Any]:
        config = vm.config
        maxmem = vm.memory_mib() * 2**20
        reply: dict[str, Any] = {
            "vmid": vm.vmid,
            "name": vm.name,
            "status": "running" if vm.running else "stopped",
            "cpus": int(config.get("cores", 1)) * int(config.get("sockets", 1)),
            "maxmem": maxmem,
            "mem": maxmem // 2 if vm.running else 0,
            "maxdisk": 32 * 2**30,
            "disk": 0,
            "cpu": 0.02 if vm.running else 0,
            "uptime": int(self.clock.now() - vm.started_at) if vm.started_at is not None else 0,
            "netin": 0,
            "netout": 0,
            "diskread": 0,
            "diskwrite": 0,
        }
        if vm.running:
            reply["pid"] = 10000 + vm.vmid
        if vm.lock:
            reply["lock"] = vm.lock
        if vm.tags():
            reply["tags"] = vm.tags()
        if vm.is_template:
            reply["template"] = 1
        return reply

    def list_vms(self, node: str, user: str = ROOT_USER) -> list[dict[str, Any]]:
        """Qemu.pm vmlist: only VMs the caller has VM.Audit on."""
        self.node(node)
        return [
            self._vm_stats(vm)
            for vm in self.vms.values()
            if vm.node == node and self._can_audit(user, vm.vmid)
        ]

    def _can_audit(self, user: str, vmid: int) -> bool:
        return self.permissions.allowed(user, f"/vms/{vmid}", ["VM.Audit"])

    def status_current(self, node: str, vmid: int) -> dict[str, Any]:
        vm = self.vm_on_node(node, vmid)
        reply = self._vm_stats(vm)
        reply["qmpstatus"] = "paused" if vm.paused else reply["status"]
        resource = self._ha_managed(vmid)
        reply["ha"] = (
            {"managed": 1, "state": resource.service_state} if resource else {"managed": 0}
        )
        if _agent_enabled(vm.config.get("agent")):
            reply["agent"] = 1
        if vm.running:
            qemu = self.version_info.qemu
            reply["running-qemu"] = qemu
            reply["running-machine"] = f"pc-i440fx-{'.'.join(qemu.split('.')[:2])}+pve0"
        return reply

    def refresh_rrd(self) -> None:
        """What pvestatd does every ~10 s: publish each VM's status for /cluster/resources."""
        for vm in self.vms.values():
            stats = self._vm_stats(vm)
            vm.rrd = {k: stats[k] for k in ("status", "name", "uptime", "cpu", "mem", "disk")}

    async def rrd_loop(self) -> None:
        while True:
            self.refresh_rrd()
            await self.clock.sleep(self.timings.rrd_interval, drives_clock=False)

    def cluster_resources(
        self, resource_type: str | None, user: str = ROOT_USER
    ) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Cluster.pm resources: pools, guests, nodes, storages, in that
        order; whatever the caller may not audit is silently left out (no error)."""
        allowed = self.permissions.allowed
        entries: list[dict[str, Any]] = []
        if resource_type is None:
            for pool_name in sorted(self.permissions.pools):
                if allowed(user, f"/pool/{pool_name}", ["Pool.Audit"]):
                    entries.append({"id": f"/pool/{pool_name}", "pool": pool_name, "type": "pool"})
        if resource_type in (None, "vm"):
            guests: list[tuple[int, dict[str, Any]]] = [
                (vm.vmid, self._vm_resource(vm)) for vm in self.vms.values()
            ]
            for vmid, node_name in self.containers.items():
                container = {
                    "id": f"lxc/{vmid}",
                    "type": "lxc",
                    "vmid": vmid,
                    "node": node_name,
                    "status": "running",
                    "name": f"ct{vmid}",
                    "template": 0,
                }
                guests.append((vmid, container))
            for vmid, entry in sorted(guests, key=lambda guest: str(guest[0])):
                if not self._can_audit(user, vmid):
                    continue
                pool = self.permissions.pool_of.get(vmid)
                if pool is not None and allowed(user, f"/pool/{pool}", ["Pool.Audit"]):
                    entry["pool"] = pool
                entries.append(entry)
        if resource_type in (None, "node"):
            entries.extend(self.list_nodes(user))
        if resource_type in (None, "storage"):
            storages = dict.fromkeys(s for node in self.nodes.values() for s in node.storages)
            for storage in storages:
                if not allowed(user, f"/storage/{storage}", ["Datastore.Audit"]):
                    continue
                for node in self.nodes.values():
                    if storage in node.storages:
                        entries.append(
                            {
                                "id": f"storage/{node.name}/{storage}",
                                "type": "storage",
                                "storage": storage,
                                "node": node.name,
                                "status": "available" if node.online else "unknown",
                            }
                        )
        return entries

    def _vm_resource(self, vm: VM) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": f"qemu/{vm.vmid}",
            "type": "qemu",
            "vmid": vm.vmid,
            "node": vm.node,
            "template": 1 if vm.is_template else 0,
            "maxcpu": int(vm.config.get("cores", 1)) * int(vm.config.get("sockets", 1)),
            "maxmem": vm.memory_mib() * 2**20,
            "maxdisk": 32 * 2**30,
        }
        # lock and tags come from the config files and are current; the rest lags behind.
        if vm.lock:
            entry["lock"] = vm.lock
        if vm.tags():
            entry["tags"] = vm.tags()
        resource = self.ha.get(vm.vmid)
        if resource is not None:
            entry["hastate"] = resource.service_state
        if vm.rrd is None or not self.nodes[vm.node].online:
            entry["status"] = "unknown"
        else:
            entry.update(vm.rrd)
        return entry

    def next_id(self, vmid: int | None) -> str:
        used = self.vms.keys() | self.containers.keys()
        if vmid is not None:
            if vmid in used:
                raise param_error({"vmid": f"VM {vmid} already exists"})
            return str(vmid)
        candidate = 100
        while candidate in used:
            candidate += 1
        return str(candidate)

    def config(self, node: str, vmid: int, current: bool) -> dict[str, Any]:
        vm = self.vm_on_node(node, vmid)
        values: dict[str, Any] = dict(vm.config if current else vm.merged_config())
        if "cipassword" in values:
            values["cipassword"] = "**********"
        values["digest"] = vm.digest()
        return values

    def pending(self, node: str, vmid: int) -> list[dict[str, Any]]:
        vm = self.vm_on_node(node, vmid)
        rows: list[dict[str, Any]] = []
        for key in sorted(vm.config.keys() | vm.pending.keys() | vm.pending_delete):
            row: dict[str, Any] = {"key": key}
            if key in vm.config:
                row["value"] = "**********" if key == "cipassword" else vm.config[key]
            if key in vm.pending:
                # qemu-server masks a pending cipassword with a trailing space, verbatim.
                row["pending"] = "********** " if key == "cipassword" else vm.pending[key]
            if key in vm.pending_delete:
                row["delete"] = 1
            rows.append(row)
        return rows

    # ----------------------------------------------------------- create/clone

    async def create_vm(self, user: str, params: Params) -> str:
        node = self.node(params.pop("node")).name
        vmid: int = params.pop("vmid")
        start = params.pop("start", 0)
        ha_managed = params.pop("ha-managed", 0)
        pool: str | None = params.pop("pool", None)
        storage: str | None = params.pop("storage", None)
        for option in ("force", "unique", "archive", "bwlimit", "live-restore"):
            params.pop(option, None)
        self._require_quorum()
        # Qemu.pm create_vm's checks inside the handler, in its order.
        self._check_pool_exists(pool)
        access = self.permissions
        if storage is not None:
            access.check(user, f"/storage/{storage}", ["Datastore.AllocateSpace"])
        if ha_managed:
            access.check(user, "/", ["Sys.Console"])
        if start:
            access.check_vm(user, vmid, pool, ["VM.PowerMgmt"])
        if not access.allowed(user, f"/vms/{vmid}", ["VM.Allocate"]) and not (
            pool and access.allowed(user, f"/pool/{pool}", ["VM.Allocate"])
        ):
            raise permission_denied()
        self._check_storages(node, params, user)
        check_vm_config_options(access, user, vmid, pool, params)
        check_serial_options(access, user, vmid, pool, params)
        # create_and_lock_config, before the fork: under the flock (5 s), the vmid must be
        # unused; a config holding only "lock: create" is written.
        try:
            async with self.flock(vmid, self.timings.flock_wait_create):
                if vmid in self.vms:
                    raise ApiError(
                        500,
                        f"unable to create VM {vmid} - VM {vmid} already exists on node "
                        f"'{self.vms[vmid].node}'",
                    )
                if vmid in self.containers:
                    raise ApiError(
                        500,
                        f"unable to create VM {vmid} - CT {vmid} already exists on node "
                        f"'{self.containers[vmid]}'",
                    )
                vm = VM(vmid=vmid, node=node, config={"lock": "create"}, guest=self.default_guest)
                self.vms[vmid] = vm
        except TaskError as exc:
            raise ApiError(500, f"unable to create VM {vmid} - {exc}") from None

        def remove_config() -> None:
            # A failed qmcreate unlinks the config it wrote.
            if self.vms.get(vmid) is vm:
                del self.vms[vmid]

        async def work(task: Task) -> None:
            try:
                async with self.flock(vm, self.timings.flock_wait_create_worker):
                    await self.clock.sleep(self.timings.create)
                    config = self._allocate(vm, params)
            except TaskError as exc:
                raise TaskError(f"unable to create VM {vmid} - {exc}") from None
            vm.config = {
                **config,
                "smbios1": f"uuid={uuid.UUID(int=self.rng.getrandbits(128))}",
                "vmgenid": str(uuid.UUID(int=self.rng.getrandbits(128))),
                "meta": f"creation-qemu={self.version_info.qemu},ctime={int(self.clock.wall())}",
            }
            if pool is not None:  # AccessControl.pm add_vm_to_pool, at the worker's end
                self.permissions.set_pool(vmid, pool)
            if ha_managed:
                task.log.append("Add as HA resource")
                self.ha[vmid] = HAResource(vmid, "started" if start else "stopped", "stopped")
            if start:
                task.log.append("Execute autostart")
                if ha_managed:  # the CRM starts it
                    self._ha_jobs[vmid] = self.background(self._ha_act(vmid, "started", None))
                else:
                    self._power_on(vm)

        return await self.spawn(node, "qmcreate", str(vmid), user, work, remove_config)

    def _uses_only_shared_storage(self, vm: VM) -> bool:
        for key, value in vm.config.items():
            if _key_prefix(key) in DISK_PREFIXES and isinstance(value, str):
                volume = value.split(",")[0]
                if volume != "none" and volume.split(":")[0] not in SHARED_STORAGES:
                    return False
        return True

    async def clone_vm(self, user: str, params: Params) -> str:
        """qemu-server clone_vm: the early checks run before the fork, in this order."""
        source = self.vm_on_node(params["node"], params["vmid"])
        newid: int = params["newid"]
        storage: str | None = params.get("storage")
        target: str | None = params.get("target")
        pool: str | None = params.get("pool")
        if target == source.node:
            target = None
        self._check_pool_exists(pool)
        if target is not None:
            if target not in self.nodes:
                raise ApiError(500, f"no such cluster node '{target}'")
            self.node(target)
        if storage is not None:
            if storage not in self.nodes[source.node].storages:
                raise ApiError(500, f"storage '{storage}' does not exist")
            if target is not None and storage not in SHARED_STORAGES:
                raise ApiError(500, f"can't clone to non-shared storage '{storage}'")
        self._require_quorum()
        if source.lock:
            raise ApiError(500, vm_locked(source.lock))
        full = bool(params.get("full", 0 if source.is_template else 1))
        if not full and storage is not None:
            raise ApiError(500, "parameter 'storage' not allowed for linked clones")
        if not full and "format" in params:
            raise ApiError(500, "parameter 'format' not allowed for linked clones")
        # Qemu.pm $check_storage_access_clone: space on each disk's storage (or --storage).
        for key, value in source.config.items():
            if _key_prefix(key) in DISK_PREFIXES and isinstance(value, str):
                volume = value.split(",")[0]
                if volume == "none" or "media=cdrom" in value:
                    continue
                disk_storage = storage or volume.split(":")[0]
                self.permissions.check(
                    user, f"/storage/{disk_storage}", ["Datastore.AllocateSpace"]
                )
        if target is not None and not self._uses_only_shared_storage(source):
            raise ApiError(500, f"can't clone VM to node '{target}' (VM uses local storage)")
        if newid in self.vms or newid in self.containers:
            raise ApiError(500, f"unable to create VM {newid}: config file already exists")
        if not full and not source.is_template:
            disk = next((k for k in source.config if _key_prefix(k) in DISK_PREFIXES), "scsi0")
            raise ApiError(500, f"Linked clone feature is not supported for drive '{disk}'")
        created: list[VM] = []

        def remove_clone() -> None:
            # On failure the new disks are freed and the new config removed.
            for clone in created:
                if self.vms.get(newid) is clone:
                    del self.vms[newid]

        # The source is locked shared while stopped (clones of a template run side by side),
        # exclusively while running; then the new vmid. Both waits are 1 s.
        shared = not source.running

        async def work(task: Task) -> None:
            async with (
                self.flock(source, self.timings.flock_wait_clone, shared=shared),
                self.flock(newid, self.timings.flock_wait_clone),
            ):
                if newid in self.vms or newid in self.containers:
                    raise TaskError(f"unable to create VM {newid}: config file already exists")
                # The new config is written at once, holding only "lock: clone".
                clone = VM(
                    vmid=newid, node=source.node, config={"lock": "clone"}, guest=source.guest
                )
                self.vms[newid] = clone
                created.append(clone)
                await self.clock.sleep(
                    self.timings.clone_full if full else self.timings.clone_linked
                )
                config = {
                    key: value
                    for key, value in source.config.items()
                    if key not in ("template", "lock") and not key.startswith("unused")
                }
                for key, value in list(config.items()):
                    prefix = _key_prefix(key)
                    if prefix == "net" and isinstance(value, str):
                        model, _, rest = value.partition(",")
                        model = f"{model.split('=')[0]}={random_mac(self.rng)}"
                        config[key] = f"{model},{rest}" if rest else model
                    elif (
                        prefix in DISK_PREFIXES
                        and isinstance(value, str)
                        and "media=cdrom" not in value
                    ):
                        volume, _, options = value.partition(",")
                        disk_storage = storage or volume.split(":")[0]
                        index = next(clone.disk_counter)
                        config[key] = f"{disk_storage}:vm-{newid}-disk-{index},{options}".rstrip(
                            ","
                        )
                config["name"] = params.get("name", f"Copy-of-VM-{source.name}")
                if "description" in params:
                    config["description"] = params["description"]
                config["smbios1"] = f"uuid={uuid.UUID(int=self.rng.getrandbits(128))}"
                if "vmgenid" in config:
                    config["vmgenid"] = str(uuid.UUID(int=self.rng.getrandbits(128)))
                if source.pending or source.pending_delete:
                    task.warnings += 1
                    task.log.append("WARN: discarding pending changes of the source VM")
                clone.config = config
                if pool is not None:
                    self.permissions.set_pool(newid, pool)
                if target is not None:
                    clone.node = target

        return await self.spawn(source.node, "qmclone", str(source.vmid), user, work, remove_clone)

    # ------------------------------------------------------------------ config

    async def update_config(self, user: str, params: Params, *, synchronous: bool) -> str | None:
        node: str = params.pop("node")
        vmid: int = params.pop("vmid")
        vm = self.vm_on_node(node, vmid)
        self._require_quorum()
        digest = params.pop("digest", None)
        deletions = [k for k in re.split(r"[,;\s]+", params.pop("delete", "")) if k]
        params.pop("revert", None)
        params.pop("force", None)
        background_delay: int | None = params.pop("background_delay", None)
        skiplock = params.pop("skiplock", 0)
        for key in deletions:
            if key in params:
                raise param_error(
                    {"delete": f"you can't use '-{key}' and -delete {key}' at the same time"}
                )
            if VM_CONFIG.lookup(key) is None:
                raise param_error({"delete": f"unknown option '{key}'"})
        if not params and not deletions:
            raise ApiError(500, "no options specified")
        # Qemu.pm $update_vm_api: each deleted, then each set option's privilege; tags are
        # checked later, under the lock (assert_tag_permissions).
        check_vm_config_options(self.permissions, user, vmid, None, deletions)
        check_vm_config_options(self.permissions, user, vmid, None, params)
        check_serial_options(self.permissions, user, vmid, None, params)
        self._check_storages(node, params, user)
        # The early checks, before forking or locking; repeated under the flock.
        if digest is not None and digest != vm.digest():
            raise ApiError(500, "checksum mismatch (file change by other user?)")
        if vm.lock and not skiplock:
            raise ApiError(500, vm_locked(vm.lock))

        async def apply(task: Task | None) -> None:
            async with self.flock(vm, self.timings.flock_wait):
                if digest is not None and digest != vm.digest():
                    raise TaskError("checksum mismatch (file change by other user?)")
                if vm.lock and not skiplock:
                    raise TaskError(vm_locked(vm.lock))
                if "tags" in params or "tags" in deletions:
                    self._check_tag_change(user, vm, task)
                if task is not None:
                    await self.clock.sleep(self.timings.config)
                for key in deletions:
                    vm.pending.pop(key, None)
                    if key not in vm.config:
                        if task is not None:
                            task.log.append(
                                f"cannot delete '{key}' - not set in current configuration!"
                            )
                    elif not vm.running or self._applies_live(key):
                        vm.config.pop(key)
                    else:
                        vm.pending_delete.add(key)
                changes = self._allocate(vm, params)
                for key, value in changes.items():
                    vm.pending_delete.discard(key)
                    if not vm.running or self._applies_live(key):
                        vm.config[key] = value
                        vm.pending.pop(key, None)
                    elif vm.config.get(key) == value:
                        vm.pending.pop(key, None)  # cleanup_pending: nothing would change
                    else:
                        vm.pending[key] = value

        if synchronous:
            try:
                await apply(None)
            except TaskError as exc:
                raise ApiError(500, str(exc)) from None
            return None
        upid = await self.spawn(node, "qmconfig", str(vmid), user, apply)
        if background_delay:
            # Wait for the task a little: null if it ended well in time, 500 if it failed.
            task = self.tasks[upid]
            try:
                await self.clock.within(task.finished.wait(), background_delay)
            except WaitTimedOut:
                return upid
            status = task.exitstatus or ""
            if status == "OK" or status.startswith("WARNINGS"):
                return None
            raise ApiError(500, f"failed to update VM {vmid}: {status}")
        return upid

    def _check_tag_change(self, user: str, vm: VM, task: Task | None) -> None:
        """pve-guest-common GuestHelpers.pm assert_tag_permissions (under the config lock):
        VM.Config.Options on the VM. The default tag policy (user-tag-access free, no
        registered tags) needs nothing more."""
        try:
            self.permissions.check_vm(user, vm.vmid, None, ["VM.Config.Options"])
        except ApiError as refused:
            if task is None:
                raise
            raise TaskError(refused.message) from None

    @staticmethod
    def _applies_live(key: str) -> bool:
        return (
            key in FAST_PLUG_KEYS or key in CLOUD_INIT_KEYS or _key_prefix(key) in HOTPLUG_PREFIXES
        )

    # ------------------------------------------------------------------- power

    async def start(self, user: str, params: Params) -> str:
        node = self.node(params["node"]).name
        vmid: int = params["vmid"]
        self._require_quorum()
        resource = self._ha_managed(vmid)
        if resource is not None:
            return await self._ha_request(node, vmid, user, "hastart", "started", None)

        async def work(task: Task) -> None:
            vm = self._vm_in_task(node, vmid)
            async with self.flock(vm, self.timings.flock_wait):
                if vm.is_template:
                    raise TaskError("you can't start a vm if it's a template")
                if vm.running:
                    raise TaskError(f"VM {vmid} already running")
                if vm.lock and vm.lock != "suspended" and not params.get("skiplock"):
                    raise TaskError(vm_locked(vm.lock))
                await self.clock.sleep(self.timings.start)
                self._power_on(vm)

        return await self.spawn(node, "qmstart", str(vmid), user, work)

    async def stop(self, user: str, params: Params) -> str:
        node = self.node(params["node"]).name
        vmid: int = params["vmid"]
        overrule = bool(params.get("overrule-shutdown"))
        if self._ha_managed(vmid) is not None:
            if overrule:
                raise param_error({"overrule-shutdown": "Not applicable for HA resources."})
            return await self._ha_request(node, vmid, user, "hastop", "stopped", None)

        async def work(task: Task) -> None:
            if overrule:
                # Qemu.pm vm_stop calls abort_guest_tasks in the worker, before vm_stop.
                killed = await self._abort_guest_tasks(user, node, "qmshutdown", vmid)
                if killed:
                    task.log.append(f"overruled qmshutdown tasks: {', '.join(killed)}")
            vm = self._vm_in_task(node, vmid)
            async with self.flock(vm, self.timings.flock_wait):
                if not vm.running:
                    return
                if vm.lock and not params.get("skiplock"):
                    raise TaskError(vm_locked(vm.lock))
                await self.clock.sleep(self.timings.stop)
                self._power_off(vm)

        return await self.spawn(node, "qmstop", str(vmid), user, work)

    async def _abort_guest_tasks(
        self, user: str, node: str, task_type: str, vmid: int
    ) -> list[str]:
        """pve-guest-common PVE/GuestHelpers.pm abort_guest_tasks: the active ``task_type``
        tasks of the VM on this node that ``user`` may abort are killed (SIGTERM, then the
        caller waits up to 5 s for them to die: RESTEnvironment.pm check_worker). With
        Sys.Modify on /nodes/NODE every such task; else a user's own tasks and those of its
        tokens, and a token's own."""
        abort_all = self.permissions.allowed(user, f"/nodes/{node}", ["Sys.Modify"])
        victims = [
            t
            for t in self.tasks.values()
            if t.node == node
            and t.type == task_type
            and t.id == str(vmid)
            and t.running
            and t.worker is not None
            and (abort_all or task_visible_to(t.user, user))
        ]
        for victim in victims:
            assert victim.worker is not None
            victim.worker.cancel()
        for victim in victims:
            await victim.finished.wait()
        return [t.upid for t in victims]

    def _shutdown_timeout(self, vm: VM | None, params: Params) -> int:
        if "timeout" in params:
            return int(params["timeout"])
        startup = str(vm.config.get("startup", "")) if vm else ""
        match = re.search(r"down=(\d+)", startup)
        return int(match.group(1)) if match else DEFAULT_SHUTDOWN_TIMEOUT

    async def shutdown(self, user: str, params: Params) -> str:
        node = self.node(params["node"]).name
        vmid: int = params["vmid"]
        force = bool(params.get("forceStop"))
        existing = self.vms.get(vmid)
        if existing is not None and existing.paused and not force:
            raise ApiError(500, "VM is paused - cannot shutdown")
        timeout = self._shutdown_timeout(existing, params)
        if self._ha_managed(vmid) is not None:
            return await self._ha_request(node, vmid, user, "hastop", "stopped", timeout)

        async def work(task: Task) -> None:
            vm = self._vm_in_task(node, vmid)
            async with self.flock(vm, self.timings.flock_wait):
                if not vm.running:
                    return
                if vm.lock and not params.get("skiplock"):
                    raise TaskError(vm_locked(vm.lock))
                if vm.paused:  # forceStop turns a paused VM's shutdown into a stop
                    await self.clock.sleep(self.timings.stop)
                    self._power_off(vm)
                    return
                await self._guest_shutdown(task, vm, timeout, force)

        return await self.spawn(node, "qmshutdown", str(vmid), user, work)

    async def reboot(self, user: str, params: Params) -> str:
        vm = self.vm_on_node(params["node"], params["vmid"])
        if not vm.running:
            raise ApiError(500, f"VM {vm.vmid} not running")
        if vm.paused:
            raise ApiError(500, "VM is paused - cannot shutdown")
        timeout = self._shutdown_timeout(vm, params)

        async def work(task: Task) -> None:
            async with self.flock(vm, self.timings.flock_wait):
                if vm.lock:
                    raise TaskError(vm_locked(vm.lock))
                await self._guest_shutdown(task, vm, timeout, force=False)
            # qmeventd starts the VM again, applying pending changes.
            await self.clock.sleep(self.timings.start)
            self._power_on(vm)

        return await self.spawn(vm.node, "qmreboot", str(vm.vmid), user, work)

    # ------------------------------------------------------------------ delete

    def _destroy_checks(self, vm: VM, purge: bool) -> str | None:
        """Qemu.pm destroy_vm $early_checks, in order (load_config is the caller's)."""
        if vm.config.get("protection") == 1:
            return f"can't remove VM {vm.vmid} - protection mode enabled"
        # HA::Config::service_is_configured: any resource entry, whatever its state.
        if vm.vmid in self.ha and not purge:
            return (
                f"unable to remove VM {vm.vmid} - used in HA resources and purge parameter not set."
            )
        if vm.running:
            return f"VM {vm.vmid} is running - destroy failed"
        return None

    async def destroy(self, user: str, params: Params) -> str:
        """qemu-server PVE/API2/Qemu.pm destroy_vm.

        Before the fork, the early checks; no quorum check (nothing is written yet). In the
        worker, under the config flock: the early checks again (the config may have changed
        or gone), then QemuServer.pm destroy_vm in its phases:
        (a) the config lock is checked and the volumes are freed, the config untouched;
        (b) the config is replaced by one holding only ``lock: destroyed``;
        (c) the VM's ACLs and firewall rules go, with purge also replication, backup jobs and
        HA; only then the config file is removed (so its vmid cannot be reused meanwhile).
        """
        node = params["node"]
        vmid: int = params["vmid"]
        first = self.vm_on_node(node, vmid)
        purge = bool(params.get("purge"))
        problem = self._destroy_checks(first, purge)
        if problem:
            raise ApiError(500, problem)
        # Phase (a) takes most of the time; freeing volumes is the slow part.
        freeing, rewriting, cleaning = (self.timings.destroy * share for share in (0.8, 0.1, 0.1))

        async def work(task: Task) -> None:
            async with self.flock(vmid, self.timings.flock_wait):
                vm = self._vm_in_task(node, vmid)  # load_config: it may be gone by now
                problem = self._destroy_checks(vm, purge)
                if problem:
                    raise TaskError(problem)
                # (a) QemuServer.pm destroy_vm: check_lock unless skiplock or "suspended".
                if vm.lock and vm.lock != "suspended" and not params.get("skiplock"):
                    raise TaskError(vm_locked(vm.lock))
                await self.clock.sleep(freeing)
                if params.get("destroy-unreferenced-disks"):
                    task.log.append(f"destroying unreferenced disks of VM {vmid}")
                # (b) write_config of the replacement { lock => 'destroyed' }: on a cluster
                # without quorum /etc/pve is read-only and this fails, the disks already gone.
                if not self.quorate:
                    raise TaskError(
                        f"unable to open file '/etc/pve/nodes/{node}/qemu-server/{vmid}.conf"
                        f".tmp.{task.pid}' - Permission denied"
                    )
                vm.config = {"lock": "destroyed"}
                vm.pending.clear()
                vm.pending_delete.clear()
                await self.clock.sleep(rewriting)
                # (c) remove_vm_access, remove_vmfw_conf, then with purge the related configs.
                self.permissions.remove_vm(vmid)
                if purge:
                    task.log.append(f"purging VM {vmid} from related configurations..")
                    if self.ha.pop(vmid, None) is not None:
                        job = self._ha_jobs.pop(vmid, None)
                        if job is not None:
                            job.cancel()
                        task.log.append(f"NOTE: removed VM {vmid} from HA resource configuration.")
                await self.clock.sleep(cleaning)
                if self.vms.get(vmid) is vm:
                    del self.vms[vmid]

        return await self.spawn(node, "qmdestroy", str(vmid), user, work)

    # ---------------------------------------------------------------------- HA

    async def _ha_request(
        self,
        node: str,
        vmid: int,
        user: str,
        task_type: str,
        target: str,
        shutdown_timeout: int | None,
    ) -> str:
        """hastart/hastop only record the request and end OK; the CRM acts later."""

        async def work(task: Task) -> None:
            resource = self.ha[vmid]
            if target == "started":  # ha-manager set vm:N --state started
                resource.state = target
                task.log.append(f"Requesting HA start for VM {vmid}")
            else:  # ha-manager crm-command stop vm:N <timeout>: the CRM changes the state
                task.log.append(f"Requesting HA stop for VM {vmid}")
            previous = self._ha_jobs.pop(vmid, None)
            if previous is not None:
                previous.cancel()
            self._ha_jobs[vmid] = self.background(self._ha_act(vmid, target, shutdown_timeout))

        return await self.spawn(node, task_type, str(vmid), user, work)

    async def _ha_act(self, vmid: int, target: str, shutdown_timeout: int | None) -> None:
        resource = self.ha.get(vmid)
        vm = self.vms.get(vmid)
        if resource is None or vm is None:
            return
        await self.clock.sleep(self.timings.ha_delay / 2)
        resource.service_state = "request_start" if target == "started" else "request_stop"
        resource.state = target  # the CRM records the requested state in resources.cfg
        await self.clock.sleep(self.timings.ha_delay / 2)
        try:
            async with self.flock(vm, self.timings.flock_wait):
                if target == "started":
                    if not vm.running:
                        await self.clock.sleep(self.timings.start)
                        self._power_on(vm)
                elif vm.running:
                    if shutdown_timeout is None:
                        await self.clock.sleep(self.timings.stop)
                        self._power_off(vm)
                    else:
                        # The LRM always shuts down with forceStop=1.
                        guest = vm.guest
                        if guest.obeys_acpi and guest.shutdown_seconds <= shutdown_timeout:
                            await self.clock.sleep(guest.shutdown_seconds)
                        else:
                            await self.clock.sleep(shutdown_timeout + self.timings.stop)
                        self._power_off(vm)
        except TaskError:
            resource.service_state = "error"
            return
        resource.service_state = target

    def ha_resources(self) -> list[dict[str, Any]]:
        return [self._ha_entry(r) for r in sorted(self.ha.values(), key=lambda r: r.vmid)]

    def _ha_entry(self, resource: HAResource) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "sid": resource.sid,
            "type": "vm",
            "state": resource.state,
            "digest": f"{hash((resource.vmid, resource.state)) & 0xFFFFFFFF:08x}",
        }
        if resource.comment:
            entry["comment"] = resource.comment
        return entry

    def _ha_vmid(self, sid: str) -> int:
        return int(sid.split(":")[-1])

    def ha_resource(self, sid: str) -> dict[str, Any]:
        resource = self.ha.get(self._ha_vmid(sid))
        if resource is None:
            raise ApiError(500, f"no such resource '{sid}'")
        return self._ha_entry(resource)

    def ha_add(self, params: Params) -> None:
        self._require_quorum()
        vmid = self._ha_vmid(params["sid"])
        if vmid not in self.vms:
            raise ApiError(500, f"unable to find VM '{vmid}'")
        if vmid in self.ha:
            raise ApiError(500, f"resource ID 'vm:{vmid}' already defined")
        state = params.get("state", "started")
        state = "started" if state == "enabled" else state
        vm = self.vms[vmid]
        self.ha[vmid] = HAResource(
            vmid, state, "started" if vm.running else "stopped", params.get("comment", "")
        )
        if state in ("started", "stopped"):
            self._ha_jobs[vmid] = self.background(self._ha_act(vmid, state, None))

    def ha_remove(self, sid: str) -> None:
        self._require_quorum()
        vmid = self._ha_vmid(sid)
        if self.ha.pop(vmid, None) is None:
            raise ApiError(500, f"cannot delete service 'vm:{vmid}', not HA managed!")
        job = self._ha_jobs.pop(vmid, None)
        if job is not None:
            job.cancel()

    # ------------------------------------------------------------------- tasks

    def task(self, node: str, upid: str, user: str = ROOT_USER) -> Task:
        """pve-manager PVE/API2/Tasks.pm read_task_status: another's task needs Sys.Audit."""
        task = self._find_task(node, upid)
        if not task_visible_to(task.user, user):
            self.permissions.check(user, f"/nodes/{node}", ["Sys.Audit"])
        return task

    def _find_task(self, node: str, upid: str) -> Task:
        self.node(node)
        if not UPID_PATTERN.fullmatch(upid):
            raise param_error({"upid": "unable to parse worker upid"})
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            raise param_error({"upid": "no such task"})
        return task

    def task_log(
        self, node: str, upid: str, start: int, limit: int, user: str = ROOT_USER
    ) -> Listing:
        """PVE's dump_logfile: lines numbered from 1, ``limit=0`` reads to the end. Tasks.pm
        read_task_log: another's task needs Sys.Audit on the node."""
        lines = self.task(node, upid, user).log
        if not lines:
            return Listing([{"n": 1, "t": "no content"}], 1)
        chosen = lines[start:] if limit == 0 else lines[start : start + limit]
        rows = [{"n": n, "t": line} for n, line in enumerate(chosen, start + 1)]
        return Listing(rows, len(lines))

    def task_list(self, node: str, params: Params, user: str = ROOT_USER) -> Listing:
        """pve-manager node_tasks: running tasks (source=active|all), then finished ones.

        Without Sys.Audit on the node the caller sees only its own tasks ($check_task_user).
        Running tasks come from the active list, whose ``user`` is the UPID's as written, so
        a user does not see its tokens' running tasks there, only their finished ones.
        """
        self.node(node)
        auditor = self.permissions.allowed(user, f"/nodes/{node}", ["Sys.Audit"])
        source = params.get("source", "archive")
        wanted = {"ok", "warning", "error", "unknown"}
        if params.get("errors"):
            wanted.discard("ok")
        elif "statusfilter" in params:
            wanted = {f.lower() for f in re.split(r"[;,\s]+", params["statusfilter"]) if f}
        userfilter = str(params.get("userfilter", "")).lower()
        mine = sorted(
            (t for t in self.tasks.values() if t.node == node),
            key=lambda t: (t.starttime, t.pid),
            reverse=True,
        )
        running = [t for t in mine if t.running] if source in ("active", "all") else []
        finished = [t for t in mine if not t.running] if source != "active" else []
        rows: list[dict[str, Any]] = []
        count = 0
        start, limit = params.get("start", 0), params.get("limit", 50)
        for task in [*running, *finished]:
            row: dict[str, Any] = {
                "upid": task.upid,
                "node": task.node,
                "pid": task.pid,
                "pstart": task.pstart,
                "starttime": task.starttime,
                "type": task.type,
                "id": task.id,
                "user": task.user,
            }
            if not task.running:
                # Index entries are converted: user and tokenid apart (active ones are not).
                owner, _, tokenid = task.user.partition("!")
                row["user"] = owner
                if tokenid:
                    row["tokenid"] = tokenid
                row["endtime"] = task.endtime
                row["status"] = task.exitstatus
            if userfilter and userfilter not in row["user"].lower():
                continue
            if not auditor and not (
                task_visible_to(task.user, user) if not task.running else task.user == user
            ):
                continue
            if "vmid" in params and task.id != str(params["vmid"]):
                continue
            if "typefilter" in params and task.type != params["typefilter"]:
                continue
            if "since" in params and task.starttime < params["since"]:
                continue
            if "until" in params and task.starttime > params["until"]:
                continue
            if _status_type(task.exitstatus) not in wanted:
                continue
            count += 1
            if count <= start or len(rows) >= limit:
                continue
            if task.running:
                row["status"] = "RUNNING"
            rows.append(row)
        return Listing(rows, count)

    def kill_task(self, node: str, upid: str, user: str = ROOT_USER) -> None:
        """Tasks.pm stop_task: another's task needs Sys.Modify on the node."""
        task = self._find_task(node, upid)
        if not task_visible_to(task.user, user):
            self.permissions.check(user, f"/nodes/{node}", ["Sys.Modify"])
        if task.running and task.worker is not None:
            task.worker.cancel()

    # ---------------------------------------------------- seeding (for tests)

    def add_vm(
        self,
        vmid: int,
        node: str,
        config: Mapping[str, ConfigValue],
        *,
        running: bool,
        guest: GuestBehaviour,
    ) -> VM:
        if node not in self.nodes:
            raise ValueError(f"unknown node {node!r}")
        if vmid in self.vms or vmid in self.containers:
            raise ValueError(f"vmid {vmid} is taken")
        stored = dict(config)
        if "tags" in stored:
            try:
                stored["tags"] = normalize_tags(stored["tags"])
            except InvalidValue as exc:
                raise ValueError(str(exc)) from None
        vm = VM(vmid=vmid, node=node, config={"memory": "2048", "cores": 1, **stored}, guest=guest)
        self.vms[vmid] = vm
        if running:
            self._power_on(vm)
        return vm
