"""An HA-managed VM is stopped through HA, polled until stopped, then deleted with purge.

Proxmox refuses `overrule-shutdown` for HA resources, and a plain stop of an HA VM is only a
request to the cluster resource manager, which acts on its own schedule: the destroy sends
the stop once, waits until the VM is really stopped, then deletes it with `purge=1`, which
also removes it from the HA resource configuration.
"""

from __future__ import annotations

from .destroy_helpers import (
    deletes,
    destructive_counts,
    event_reasons,
    released_as,
    stops,
    wait_vm,
    writes_to,
)
from .harness import Cluster, dig

VMID = 129


def test_an_adopted_ha_managed_vm_is_stopped_through_ha_and_deleted_with_purge(
    cluster: Cluster,
) -> None:
    cluster.sim.add_vm(VMID, running=True, ha_state="started")
    cluster.apply_vm("web-1", {"vmid": VMID, "adopt": True})
    wait_vm(
        cluster,
        "web-1",
        lambda v: dig(v, "status.phase") == "Running",
        timeout=30,
        what="web-1 adopted and Running",
    )
    assert cluster.sim.call(lambda: VMID in cluster.sim.cluster.ha)
    writes_before = len(writes_to(cluster, VMID))

    cluster.delete_vm("web-1", wait=True, timeout=30)

    assert not cluster.sim.vm_exists(VMID)
    assert not cluster.sim.call(lambda: VMID in cluster.sim.cluster.ha)
    assert destructive_counts(cluster, VMID) == {"shutdown": 0, "stop": 1, "delete": 1}
    (stop,) = stops(cluster, VMID)
    assert stop.params == {} and stop.status == 200  # no overrule-shutdown for HA
    (delete,) = deletes(cluster, VMID)
    assert delete.params == {"purge": "1", "destroy-unreferenced-disks": "1"}
    during = writes_to(cluster, VMID)[writes_before:]
    assert [r.method for r in during] == ["POST", "DELETE"], during
    reasons = event_reasons(cluster, "web-1")
    assert ("Normal", "Stopping") in reasons and ("Normal", "DeletingVM") in reasons
    assert released_as(cluster, "deleted")
