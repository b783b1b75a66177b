"""The regression guard this project exists for: `kubectl delete` of a ProxmoxVM whose guest
ignores ACPI, with the default spec, returns within seconds.

The guest here never powers off when asked to. Before the delete the simulator runs in real
time (time scale 1), so a graceful shutdown would hold the delete for its whole timeout, as
on a real Proxmox VE. The default destroy must not ask the guest at all: one hard
`status/stop` with `overrule-shutdown=1`, then `DELETE` with purge and
destroy-unreferenced-disks, then the object goes. If the default ever became `Shutdown`
(unbounded, or with the 120 s default), the test fails twice over: a shutdown call is
recorded, and the delete does not return within DELETE_BOUND seconds.
"""

from __future__ import annotations

import time

import pytest

from proxmox_vm_operator.simulator import GuestBehaviour, Timings

from .destroy_helpers import (
    create_running,
    deletes,
    destructive_counts,
    event_reasons,
    kubectl_background,
    shutdowns,
    stops,
    writes_to,
)
from .harness import Cluster, dig

VMID = 120
# A hard stop and a delete take about two operator passes (~2.5 s here); a graceful
# shutdown of this guest would take its whole timeout (120 s by default, in real time here).
DELETE_BOUND = 10.0

# Real Proxmox VE kills a VM in well under a second; keep the real-time tasks short.
pytestmark = pytest.mark.sandbox(simulator={"timings": Timings(stop=0.5, destroy=0.5)})


def test_kubectl_delete_hard_stops_a_guest_that_ignores_acpi_and_returns_within_seconds(
    cluster: Cluster,
) -> None:
    vm = create_running(cluster, "web-1", {"vmid": VMID})  # no destroy section: the defaults
    assert dig(vm, "spec.destroy.mode", "Stop") == "Stop"  # absent, or defaulted by the CRD
    assert dig(vm, "status.vmid") == VMID
    cluster.sim.set_guest(VMID, GuestBehaviour(obeys_acpi=False))
    cluster.sim.set_time_scale(1)  # from here on the guest and the tasks run in real time
    writes_before = len(writes_to(cluster, VMID))  # the create and the start

    waiter = kubectl_background(cluster, "wait", "--for=delete", "proxmoxvm/web-1", "--timeout=30s")
    try:
        started = time.monotonic()
        deleted = cluster.kubectl(
            "delete", "proxmoxvm", "web-1", f"--timeout={DELETE_BOUND:g}s",  # blocking
            check=False, timeout=DELETE_BOUND + 10,
        )  # fmt: skip
        took = time.monotonic() - started
        waited_out, waited_err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()

    assert shutdowns(cluster, VMID) == [], "the default destroy asked the guest to shut down"
    assert deleted.returncode == 0, (took, deleted.stdout, deleted.stderr)
    assert 'proxmoxvm.proxmox.vmop.dev "web-1" deleted' in deleted.stdout
    assert took < DELETE_BOUND, f"kubectl delete took {took:.1f} s"
    assert waiter.returncode == 0, (waited_out, waited_err)
    assert cluster.get_vm("web-1") is None
    assert not cluster.sim.vm_exists(VMID)

    # The guest was never asked: one forced stop, then one delete.
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
    (stop,) = stops(cluster, VMID)
    assert stop.params == {"overrule-shutdown": "1"} and stop.status == 200
    (delete,) = deletes(cluster, VMID)
    assert delete.params == {"purge": "1", "destroy-unreferenced-disks": "1"}
    assert delete.status == 200
    # Nothing else was written to the VM during the destroy, and the stop came first.
    during = writes_to(cluster, VMID)[writes_before:]
    assert [(r.method, r.path) for r in during] == [
        ("POST", f"/nodes/pve1/qemu/{VMID}/status/stop"),
        ("DELETE", f"/nodes/pve1/qemu/{VMID}"),
    ]

    reasons = event_reasons(cluster, "web-1")
    assert ("Normal", "Stopping") in reasons and ("Normal", "DeletingVM") in reasons
    assert reasons.index(("Normal", "Stopping")) < reasons.index(("Normal", "DeletingVM"))
    assert not [r for r in reasons if r[1] in ("ShuttingDown", "ShutdownTimedOut")], reasons
    assert not [r for r in reasons if r[0] == "Warning"], reasons


def test_kubectl_wait_for_delete_returns_once_the_destroy_released_the_object(
    cluster: Cluster,
) -> None:
    create_running(cluster, "web-1", {"vmid": VMID})
    cluster.sim.set_guest(VMID, GuestBehaviour(obeys_acpi=False))
    cluster.sim.set_time_scale(1)

    cluster.delete_vm("web-1")  # --wait=false: returns at once, the object is being deleted
    pending = cluster.get_vm("web-1")
    assert pending is not None and dig(pending, "metadata.deletionTimestamp")
    started = time.monotonic()
    waited = cluster.kubectl(
        "wait", "--for=delete", "proxmoxvm/web-1", f"--timeout={DELETE_BOUND:g}s", check=False
    )
    took = time.monotonic() - started

    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert took < DELETE_BOUND
    assert not cluster.sim.vm_exists(VMID)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
