"""The benchmark's scenarios: each starts fresh processes (`bench.sandbox.Stack`), acts as a
user would with kubectl, and turns the records of the simulator, the emulator and the watch
into figures (`bench.figures`). Every scenario returns plain JSON data.

Moments come from one clock (``time.monotonic()``, shared by every process of the machine):
a phase starts when the API server received kubectl's first POST or DELETE of it (kubectl's
own start-up is not the operator's), and ends when the watch saw the last object Ready or gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import pstats
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from . import figures as fig
from .sandbox import NAMESPACE, ObjectTimes, Stack, StackOptions

Log = Callable[[str], None]
K = 4  # --max-tasks-per-node
SINGLE_SETTINGS: Sequence[tuple[str, float | None]] = (
    ("default", None),  # the benchmark's task times
    ("0.05 s tasks", 0.05),
    ("1.2 s tasks", 1.2),
)
SHUTDOWN_T = 3  # spec.destroy.shutdownTimeoutSeconds for the hung guest
WARM_UP_VMID = 100
PLURAL_PATH = f"/namespaces/{NAMESPACE}/proxmoxvms"


@dataclasses.dataclass(frozen=True)
class Config:
    workdir: pathlib.Path
    log: Log
    operator_path: pathlib.Path | None = None
    single_repeats: int = 7
    shutdown_repeats: int = 3
    bulk_sizes: Sequence[int] = (50, 200, 500)
    bulk_nodes: Sequence[int] = (2, 4)
    bulk_vmid: Sequence[bool] = (True, False)
    cap: float = 900.0  # seconds a bulk phase may take before it is cut off
    idle_objects: int = 1000
    idle_settle: float = 30.0
    idle_window: float = 120.0
    profile_objects: int = 200


def node_names(count: int) -> list[str]:
    return [f"pve{i + 1}" for i in range(count)]


def _options(config: Config, nodes: int, **more: Any) -> StackOptions:
    return StackOptions(
        nodes=node_names(nodes),
        timings=dict(fig.TASK_TIMES),
        max_tasks_per_node=K,
        operator_path=config.operator_path,
        **more,
    )


@contextlib.contextmanager
def _stack(config: Config, name: str, options: StackOptions) -> Iterator[Stack]:
    workdir = config.workdir / name
    config.log(f"  starting the stack in {workdir}")
    with Stack(workdir, options) as stack:
        _warm_up(stack)
        yield stack


def _warm_up(stack: Stack) -> None:
    """One object created and deleted, so kopf's start-up is not in any figure."""
    name = "warm-up"
    stack.apply([stack.manifest(name, {"node": "pve1", "vmid": WARM_UP_VMID})])
    if not stack.watch.wait(lambda o: _ready(o, [name]), 180):
        raise RuntimeError(f"the warm-up object never got Ready\n{stack.operator.log_tail()}")
    stack.delete(name)
    if not stack.watch.wait(lambda o: _gone(o, [name]), 180):
        raise RuntimeError(f"the warm-up object never went\n{stack.operator.log_tail()}")


def _ready(objects: Mapping[str, ObjectTimes], names: Sequence[str]) -> bool:
    return all(n in objects and objects[n].ready is not None for n in names)


def _gone(objects: Mapping[str, ObjectTimes], names: Sequence[str]) -> bool:
    return all(n in objects and objects[n].gone is not None for n in names)


def _all_ready(names: Sequence[str]) -> Callable[[Mapping[str, ObjectTimes]], bool]:
    return lambda objects: _ready(objects, names)


def _all_gone(names: Sequence[str]) -> Callable[[Mapping[str, ObjectTimes]], bool]:
    return lambda objects: _gone(objects, names)


def _kubectl_first(
    rows: Sequence[Mapping[str, Any]], method: str, after: float, name: str | None = None
) -> float | None:
    """When the API server got kubectl's first ``method`` on a ProxmoxVM after ``after``."""
    for row in rows:
        if (
            row["t"] >= after
            and row["method"] == method
            and fig.kube_actor(row["agent"]) == "kubectl"
            and PLURAL_PATH in row["path"]
            and (name is None or row["path"].endswith(f"/{name}"))
        ):
            return float(row["t"])
    return None


