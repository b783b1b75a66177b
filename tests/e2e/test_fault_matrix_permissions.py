"""Fault matrix, privileges: the token loses a privilege a destroy needs."""

from __future__ import annotations

import pytest

from .fault_matrix import ROWS, STALL_AFTER, run_row
from .harness import Cluster

pytestmark = pytest.mark.sandbox(stall_after=STALL_AFTER, simulator_process=True)

PERMISSION_ROWS = ["403: no VM.Audit", "403: no VM.PowerMgmt", "403: no VM.Allocate"]


@pytest.mark.parametrize("row", PERMISSION_ROWS)
def test_a_destroy_survives_the_fault_and_recovers_when_it_clears(
    cluster: Cluster, row: str
) -> None:
    run_row(cluster, ROWS[row], vmid=303)
