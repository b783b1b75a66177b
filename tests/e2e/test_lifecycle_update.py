"""Changing a ProxmoxVM with `kubectl patch`: config changes reach Proxmox guarded by the
config digest, observedGeneration follows the object, powerState stops and starts the VM,
and a change that only a reboot applies is reported instead of rebooting the guest."""

from __future__ import annotations

from typing import Any

from .harness import Cluster, dig
from .lifecycle_helpers import (
    condition,
    kpatch,
    ready,
    reasons,
    vm_tags,
    wait_event,
    wait_object,
    wait_phase,
    writes,
)


def config_writes(cluster: Cluster, vmid: int) -> list[Any]:
    return [r for r in writes(cluster, vmid) if r.path.endswith(f"/qemu/{vmid}/config")]


def reconciled_generation(cluster: Cluster, name: str, generation: int) -> dict[str, Any]:
    def caught_up() -> dict[str, Any] | None:
        vm = cluster.get_vm(name)
        if dig(vm, "status.observedGeneration") != generation or ready(vm)[0] != "True":
            return None
        if dig(condition(vm), "observedGeneration") != generation:
            return None
        return vm

    return wait_object(cluster, caught_up, timeout=30, what=f"{name} at generation {generation}")


def test_patch_of_a_stopped_vm_updates_its_config_with_the_digest(cluster: Cluster) -> None:
    vm = cluster.apply_vm("db-1", {"vmid": 301, "powerState": "Stopped", "tags": ["db"]})
    uid = vm["metadata"]["uid"]
    wait_phase(cluster, "db-1", "Stopped")
    before = cluster.sim.vm(301)
    assert before is not None and int(before["config"]["cores"]) == 1
    cluster.sim.clear_requests()

    patched = kpatch(
        cluster, "db-1", {"spec": {"cores": 4, "memoryMiB": 4096, "tags": ["db", "x"]}}
    )
    assert patched["metadata"]["generation"] == 2
    vm = reconciled_generation(cluster, "db-1", 2)
    assert dig(vm, "status.phase") == "Stopped"

    after = cluster.sim.vm(301)
    assert after is not None and not after["running"]
    assert (int(after["config"]["cores"]), int(after["config"]["memory"])) == (4, 4096)
    assert after["pending"] == {}
    assert vm_tags(cluster, 301) == sorted(["db", "x", f"vmop-{uid}"])

    updates = config_writes(cluster, 301)
    assert len(updates) == 1, updates  # one write with every change
    params = updates[0].params
    assert (str(params["cores"]), str(params["memory"])) == ("4", "4096")
    assert params.get("digest"), f"the config write is not digest-guarded: {params}"
    assert updates[0].status == 200
    wait_event(cluster, "db-1", "ConfigUpdated")
    assert "Starting" not in reasons(cluster, "db-1")  # a stopped VM stays stopped


def test_a_config_write_that_loses_the_digest_race_is_retried(cluster: Cluster) -> None:
    cluster.apply_vm("db-2", {"vmid": 302, "powerState": "Stopped"})
    wait_phase(cluster, "db-2", "Stopped")
    cluster.sim.fail_next(
        r"/qemu/302/config$",
        method="PUT",
        status=500,
        message="checksum mismatch (file change by other user?)",
    )
    kpatch(cluster, "db-2", {"spec": {"cores": 3}})
    reconciled_generation(cluster, "db-2", 2)
    assert int(cluster.sim.vm(302)["config"]["cores"]) == 3  # type: ignore[index]
    statuses = [r.status for r in config_writes(cluster, 302)]
    assert statuses[0] == 500 and statuses[-1] == 200, statuses


def test_cores_on_a_running_vm_wait_for_a_reboot_and_power_state_follows_the_spec(
    cluster: Cluster,
) -> None:
    vm = cluster.apply_vm("app-1", {"vmid": 303, "tags": ["app"]})
    uid = vm["metadata"]["uid"]
    wait_phase(cluster, "app-1", "Running")
    start_calls = len([r for r in writes(cluster, 303) if r.path.endswith("/status/start")])
    assert start_calls == 1

    # cores and tags on a running VM: tags apply live, cores wait for the next start.
    kpatch(cluster, "app-1", {"spec": {"cores": 4, "tags": ["app", "blue"]}})
    vm = reconciled_generation(cluster, "app-1", 2)
    message = str(dig(condition(vm), "message"))
    assert "waiting for a reboot to apply: cores" in message, message
    running = cluster.sim.vm(303)
    assert running is not None and running["running"]
    assert int(running["config"]["cores"]) == 1 and str(running["pending"]["cores"]) == "4"
    assert vm_tags(cluster, 303) == sorted(["app", "blue", f"vmop-{uid}"])
    reboot = wait_event(cluster, "app-1", "RebootRequired")
    assert "cores" in reboot["message"]
    assert not [r for r in writes(cluster, 303) if "/status/" in r.path and "start" not in r.path]
    assert reasons(cluster, "app-1").count("RebootRequired") == 1

    # powerState: Stopped stops it (and the pending change lands in the config).
    kpatch(cluster, "app-1", {"spec": {"powerState": "Stopped"}})
    vm = wait_phase(cluster, "app-1", "Stopped")
    assert dig(vm, "status.powerState") == "Stopped"
    assert dig(vm, "status.observedGeneration") == 3
    stopped = cluster.sim.vm(303)
    assert stopped is not None and not stopped["running"]
    wait_event(cluster, "app-1", "Stopping")

    # And back to Running: started again, with the new cores applied and nothing pending.
    kpatch(cluster, "app-1", {"spec": {"powerState": "Running"}})
    vm = wait_phase(cluster, "app-1", "Running")
    assert dig(vm, "status.observedGeneration") == 4
    assert "reboot" not in str(dig(condition(vm), "message"))
    started = cluster.sim.vm(303)
    assert started is not None and started["running"]
    assert int(started["config"]["cores"]) == 4 and started["pending"] == {}
    starts = [r for r in writes(cluster, 303) if r.path.endswith("/status/start")]
    assert len(starts) == 2
    assert ready(vm) == ("True", "Reconciled")
