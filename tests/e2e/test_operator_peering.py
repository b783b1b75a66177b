"""`proxmox-vm-operator run` without --standalone: kopf peering, for more than one replica.

kopf's peering CRDs (tests/kubeapi/manifests/kopf-peering-crds.yaml) and the KopfPeering kopf
looks for by default (namespaced, named "default", in the watched namespace) are installed
first. One peered operator announces itself in the peering and does its work; two replicas
must not both work on an object (one create and one DELETE reach Proxmox) and must not both
stand still either."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from .harness import REPO, Cluster, OperatorLaunch, OperatorProcess, operator_command
from .lifecycle_helpers import wait_gone, wait_phase, writes

PEERING_CRDS = REPO / "tests" / "kubeapi" / "manifests" / "kopf-peering-crds.yaml"
PEERING_NAME = "default"  # kopf's settings.peering.name default


def peered(launch: OperatorLaunch) -> Sequence[str]:
    """The harness's real operator command, without --standalone."""
    command = list(operator_command()(launch))
    command.remove("--standalone")
    return command


pytestmark = pytest.mark.sandbox(operator=False, operator_command=peered, wait_ready=True)


def install_peering(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(PEERING_CRDS))
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=established", f"crd/{crd}", "--timeout=10s")
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": PEERING_NAME, "namespace": cluster.namespace},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(peering))


def peers(cluster: Cluster) -> dict[str, dict[str, object]]:
    """The live operators announced in the KopfPeering: {identity: {priority, lastseen, ...}}."""
    peering = cluster.kubectl.json("get", "kopfpeering", PEERING_NAME)
    return {k: v for k, v in (peering.get("status") or {}).items() if isinstance(v, dict)}


@pytest.fixture
def second_operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    """Another replica of the peered operator, with its own ports and log; stopped after."""
    replica = OperatorProcess(
        peered,
        namespace=cluster.namespace,
        kubeconfig=cluster.kubeconfig,
        log_path=cluster.workdir / "operator-2.log",
        wait_ready=True,
    )
    try:
        yield replica
    finally:
        replica.stop()


def lifecycle_of_one_vm(cluster: Cluster, vmid: int, *, timeout: float) -> None:
    cluster.apply_vm("web-1", {"vmid": vmid})
    wait_phase(cluster, "web-1", "Running", timeout=timeout)
    cluster.delete_vm("web-1")
    wait_gone(cluster, "web-1", timeout=timeout)
    assert not cluster.sim.vm_exists(vmid)
    creates = [r for r in writes(cluster) if r.path == "/nodes/pve1/qemu" and r.method == "POST"]
    deletes = [r for r in writes(cluster, vmid) if r.method == "DELETE"]
    starts = [r for r in writes(cluster, vmid) if r.path.endswith("/status/start")]
    assert (len(creates), len(starts), len(deletes)) == (1, 1, 1), writes(cluster)


def test_a_peered_operator_announces_itself_and_does_its_work(cluster: Cluster) -> None:
    install_peering(cluster)
    cluster.operator.start()
    cluster.wait_for(lambda: len(peers(cluster)) == 1, timeout=20, what="one peer announced")
    (peer,) = peers(cluster).values()
    # Without --priority each replica picks a random one, so two replicas never tie.
    assert peer.get("priority", 0) > 0 and peer.get("lastseen"), peer

    lifecycle_of_one_vm(cluster, 900, timeout=30)
    assert "Pausing" not in cluster.operator.log_text()

    assert cluster.operator.stop() == 0, cluster.operator.log_tail()
    assert peers(cluster) == {}, "a stopped operator leaves the peering"


def test_two_peered_replicas_do_the_work_once(
    cluster: Cluster, second_operator: OperatorProcess
) -> None:
    install_peering(cluster)
    cluster.operator.start()
    second_operator.start()
    cluster.wait_for(lambda: len(peers(cluster)) == 2, timeout=20, what="two peers announced")
    logs = (cluster.operator.log_text, second_operator.log_text)

    def standing_by() -> list[bool]:
        return ["Pausing operations in favour of" in log() for log in logs]

    # The lower-priority replica stands by before any object exists, the other works.
    cluster.wait_for(lambda: any(standing_by()), timeout=20, what="one replica standing by")
    assert sorted(standing_by()) == [False, True], standing_by()
    lifecycle_of_one_vm(cluster, 910, timeout=12)
    assert sorted(standing_by()) == [False, True], standing_by()
    assert not any("Pausing all operators" in log() for log in logs)
    assert second_operator.running, second_operator.log_tail()
