"""Small helpers shared by the e2e lifecycle and operator tests (not a test module).

They read what a user would read: the object through kubectl, the VM through the simulator's
control API, the operator's endpoints over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from proxmox_vm_operator.simulator import RecordedRequest

from .harness import Cluster, dig

OWNERSHIP_TAG_PREFIX = "vmop-"
# Proxmox calls that change something (reads are GET).
WRITES = ("POST", "PUT", "DELETE")


def ownership_tag(vm: Mapping[str, Any]) -> str:
    """The tag the operator must put on the VM of this object: vmop-<metadata.uid>."""
    return f"{OWNERSHIP_TAG_PREFIX}{vm['metadata']['uid']}"


def condition(vm: Mapping[str, Any] | None, type_: str = "Ready") -> dict[str, Any] | None:
    for item in dig(vm, "status.conditions", None) or []:
        if item.get("type") == type_:
            return dict(item)
    return None


def ready(vm: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(status, reason) of the Ready condition, (None, None) while there is none."""
    found = condition(vm, "Ready")
    return (found.get("status"), found.get("reason")) if found else (None, None)


def vm_tags(cluster: Cluster, vmid: int) -> list[str]:
    """The VM's tags as Proxmox stores them (split on ; , and blanks); [] when it is absent."""
    snapshot = cluster.sim.vm(vmid)
    if snapshot is None:
        return []
    raw = str(snapshot["config"].get("tags", ""))
    return sorted(t for t in raw.replace(",", ";").replace(" ", ";").split(";") if t)


def reasons(cluster: Cluster, name: str) -> list[str]:
    return [str(e.get("reason")) for e in cluster.events_for(name)]


def writes(cluster: Cluster, vmid: int | None = None) -> list[RecordedRequest]:
    """Every state-changing Proxmox call so far (for one VMID: its path or vmid parameter)."""
    found = []
    for request in cluster.sim.requests:
        if request.method not in WRITES:
            continue
        if vmid is None or _about(request, vmid):
            found.append(request)
    return found


def _about(request: RecordedRequest, vmid: int) -> bool:
    return f"/qemu/{vmid}/" in f"{request.path}/" or str(request.params.get("vmid")) == str(vmid)


def calls_about(cluster: Cluster, vmid: int) -> list[RecordedRequest]:
    """Every Proxmox call, reads included, that names this VMID in its path or parameters."""
    return [r for r in cluster.sim.requests if _about(r, vmid)]


def wait_object(
    cluster: Cluster,
    predicate: Callable[[], dict[str, Any] | None],
    *,
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """`cluster.wait_for` for a predicate that returns an object once it is there."""
    found = cluster.wait_for(predicate, timeout=timeout, what=what)
    assert found is not None
    return found


def wait_phase(
    cluster: Cluster, name: str, phase: str, *, timeout: float = 30, ready_true: bool = True
) -> dict[str, Any]:
    """Wait for status.phase == phase (and Ready True, unless told otherwise); the object."""

    def reached() -> dict[str, Any] | None:
        vm = cluster.get_vm(name)
        if dig(vm, "status.phase") != phase:
            return None
        if ready_true and ready(vm)[0] != "True":
            return None
        return vm

    return wait_object(cluster, reached, timeout=timeout, what=f"{name} phase {phase}")


def wait_gone(cluster: Cluster, name: str, *, timeout: float = 30) -> None:
    cluster.wait_for(lambda: cluster.get_vm(name) is None, timeout=timeout, what=f"{name} gone")


def wait_reason(
    cluster: Cluster, name: str, reason: str, *, status: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """Wait for the Ready condition to carry `reason` (and `status`); the object."""

    def reached() -> dict[str, Any] | None:
        vm = cluster.get_vm(name)
        got_status, got_reason = ready(vm)
        if got_reason == reason and (status is None or got_status == status):
            return vm
        return None

    return wait_object(cluster, reached, timeout=timeout, what=f"{name} Ready reason {reason}")


def wait_event(cluster: Cluster, name: str, reason: str, *, timeout: float = 30) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((e for e in cluster.events_for(name) if e.get("reason") == reason), None)

    return wait_object(cluster, found, timeout=timeout, what=f"a {reason} event about {name}")


def kpatch(cluster: Cluster, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """`kubectl patch pvm/NAME --type=merge`; the stored object."""
    result: dict[str, Any] = cluster.kubectl.json(
        "patch", f"pvm/{name}", "--type=merge", "-p", json.dumps(patch)
    )
    return result


# ---------------------------------------------------------------------------------- metrics


Sample = tuple[str, dict[str, str], float]


def scrape(cluster: Cluster) -> list[Sample]:
    """Every sample on the operator's /metrics, parsed with prometheus_client's own parser."""
    reply = requests.get(cluster.operator.metrics_url, timeout=5)
    reply.raise_for_status()
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    ]


def samples(all_samples: Iterable[Sample], metric: str, /, **labels: str) -> list[Sample]:
    return [
        s
        for s in all_samples
        if s[0] == metric and all(s[1].get(k) == v for k, v in labels.items())
    ]
