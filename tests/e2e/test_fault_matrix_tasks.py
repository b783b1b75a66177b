"""Fault matrix, tasks and state: tasks that fail, locks and protection appearing in the
middle of a destroy, and the credentials Secret deleted and restored."""

from __future__ import annotations

import pytest

from .fault_matrix import ROWS, STALL_AFTER, run_row
from .harness import Cluster

pytestmark = pytest.mark.sandbox(stall_after=STALL_AFTER, simulator_process=True)

TASK_ROWS = [
    "failing stop task",
    "failing delete task",
    "lock timeout: another task holds the VM's lock",
    "backup lock appears mid-destroy",
    "protection appears mid-destroy",
    # The operator reads the Secret afresh on every pass here: by default it keeps a read
    # for a minute, and a destroy under way would not notice the Secret gone.
    pytest.param(
        "Secret deleted and restored",
        marks=pytest.mark.sandbox(operator_args=["--secret-reread-seconds", "0"]),
    ),
]


@pytest.mark.parametrize("row", TASK_ROWS)
def test_a_destroy_survives_the_fault_and_recovers_when_it_clears(
    cluster: Cluster, row: str
) -> None:
    run_row(cluster, ROWS[row], vmid=302)
