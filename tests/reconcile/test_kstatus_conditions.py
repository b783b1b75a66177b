"""Reconciling and Stalled, as Flux's kstatus reads them, agree with Ready in every state.

kstatus: Reconciling=True is InProgress, Stalled=True is Failed, otherwise Ready decides. A
stalled object still gets retried, but only a change by a human makes it move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxmox_vm_operator.domain.conditions import Progress
from proxmox_vm_operator.simulator import Simulator

from .driver import Driver, FakeSecrets


def kstatus_view(driver: Driver) -> tuple[str, str, str, str]:
    """(Ready, Reconciling, Stalled) statuses and the shared reason."""
    by_type: dict[str, dict[str, Any]] = {c["type"]: c for c in driver.status["conditions"]}
    reasons = {by_type[t]["reason"] for t in ("Ready", "Reconciling", "Stalled")}
    assert len(reasons) == 1, by_type
    return (
        by_type["Ready"]["status"],
        by_type["Reconciling"]["status"],
        by_type["Stalled"]["status"],
        reasons.pop(),
    )


async def test_provisioning_is_reconciling_and_a_ready_vm_is_neither(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    first = await driver.step()
    assert kstatus_view(driver) == ("False", "True", "False", "Provisioning")
    assert first.result.progress is Progress.PROGRESSING
    assert driver.status["observedGeneration"] == 1

    last = await driver.settle()
    assert kstatus_view(driver) == ("True", "False", "False", "Reconciled")
    assert last.result.progress is Progress.READY


async def test_a_spec_change_is_reconciling_with_the_new_generation(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.settle()
    driver.update_spec(cores=4)
    await driver.step()
    assert kstatus_view(driver) == ("False", "True", "False", "Updating")
    assert driver.status["observedGeneration"] == 2


async def test_an_invalid_spec_is_stalled(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(memoryMiB=1)
    record = await driver.step()
    assert kstatus_view(driver) == ("False", "False", "True", "InvalidSpec")
    assert record.result.progress is Progress.STALLED
    stalled = next(c for c in driver.status["conditions"] if c["type"] == "Stalled")
    assert "spec.memoryMiB" in stalled["message"]


async def test_a_foreign_vm_at_the_vmid_is_stalled(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.add_vm(150, running=True, tags=["legacy"])
    driver = make_driver(vmid=150)
    await driver.settle()
    assert kstatus_view(driver) == ("False", "False", "True", "NotOwned")
    assert driver.status["phase"] == "Failed"  # the phase agrees with Stalled


async def test_a_missing_secret_is_retried_not_stalled_and_heals_when_it_appears(
    secrets: FakeSecrets, make_driver: Callable[..., Driver]
) -> None:
    saved = dict(secrets.data or {})
    secrets.remove()
    driver = make_driver()
    await driver.step()
    assert kstatus_view(driver) == ("False", "True", "False", "ConnectionUnavailable")

    secrets.restore(saved)
    await driver.settle()
    assert kstatus_view(driver) == ("True", "False", "False", "Reconciled")


async def test_an_unreachable_proxmox_is_retrying_not_stalled(
    sim: Simulator, make_driver: Callable[..., Driver]
) -> None:
    sim.make_unreachable("refuse")
    driver = make_driver()
    record = await driver.step()
    assert kstatus_view(driver) == ("Unknown", "True", "False", "ProxmoxUnreachable")
    assert record.result.progress is Progress.RETRYING
