"""One `/cluster/resources` listing serves every caller of a client, as fresh as each asks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from proxmox_vm_operator.proxmox import ConnectionSettings, ProxmoxClient, UnreachableError
from proxmox_vm_operator.simulator import Simulator

TOKEN_ID = "root@pam!ci"
SECRET = "5b0c7e2a-3f41-4d6b-9e8a-2c1d0f9b7a64"


class ManualClock:
    """The client's monotonic clock, moved only by the test."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(nodes=["pve1"], tokens={TOKEN_ID: SECRET}) as sim:
        yield sim


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def proxmox(simulator: Simulator, clock: ManualClock) -> AsyncIterator[ProxmoxClient]:
    settings = ConnectionSettings.from_secret_data(
        {
            "endpoint": simulator.endpoint,
            "tokenId": TOKEN_ID,
            "tokenSecret": SECRET,
            "caCert": simulator.ca_file.read_text(),
        }
    )
    async with ProxmoxClient(settings, monotonic=clock) as client:
        yield client


def listings_sent(simulator: Simulator) -> int:
    return len(simulator.requests_to(r"^/cluster/resources$", method="GET"))


async def in_flight(*callers: asyncio.Task[Any]) -> None:
    """Let each caller run up to its first wait: it has then started or joined a listing.
    The listing itself cannot end meanwhile, as its answer comes back through this loop."""
    await asyncio.sleep(0)
    assert not any(caller.done() for caller in callers)


async def test_concurrent_lookups_send_one_listing_between_them(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(100)
    found = await asyncio.gather(*(proxmox.find_vm(100, max_age=5) for _ in range(10)))
    assert [vm.vmid if vm else None for vm in found] == [100] * 10
    assert listings_sent(simulator) == 1


async def test_concurrent_calls_with_default_freshness_join_the_listing_in_flight(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    await asyncio.gather(*(proxmox.list_vms() for _ in range(5)))
    assert listings_sent(simulator) == 1


async def test_a_listing_younger_than_max_age_is_reused_an_older_one_is_not(
    simulator: Simulator, proxmox: ProxmoxClient, clock: ManualClock
) -> None:
    assert await proxmox.list_vms(max_age=5) == []
    simulator.add_vm(100)  # only a new listing can show it

    clock.now += 5
    assert await proxmox.find_vm(100, max_age=5) is None
    assert listings_sent(simulator) == 1

    clock.now += 0.5
    assert await proxmox.find_vm(100, max_age=5) is not None
    assert listings_sent(simulator) == 2


async def test_asked_after_a_creation_the_listing_shows_the_created_vm(
    simulator: Simulator, proxmox: ProxmoxClient, clock: ManualClock
) -> None:
    await proxmox.list_vms()
    clock.now += 1
    simulator.add_vm(200)
    created_at = clock.now

    # The kept listing would do for a presence lookup, and it predates the VM ...
    assert await proxmox.find_vm(200, max_age=60) is None
    assert listings_sent(simulator) == 1
    # ... but not for an answer asked after the creation.
    found = await proxmox.find_vm(200, max_age=60, asked_after=created_at)
    assert found is not None and found.node == "pve1"
    assert listings_sent(simulator) == 2


async def test_a_listing_in_flight_is_joined_only_if_sent_at_or_after_asked_after(
    simulator: Simulator, proxmox: ProxmoxClient, clock: ManualClock
) -> None:
    first = asyncio.create_task(proxmox.list_vms())
    await in_flight(first)
    sent_first = clock.now
    clock.now += 1
    joins = asyncio.create_task(proxmox.list_vms(asked_after=sent_first))
    needs_later = asyncio.create_task(proxmox.list_vms(asked_after=clock.now))
    await asyncio.gather(first, joins, needs_later)
    assert listings_sent(simulator) == 2


async def test_callers_too_late_for_the_listing_in_flight_share_the_next_one(
    simulator: Simulator, proxmox: ProxmoxClient, clock: ManualClock
) -> None:
    """However many callers need a listing newer than the one in flight, one more is sent,
    when it ends, and it was sent after each of them asked."""
    first = asyncio.create_task(proxmox.list_vms())
    await in_flight(first)
    clock.now += 1
    simulator.add_vm(100)  # made after the listing in flight was sent
    late = []
    for _ in range(5):  # each asks after the last one asked
        late.append(asyncio.create_task(proxmox.find_vm(100, asked_after=clock.now)))
        await asyncio.sleep(0)
        clock.now += 1
    found = await asyncio.gather(*late)
    await first
    assert listings_sent(simulator) == 2
    assert all(vm is not None and vm.vmid == 100 for vm in found), found


async def test_a_failed_listing_is_raised_to_every_joined_caller_and_not_kept(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(100)
    simulator.fail_next(r"^/cluster/resources$", status=500, message="cluster not ready")
    outcomes = await asyncio.gather(
        *(proxmox.find_vm(100, max_age=60) for _ in range(5)), return_exceptions=True
    )
    assert listings_sent(simulator) == 1
    assert all(isinstance(outcome, UnreachableError) for outcome in outcomes), outcomes
    assert {str(outcome) for outcome in outcomes} == {str(outcomes[0])}
    assert "cluster not ready" in str(outcomes[0])

    assert await proxmox.find_vm(100, max_age=60) is not None
    assert listings_sent(simulator) == 2


async def test_default_freshness_sends_a_listing_per_call(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    # The clock stands still: even a listing of age 0 is not reused by default.
    for _ in range(3):
        await proxmox.list_vms()
    assert listings_sent(simulator) == 3


async def test_a_cancelled_caller_leaves_the_joined_listing_running(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(100)
    cancelled = asyncio.create_task(proxmox.find_vm(100))
    joined = asyncio.create_task(proxmox.find_vm(100))
    await in_flight(cancelled, joined)
    cancelled.cancel()
    found = await joined
    assert found is not None and found.vmid == 100
    assert listings_sent(simulator) == 1


async def test_a_caller_changing_its_list_does_not_change_the_kept_listing(
    simulator: Simulator, proxmox: ProxmoxClient
) -> None:
    simulator.add_vm(100)
    (await proxmox.list_vms(max_age=60)).clear()
    assert [vm.vmid for vm in await proxmox.list_vms(max_age=60)] == [100]
    assert listings_sent(simulator) == 1