def _kubectl_last(rows: Sequence[Mapping[str, Any]], method: str, after: float) -> float | None:
    stamps = [
        float(r["t"])
        for r in rows
        if r["t"] >= after
        and r["method"] == method
        and fig.kube_actor(r["agent"]) == "kubectl"
        and PLURAL_PATH in r["path"]
    ]
    return max(stamps) if stamps else None


# ------------------------------------------------------------------ single objects


def _one_lifecycle(
    stack: Stack, name: str, spec: Mapping[str, Any], timeout: float = 180
) -> dict[str, float]:
    """Create one object, let it settle, delete it: the moments (monotonic seconds)."""
    started = time.monotonic()
    stack.apply([stack.manifest(name, spec)])
    if not stack.watch.wait(lambda o: _ready(o, [name]), timeout):
        raise RuntimeError(f"{name} never got Ready\n{stack.operator.log_tail()}")
    time.sleep(1.0)  # settle: what the create still does after Ready counts as the create's
    deleting = time.monotonic()
    stack.delete(name)
    if not stack.watch.wait(lambda o: _gone(o, [name]), timeout):
        raise RuntimeError(f"{name} never went away\n{stack.operator.log_tail()}")
    time.sleep(0.5)
    times = stack.watch.snapshot([name])[name]
    assert times.ready is not None and times.gone is not None
    return {
        "started": started,
        "ready": times.ready,
        "deleting": deleting,
        "gone": times.gone,
        "ended": time.monotonic(),
    }


def _lifecycle_figures(
    moments: Mapping[str, float],
    name: str,
    vmid: int,
    kube: Sequence[Mapping[str, Any]],
    proxmox: Sequence[Mapping[str, Any]],
    tasks: Sequence[fig.TaskRecord],
) -> dict[str, Any]:
    posted = _kubectl_first(kube, "POST", moments["started"], name) or moments["started"]
    delete_at = _kubectl_first(kube, "DELETE", moments["deleting"], name) or moments["deleting"]
    mine = [t for t in tasks if t.id == str(vmid)]
    destroy_tasks = fig.within(mine, delete_at, moments["gone"])
    task_time = fig.task_seconds(destroy_tasks, ("stop", "shutdown", "destroy"))
    total = moments["gone"] - delete_at
    create_window = (moments["started"], delete_at)
    destroy_window = (delete_at, moments["ended"])
    return {
        "vmid": vmid,
        "create_seconds": moments["ready"] - posted,
        "destroy_seconds": total,
        "destroy_task_seconds": task_time,
        "overhead_seconds": fig.overhead(total, task_time),
        "destroy_tasks": fig.count_kinds(destroy_tasks),
        "proxmox_per_create": fig.proxmox_breakdown(fig.in_window(proxmox, *create_window)),
        "proxmox_per_destroy": fig.proxmox_breakdown(fig.in_window(proxmox, *destroy_window)),
        "kube_per_create": fig.kube_breakdown(fig.in_window(kube, *create_window)),
        "kube_per_destroy": fig.kube_breakdown(fig.in_window(kube, *destroy_window)),
    }


def _sum_requests(breakdown: Mapping[str, int], *, writes_only: bool = False) -> int:
    return sum(v for k, v in breakdown.items() if not writes_only or fig.is_write(k))


def _summary(values: Sequence[float]) -> dict[str, Any] | None:
    summary = fig.summarise(values)
    return summary.as_dict() if summary else None


