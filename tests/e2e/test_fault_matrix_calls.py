"""Fault matrix, calls and outages: Proxmox refuses or drops what the destroy asks."""

from __future__ import annotations

import pytest

from .fault_matrix import ROWS, STALL_AFTER, run_row
from .harness import Cluster

pytestmark = pytest.mark.sandbox(stall_after=STALL_AFTER, simulator_process=True)

CALL_ROWS = [
    "500 on stop",
    "500 on DELETE",
    "500 on the lookup",
    "500 on the task poll",
    "595 on the lookup",
    "401: token rotated",
    "outage: connection refused",
    "outage: connection reset",
]


@pytest.mark.parametrize("row", CALL_ROWS)
def test_a_destroy_survives_the_fault_and_recovers_when_it_clears(
    cluster: Cluster, row: str
) -> None:
    run_row(cluster, ROWS[row], vmid=301)
