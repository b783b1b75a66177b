"""Helpers for the destroy end-to-end tests (tests/e2e/test_destroy_*.py).

They read what the user and Proxmox see: the object through kubectl, the calls through the
simulator's request log. Paths in the log are relative to /api2/json.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from proxmox_vm_operator.simulator.api import RecordedRequest

from .harness import FINALIZER, Cluster, dig

DESTROY_MODE = "proxmox.vmop.dev/destroy-mode"
FORCE_RELEASE = "proxmox.vmop.dev/force-release"

# The simulated clock while a test needs a guest or a task to stay where it is: one real
# second is a thousandth of a simulated one, so a qmshutdown never times out by itself and a
# stop task never ends. Only the operator's own clock and decisions move the destroy on.
FROZEN = 0.001
FAST = 20.0


# ----------------------------------------------------------------------------- the object


def create_running(
    cluster: Cluster, name: str, spec: Mapping[str, Any] | None = None, *, timeout: float = 30
) -> dict[str, Any]:
    """`kubectl apply` a ProxmoxVM and wait until it is Running with a VMID; the object."""
    cluster.apply_vm(name, spec)
    vm = wait_vm(
        cluster,
        name,
        lambda v: dig(v, "status.phase") == "Running" and dig(v, "status.vmid") is not None,
        timeout=timeout,
        what=f"{name} Running with a VMID",
    )
    assert dig(vm, "metadata.finalizers") == [FINALIZER], vm["metadata"]
    return vm


def wait_vm(
    cluster: Cluster,
    name: str,
    check: Callable[[dict[str, Any]], object],
    *,
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Poll the object until ``check(object)`` holds; the object as it was then."""

    def matching() -> dict[str, Any] | None:
        vm = cluster.get_vm(name)
        return vm if vm is not None and check(vm) else None

    found = cluster.wait_for(matching, timeout=timeout, what=what)
    assert found is not None
    return found


def wait_record(
    cluster: Cluster,
    name: str,
    check: Callable[[dict[str, Any]], object],
    *,
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Poll status.destroy until ``check(record)`` holds; the record as it was then."""
    vm = wait_vm(cluster, name, lambda v: check(_record_of(v)), timeout=timeout, what=what)
    return _record_of(vm)


def _record_of(vm: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(dig(vm, "status.destroy", {}) or {})


def condition(vm: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for entry in dig(vm, "status.conditions", []) or []:
        if entry.get("type") == type_:
            return dict(entry)
    return None


def condition_is(vm: Mapping[str, Any] | None, type_: str, status: str, reason: str) -> bool:
    found = condition(vm, type_)
    return found is not None and (found["status"], found["reason"]) == (status, reason)


def event_reasons(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    """(type, reason) of every Event about the ProxmoxVM, oldest first."""
    return [(e.get("type", ""), e.get("reason", "")) for e in cluster.events_for(name)]


def wait_gone(cluster: Cluster, name: str, *, timeout: float) -> None:
    cluster.wait_for(lambda: cluster.get_vm(name) is None, timeout=timeout, what=f"{name} gone")


def assert_held(cluster: Cluster, name: str, seconds: float) -> dict[str, Any]:
    """Poll for ``seconds``: the object stays, being deleted, with the destroy finalizer."""
    deadline = time.monotonic() + seconds
    while True:
        vm = cluster.get_vm(name)
        assert vm is not None, f"{name} was released within {seconds:g} s"
        assert dig(vm, "metadata.deletionTimestamp"), vm["metadata"]
        assert FINALIZER in dig(vm, "metadata.finalizers", []), vm["metadata"]
        if time.monotonic() >= deadline:
            return vm
        time.sleep(0.25)


def destroy_record(cluster: Cluster, name: str) -> dict[str, Any]:
    return _record_of(cluster.get_vm(name))


# --------------------------------------------------------------------------- Proxmox calls


def _vm_path(vmid: int, tail: str = "") -> re.Pattern[str]:
    return re.compile(rf"^/nodes/[^/]+/qemu/{vmid}{tail}$")


def shutdowns(cluster: Cluster, vmid: int) -> list[RecordedRequest]:
    return _matching(cluster, "POST", _vm_path(vmid, "/status/shutdown"))


def stops(cluster: Cluster, vmid: int) -> list[RecordedRequest]:
    return _matching(cluster, "POST", _vm_path(vmid, "/status/stop"))


def deletes(cluster: Cluster, vmid: int) -> list[RecordedRequest]:
    return _matching(cluster, "DELETE", _vm_path(vmid))


def writes_to(cluster: Cluster, vmid: int) -> list[RecordedRequest]:
    """Every call that is not a read, addressed to the VM (its config, power, the VM itself)."""
    about = re.compile(rf"^/nodes/[^/]+/qemu/{vmid}(/|$)")
    return [r for r in cluster.sim.requests if r.method != "GET" and about.search(r.path)]


def task_polls(cluster: Cluster, upid: str) -> int:
    return sum(1 for r in cluster.sim.requests if r.path.endswith(f"/tasks/{upid}/status"))


def _matching(cluster: Cluster, method: str, path: re.Pattern[str]) -> list[RecordedRequest]:
    return [r for r in cluster.sim.requests if r.method == method and path.search(r.path)]


def destructive_counts(cluster: Cluster, vmid: int) -> dict[str, int]:
    return {
        "shutdown": len(shutdowns(cluster, vmid)),
        "stop": len(stops(cluster, vmid)),
        "delete": len(deletes(cluster, vmid)),
    }


def set_protection(cluster: Cluster, vmid: int, on: bool) -> None:
    """Set or clear ``protection: 1`` in the VM's config, as an administrator would."""

    def change() -> None:
        config = cluster.sim.cluster.vms[vmid].config
        if on:
            config["protection"] = 1
        else:
            config.pop("protection", None)

    cluster.sim.call(change)


# ----------------------------------------------------------------------------- kubectl


def kubectl_background(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    """The real kubectl, with the sandbox kubeconfig, running while the test goes on."""
    kubectl = cluster.kubectl
    argv = [kubectl.binary, f"--kubeconfig={kubectl.kubeconfig}"]
    argv += [f"--cache-dir={kubectl.cache_dir}", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def annotate(cluster: Cluster, name: str, key: str, value: str) -> None:
    cluster.kubectl("annotate", "--overwrite", f"proxmoxvm/{name}", f"{key}={value}")


# ----------------------------------------------------------------------------- metrics


def destroy_metrics(cluster: Cluster) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The operator's proxmoxvm_* samples: {(name, labels): value}."""
    text = requests.get(cluster.operator.metrics_url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("proxmoxvm_")
    }


def metric(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def released_as(cluster: Cluster, outcome: str, count: int = 1) -> bool:
    """``count`` releases with this outcome in proxmoxvm_destroy_duration_seconds, any mode."""
    counts = [
        value
        for (name, labels), value in destroy_metrics(cluster).items()
        if name == "proxmoxvm_destroy_duration_seconds_count" and ("outcome", outcome) in labels
    ]
    return sum(counts) == count