def single_destroys(config: Config) -> dict[str, Any]:
    """One Stop destroy at a time at three task-time settings, and what each create and
    destroy cost in requests. One stack; the task times change between settings."""
    results: list[dict[str, Any]] = []
    requests: dict[str, list[dict[str, Any]]] = {"default": []}
    with _stack(config, "single", _options(config, 4)) as stack:
        for index, (label, seconds) in enumerate(SINGLE_SETTINGS):
            times = dict(fig.TASK_TIMES)
            if seconds is not None:
                times = {k: seconds for k in times}
            stack.sim.set_timings(**times)
            config.log(f"  Stop destroy, {label}: {config.single_repeats} repeats")
            runs = []
            for repeat in range(config.single_repeats):
                vmid = 2000 + 100 * index + repeat
                name = f"single-{index}-{repeat}"
                moments = _one_lifecycle(stack, name, {"node": "pve1", "vmid": vmid})
                runs.append((name, vmid, moments))
            kube, proxmox = stack.api.all_requests(), stack.sim.all_requests()
            tasks = stack.sim.task_records()
            samples = [
                _lifecycle_figures(moments, name, vmid, kube, proxmox, tasks)
                for name, vmid, moments in runs
            ]
            floor = times["stop"] + times["destroy"]
            total = fig.summarise(s["destroy_seconds"] for s in samples)
            results.append(
                {
                    "setting": label,
                    "task_times": times,
                    "floor_seconds": floor,
                    "total": _summary([s["destroy_seconds"] for s in samples]),
                    "task_seconds": _summary([s["destroy_task_seconds"] for s in samples]),
                    "overhead": _summary([s["overhead_seconds"] for s in samples]),
                    "ratio": fig.ratio(total.median if total else None, floor),
                    "samples": samples,
                }
            )
            if label == "default":
                requests["default"] = samples
    return {"settings": results, "requests": _request_figures(requests["default"])}


