"""overrule-shutdown aborts only the shutdowns the caller may abort (GuestHelpers.pm
abort_guest_tasks, called by the qmstop worker): its own, its tokens', or with Sys.Modify on
the node everyone's. A shutdown it cannot abort keeps the config flock, and the stop fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI

from proxmox_vm_operator.simulator import GuestBehaviour, Simulator

from .helpers import TOKEN_ID, TOKEN_SECRET, client_for, task_log, wait_for_task

HUNG = GuestBehaviour(obeys_acpi=False)
FLOCK_TIMEOUT = "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"
ALICE_TOKEN = "alice@pve!ci"


@pytest.fixture
def hung_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    sim = make_sim(
        tokens={TOKEN_ID: TOKEN_SECRET, ALICE_TOKEN: "alice-secret"},
        users={"alice@pve": "alice-pw"},
    )
    sim.add_vm(100, running=True, guest=HUNG)
    sim.grant("alice@pve", "/vms/100", ["VM.PowerMgmt", "VM.Audit"])
    return sim


def alice_token(sim: Simulator) -> Any:
    return ProxmoxAPI(
        sim.host,
        port=sim.port,
        user="alice@pve",
        token_name="ci",
        token_value="alice-secret",
        verify_ssl=str(sim.ca_file),
    )


def alice_user(sim: Simulator) -> Any:
    return ProxmoxAPI(
        sim.host, port=sim.port, user="alice@pve", password="alice-pw", verify_ssl=str(sim.ca_file)
    )


def overrule(px: Any) -> str:
    upid: str = px.nodes("pve1").qemu(100).status.stop.post(**{"overrule-shutdown": 1})
    return upid


def test_another_users_shutdown_is_not_aborted_and_the_stop_waits_for_its_flock(
    hung_sim: Simulator,
) -> None:
    shutdown = hung_sim.start_task_as("bob@pve", 100, "shutdown", timeout=600)
    alice = alice_token(hung_sim)
    stop = overrule(alice)
    assert wait_for_task(alice, stop)["exitstatus"] == FLOCK_TIMEOUT
    assert not any("overruled" in line for line in task_log(alice, stop))
    tasks = {t["upid"]: t for t in hung_sim.tasks()}
    assert tasks[shutdown]["status"] == "running"
    assert hung_sim.vm(100) is not None and hung_sim.vm(100)["running"]  # type: ignore[index]


def test_sys_modify_on_the_node_aborts_everyones_shutdown(hung_sim: Simulator) -> None:
    shutdown = hung_sim.start_task_as("bob@pve", 100, "shutdown", timeout=600)
    hung_sim.grant("alice@pve", "/nodes/pve1", ["Sys.Modify"])
    alice = alice_token(hung_sim)
    stop = overrule(alice)
    assert wait_for_task(alice, stop)["exitstatus"] == "OK"
    assert f"overruled qmshutdown tasks: {shutdown}" in task_log(alice, stop)
    assert wait_for_task(client_for(hung_sim), shutdown)["exitstatus"] == "received interrupt"


def test_a_user_aborts_its_tokens_shutdown_but_a_token_not_its_users(
    hung_sim: Simulator,
) -> None:
    """A token's task is its user's too; a user's task is not its tokens'."""
    by_token = hung_sim.start_task_as(ALICE_TOKEN, 100, "shutdown", timeout=600)
    user = alice_user(hung_sim)
    stop = overrule(user)
    assert wait_for_task(user, stop)["exitstatus"] == "OK"
    assert f"overruled qmshutdown tasks: {by_token}" in task_log(user, stop)

    root = client_for(hung_sim)
    assert wait_for_task(root, root.nodes("pve1").qemu(100).status.start.post())["exitstatus"] == (
        "OK"
    )
    by_user = hung_sim.start_task_as("alice@pve", 100, "shutdown", timeout=600)
    token = alice_token(hung_sim)
    assert wait_for_task(token, overrule(token))["exitstatus"] == FLOCK_TIMEOUT
    assert {t["upid"]: t for t in hung_sim.tasks()}[by_user]["status"] == "running"


def test_several_aborted_tasks_are_listed_comma_separated(
    make_sim: Callable[..., Simulator],
) -> None:
    """Qemu.pm vm_stop prints the aborted UPIDs joined by ", "."""
    sim = make_sim(time_scale=1e-6)  # frozen: the second shutdown still waits for the flock
    sim.add_vm(100, running=True, guest=HUNG)
    first = sim.start_task_as("root@pam", 100, "shutdown", timeout=600)
    second = sim.start_task_as("root@pam", 100, "shutdown", timeout=600)
    px = client_for(sim)
    stop = overrule(px)  # root@pam!ci: Sys.Modify on the node, so it may abort any task
    sim.advance(2)
    assert wait_for_task(px, stop, timeout=5)["exitstatus"] == "OK"
    logged = next(line for line in task_log(px, stop) if line.startswith("overruled"))
    assert logged == f"overruled qmshutdown tasks: {first}, {second}"


def test_start_task_as_reports_synchronous_refusals(hung_sim: Simulator) -> None:
    hung_sim.pause(100)
    with pytest.raises(ValueError, match="VM is paused - cannot shutdown"):
        hung_sim.start_task_as("bob@pve", 100, "shutdown")
    with pytest.raises(ValueError, match="unknown action"):
        hung_sim.start_task_as("bob@pve", 100, "hibernate")