def _request_figures(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Requests per create and per destroy: medians over the samples, and one breakdown."""
    out: dict[str, Any] = {}
    for phase in ("create", "destroy"):
        proxmox = [_sum_requests(s[f"proxmox_per_{phase}"]) for s in samples]
        kube_writes = [_sum_requests(s[f"kube_per_{phase}"], writes_only=True) for s in samples]
        secret_reads = [s[f"kube_per_{phase}"].get("Secret read", 0) for s in samples]
        out[phase] = {
            "proxmox": _summary(proxmox),
            "kube_writes": _summary(kube_writes),
            "secret_reads": _summary(secret_reads),
            "proxmox_breakdown": samples[len(samples) // 2][f"proxmox_per_{phase}"]
            if samples
            else {},
            "kube_breakdown": samples[len(samples) // 2][f"kube_per_{phase}"] if samples else {},
        }
    return out


def shutdown_hung_guest(config: Config) -> dict[str, Any]:
    """Shutdown mode, T = 3 s, on a guest that ignores ACPI: the total against T + stop +
    destroy, and how long the guest had between the shutdown request and the forced stop."""
    from proxmox_vm_operator.simulator import GuestBehaviour

    times = dict(fig.TASK_TIMES)
    samples: list[dict[str, Any]] = []
    with _stack(config, "shutdown", _options(config, 4)) as stack:
        config.log(f"  Shutdown on a hung guest, T = {SHUTDOWN_T} s: {config.shutdown_repeats}")
        runs = []
        for repeat in range(config.shutdown_repeats):
            vmid, name = 2500 + repeat, f"hung-{repeat}"
            spec = {
                "node": "pve1",
                "vmid": vmid,
                "destroy": {"mode": "Shutdown", "shutdownTimeoutSeconds": SHUTDOWN_T},
            }
            started = time.monotonic()
            stack.apply([stack.manifest(name, spec)])
            if not stack.watch.wait(_all_ready([name]), 180):
                raise RuntimeError(f"{name} never got Ready\n{stack.operator.log_tail()}")
            stack.sim.set_guest(vmid, GuestBehaviour(obeys_acpi=False))
            time.sleep(1.0)
            deleting = time.monotonic()
            stack.delete(name)
            if not stack.watch.wait(_all_gone([name]), 120):
                raise RuntimeError(f"{name} never went away\n{stack.operator.log_tail()}")
            runs.append((name, vmid, started, deleting, stack.watch.snapshot([name])[name]))
            time.sleep(0.5)
        kube, tasks = stack.api.all_requests(), stack.sim.task_records()
        power_offs = stack.sim.power_offs()
    for name, vmid, _started, deleting, obj in runs:
        assert obj.gone is not None
        delete_at = _kubectl_first(kube, "DELETE", deleting, name) or deleting
        mine = fig.within([t for t in tasks if t.id == str(vmid)], delete_at, obj.gone)
        shutdowns = [t.start for t in mine if fig.TASK_TYPES.get(t.type) == "shutdown"]
        offs = [p["t"] for p in power_offs if p["vmid"] == vmid and p["t"] >= delete_at]
        guest_got = None
        if shutdowns and offs:
            # The power-off comes a stop's time after the forced stop began.
            guest_got = offs[0] - times["stop"] - shutdowns[0]
        total = obj.gone - delete_at
        samples.append(
            {
                "vmid": vmid,
                "total_seconds": total,
                "guest_got_seconds": guest_got,
                "tasks": fig.count_kinds(mine),
                "task_seconds": sum(t.end - t.start for t in mine),
            }
        )
    floor = SHUTDOWN_T + times["stop"] + times["destroy"]
    total_summary = fig.summarise(s["total_seconds"] for s in samples)
    return {
        "shutdown_timeout": SHUTDOWN_T,
        "floor_seconds": floor,
        "total": _summary([s["total_seconds"] for s in samples]),
        "overhead": _summary([s["total_seconds"] - floor for s in samples]),
        "guest_got": _summary([s["guest_got_seconds"] for s in samples if s["guest_got_seconds"]]),
        "ratio": fig.ratio(total_summary.median if total_summary else None, floor),
        "samples": samples,
    }


# ---------------------------------------------------------------------------------- bulk


def _phase_figures(
    *,
    n: int,
    nodes: int,
    per_object: float,
    start: float | None,
    end: float | None,
    finished: int,
    capped: bool,
    tasks: Sequence[fig.TaskRecord],
    proxmox: Sequence[Mapping[str, Any]],
    kube: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    ideal = fig.ideal_makespan(n, nodes, K, per_object)
    out: dict[str, Any] = {
        "ideal_seconds": ideal,
        "finished": finished,
        "capped": capped,
        **extra,
    }
    if start is None or end is None:
        return out
    makespan = end - start
    in_phase = fig.within(tasks, start, end)
    prox = fig.in_window(proxmox, start, end)
    kube_rows = fig.in_window(kube, start, end)
    kube_kinds = fig.kube_breakdown(kube_rows)
    out.update(
        makespan_seconds=makespan,
        ratio=fig.ratio(makespan, ideal) if not capped else None,
        utilisation=fig.slot_utilisation(in_phase, nodes, K, start, end),
        peak_per_node=fig.peak_per_node(in_phase),
        tasks=fig.count_kinds(in_phase),
        failed_tasks=sum(1 for t in in_phase if not t.ok),
        proxmox_requests=len(prox),
        proxmox_per_object=len(prox) / n,
        proxmox_breakdown=fig.proxmox_breakdown(prox),
        create_conflicts=fig.create_conflicts(prox),
        kube_writes=_sum_requests(kube_kinds, writes_only=True),
        kube_writes_per_object=_sum_requests(kube_kinds, writes_only=True) / n,
        kube_breakdown=kube_kinds,
    )
    return out


def bulk(config: Config, n: int, nodes: int, with_vmid: bool) -> dict[str, Any]:
    """N objects in one apply, all Ready; then one delete of them all, all gone."""
    label = f"bulk-{n}-{nodes}n-{'vmid' if with_vmid else 'novmid'}"
    names = [f"vm-{i:04d}" for i in range(n)]
    spread = node_names(nodes)
    manifests = []
    for i, name in enumerate(names):
        spec: dict[str, Any] = {"node": spread[i % nodes]}
        if with_vmid:
            spec["vmid"] = 10000 + i
        manifests.append({"name": name, "spec": spec})
    times = fig.TASK_TIMES
    with _stack(config, label, _options(config, nodes)) as stack:
        return _bulk_run(config, stack, n, nodes, names, manifests, times)


def _bulk_run(
    config: Config,
    stack: Stack,
    n: int,
    nodes: int,
    names: Sequence[str],
    manifests: Sequence[Mapping[str, Any]],
    times: Mapping[str, float],
) -> dict[str, Any]:
    watch = stack.watch
    # ---- create
    load_before = os.getloadavg()[0]
    cpu_before = stack.operator_cpu_seconds()
    command = time.monotonic()
    stack.apply([stack.manifest(m["name"], m["spec"]) for m in manifests], timeout=config.cap)
    applied = time.monotonic()
    remaining = max(1.0, config.cap - (applied - command))
    done = watch.wait(lambda o: _ready(o, names), remaining)
    stack.check_alive()
    cpu_created, created_at = stack.operator_cpu_seconds(), time.monotonic()
    objects = watch.snapshot(names)
    ready = [o.ready for o in objects.values() if o.ready is not None]
    create_end = max(ready) if done and ready else time.monotonic()
    vms_after_create = len(stack.sim.vm_ids())
    config.log(
        f"    create: {len(ready)}/{n} Ready after {create_end - command:.1f} s"
        + ("" if done else " (cut off)")
    )
    time.sleep(2.0)
    # ---- delete
    cpu_deleting = stack.operator_cpu_seconds()
    deleting = time.monotonic()
    stack.delete(timeout=config.cap)
    deleted = time.monotonic()
    remaining = max(1.0, config.cap - (deleted - deleting))
    gone_all = watch.wait(lambda o: _gone(o, names), remaining)
    stack.check_alive()
    cpu_deleted, deleted_at = stack.operator_cpu_seconds(), time.monotonic()
    rss = stack.operator_rss_mib()
    objects = watch.snapshot(names)
    gone = [o.gone for o in objects.values() if o.gone is not None]
    delete_end = max(gone) if gone_all and gone else time.monotonic()
    config.log(
        f"    delete: {len(gone)}/{n} gone after {delete_end - deleting:.1f} s"
        + ("" if gone_all else " (cut off)")
    )
    time.sleep(1.0)
    left = stack.sim.vm_ids()
    reasons = stack.event_reasons()
    kube, proxmox = stack.api.all_requests(), stack.sim.all_requests()
    tasks = stack.sim.task_records()

    create_start = _kubectl_first(kube, "POST", command)
    last_post = _kubectl_last(kube, "POST", command)
    delete_start = _kubectl_first(kube, "DELETE", deleting)
    last_delete = _kubectl_last(kube, "DELETE", deleting)
    create = _phase_figures(
        n=n,
        nodes=nodes,
        per_object=times["create"] + times["start"],
        start=create_start,
        end=create_end,
        finished=len(ready),
        capped=not done,
        tasks=tasks,
        proxmox=proxmox,
        kube=kube,
        extra={
            "kubectl_seconds": applied - command,
            "posting_seconds": (last_post - create_start) if create_start and last_post else None,
            "vms_after": vms_after_create,
            "cpu_percent": _cpu_percent(cpu_before, cpu_created, created_at - command),
        },
    )
    delete = _phase_figures(
        n=n,
        nodes=nodes,
        per_object=times["stop"] + times["destroy"],
        start=delete_start,
        end=delete_end,
        finished=len(gone),
        capped=not gone_all,
        tasks=tasks,
        proxmox=proxmox,
        kube=kube,
        extra={
            "kubectl_seconds": deleted - deleting,
            "posting_seconds": (last_delete - delete_start)
            if delete_start and last_delete
            else None,
            "vms_after": len(left),
            "leaked": len(left) if gone_all else None,
            "cpu_percent": _cpu_percent(cpu_deleting, cpu_deleted, deleted_at - deleting),
        },
    )
    return {
        "n": n,
        "nodes": nodes,
        "k": K,
        "create": create,
        "delete": delete,
        "event_reasons": reasons,
        "operator_rss_mib": rss,
        "load_average": [load_before, os.getloadavg()[0]],
    }


def _cpu_percent(before: float | None, after: float | None, seconds: float) -> float | None:
    """The operator's CPU use over a phase, in % of one core."""
    if before is None or after is None or seconds <= 0:
        return None
    return 100 * (after - before) / seconds


def bulk_all(config: Config) -> list[dict[str, Any]]:
    results = []
    for n in config.bulk_sizes:
        for nodes in config.bulk_nodes:
            for with_vmid in config.bulk_vmid:
                config.log(
                    f"  bulk: N = {n} over {nodes} nodes, k = {K}, "
                    f"{'with' if with_vmid else 'without'} spec.vmid"
                )
                result = bulk(config, n, nodes, with_vmid)
                results.append({**result, "vmid": with_vmid})
    return results


# ---------------------------------------------------------------------------------- idle


def _proc_cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _proc_status_kib(pid: int, key: str) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise LookupError(key)


def idle(config: Config) -> dict[str, Any]:
    """N Ready objects (adopted VMs: quicker to set up than N creates), nothing changing:
    the operator's RSS and CPU from /proc, Proxmox and Kubernetes requests per second."""
    n = config.idle_objects
    nodes = node_names(4)
    names = [f"idle-{i:04d}" for i in range(n)]
    with _stack(config, f"idle-{n}", _options(config, 4)) as stack:
        config.log(f"  idle: seeding {n} running VMs, adopting them")
        for i, name in enumerate(names):
            stack.sim.add_vm(30000 + i, nodes[i % 4], name=name, running=True)
        manifests = [
            stack.manifest(name, {"node": nodes[i % 4], "vmid": 30000 + i, "adopt": True})
            for i, name in enumerate(names)
        ]
        command = time.monotonic()
        stack.apply(manifests, timeout=config.cap)
        done = stack.watch.wait(lambda o: _ready(o, names), config.cap)
        stack.check_alive()
        ready = [o.ready for o in stack.watch.snapshot(names).values() if o.ready]
        ready_after = (max(ready) if done and ready else time.monotonic()) - command
        config.log(f"    {len(ready)}/{n} Ready after {ready_after:.1f} s; settling")
        time.sleep(config.idle_settle)
        pid = stack.operator.pid
        assert pid is not None
        rss: list[int] = []
        begin, cpu_begin = time.monotonic(), _proc_cpu_seconds(pid)
        config.log(f"    measuring for {config.idle_window:g} s")
        while (now := time.monotonic()) < begin + config.idle_window:
            rss.append(_proc_status_kib(pid, "VmRSS"))
            time.sleep(min(5.0, begin + config.idle_window - now))
        end, cpu_end = time.monotonic(), _proc_cpu_seconds(pid)
        rss.append(_proc_status_kib(pid, "VmRSS"))
        peak = _proc_status_kib(pid, "VmHWM")  # the most it ever held, adoption included
        stack.check_alive()
        kube = fig.in_window(stack.api.all_requests(), begin, end)
        proxmox = fig.in_window(stack.sim.all_requests(), begin, end)
    window = end - begin
    kube_kinds = fig.kube_breakdown(kube)
    operator_requests = sum(v for k, v in kube_kinds.items() if k != "watch")
    return {
        "objects": n,
        "ready": len(ready),
        "ready_after_seconds": ready_after,
        "all_ready": done,
        "window_seconds": window,
        "rss_mib": max(rss) / 1024,
        "rss_peak_mib": peak / 1024,
        "cpu_percent": 100 * (cpu_end - cpu_begin) / window,
        "proxmox_per_second": len(proxmox) / window,
        "proxmox_breakdown": fig.proxmox_breakdown(proxmox),
        "kube_per_second": operator_requests / window,
        "kube_writes_per_second": _sum_requests(kube_kinds, writes_only=True) / window,
        "kube_breakdown": kube_kinds,
    }


# ------------------------------------------------------------------------------- profile


_STDLIB = re.compile(r"/lib/python3\.\d+/(?!site-packages/)")
_SHORTEN = (
    re.compile(r"^.*/site-packages/"),
    re.compile(r"^.*/(?=proxmox_vm_operator/)"),
    re.compile(r"^.*/lib/python3\.\d+/"),
)


def _short_path(filename: str) -> str:
    for pattern in _SHORTEN:
        if pattern.search(filename):
            return pattern.sub("", filename)
    return filename


def _plumbing(filename: str) -> bool:
    """The interpreter's and the event loop's own frames: builtins, runpy, asyncio..."""
    return filename == "~" or filename.startswith("<") or bool(_STDLIB.search(filename))


def profile_rows(
    stats: Mapping[tuple[str, int, str], tuple[Any, ...]],
    *,
    key: str,
    limit: int = 15,
    skip_plumbing: bool = False,
    total: float | None = None,
) -> list[dict[str, Any]]:
    """The top ``limit`` functions of a `pstats.Stats.stats` table by ``cumtime`` or
    ``tottime``. ``skip_plumbing`` leaves out the standard library's and builtins' frames
    frames, module imports (start-up) and the process's entry chain (the frames above kopf's
    event loop: at least 90 % of ``total``, the profile's whole time), so what is left is where
    the operator's own work went."""
    index = {"cumtime": 3, "tottime": 2}[key]
    items = list(stats.items())
    if skip_plumbing:
        whole = total if total is not None else max((v[3] for _, v in items), default=0.0)
        items = [
            (k, v)
            for k, v in items
            if not _plumbing(k[0]) and k[2] != "<module>" and v[3] < 0.9 * whole
        ]
    ordered = sorted(items, key=lambda item: item[1][index], reverse=True)[:limit]
    rows = []
    for (filename, line, function), (primitive, calls, tottime, cumtime, *_rest) in ordered:
        where = _short_path(filename)
        label = f"{function} ({where}:{line})" if line else f"{function} ({where})"
        ncalls = str(calls) if calls == primitive else f"{calls}/{primitive}"
        rows.append({"function": label, "ncalls": ncalls, "tottime": tottime, "cumtime": cumtime})
    return rows


def profile(config: Config) -> dict[str, Any]:
    """A bulk create and delete (with spec.vmid, 4 nodes) with the operator under cProfile."""
    n = config.profile_objects
    output = config.workdir / "operator.prof"
    options = _options(config, 4, profile_to=output)
    names = [f"prof-{i:04d}" for i in range(n)]
    spread = node_names(4)
    manifests = [
        {"name": name, "spec": {"node": spread[i % 4], "vmid": 20000 + i}}
        for i, name in enumerate(names)
    ]
    config.log(f"  profile: N = {n} over 4 nodes with spec.vmid, operator under cProfile")
    with _stack(config, f"profile-{n}", options) as stack:
        result = _bulk_run(config, stack, n, 4, names, manifests, fig.TASK_TIMES)
    # The stack is stopped: the operator exited on SIGTERM and cProfile wrote its table.
    if not output.exists():
        return {"n": n, "error": "the operator left no profile (it did not exit cleanly)"}
    stats = pstats.Stats(str(output))
    table: Mapping[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = float(getattr(stats, "total_tt", 0.0)) or None
    return {
        "n": n,
        "file": str(output),
        "total_seconds": total,
        "create_makespan_seconds": result["create"].get("makespan_seconds"),
        "delete_makespan_seconds": result["delete"].get("makespan_seconds"),
        "cumulative": profile_rows(table, key="cumtime", skip_plumbing=True, total=total),
        "cumulative_all": profile_rows(table, key="cumtime"),
        "self": profile_rows(table, key="tottime"),
    }
