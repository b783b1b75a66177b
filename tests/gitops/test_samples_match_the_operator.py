"""The sample objects hold the status the operator writes today, not a snapshot of the past.

Each sample with a recipe in ``capture.py`` is produced again by the operator's real code (the
reconciler; for a deleted object the destroyer and the status patch it returns) against the
simulator, and must equal the committed object. A change to what the operator writes fails
here until the samples are regenerated (``capture.REGENERATE``) and their Argo CD and kstatus
expectations reviewed.
"""

from __future__ import annotations

import pytest

from . import capture
from .sample_objects import load_samples, sample


@pytest.mark.parametrize("name", sorted(capture.RECIPES))
async def test_the_committed_sample_is_the_object_the_operator_writes_now(name: str) -> None:
    produced = await capture.capture(name)
    committed = sample(name).object
    assert committed == produced, capture.stale_message(name, committed, produced)


def test_every_sample_is_captured_from_the_operator_or_says_why_not() -> None:
    files = {s.name for s in load_samples()}
    recipes = set(capture.RECIPES)
    exempt = set(capture.WITHOUT_RECIPE)
    assert recipes.isdisjoint(exempt), recipes & exempt
    assert files - recipes == exempt, (
        "a sample without a recipe in tests/gitops/capture.py (add one, or say in "
        f"WITHOUT_RECIPE why none can produce it): {sorted(files - recipes - exempt)}; "
        f"exempt but without a file: {sorted(exempt - files)}"
    )
    assert recipes <= files, (
        f"recipes without a sample file (write its description and expectations, then run "
        f"`{capture.REGENERATE}`): {sorted(recipes - files)}"
    )


@pytest.mark.parametrize(
    ("name", "ready_reason", "reconciling", "stalled"),
    [
        ("deleting-shutting-down", "Deleting", "True", "False"),
        ("deleting-stalled-unreachable", "ProxmoxUnreachable", "False", "True"),
    ],
)
def test_a_deleted_object_reports_the_destroy_in_ready_and_the_kstatus_pair(
    name: str, ready_reason: str, reconciling: str, stalled: str
) -> None:
    """Not the last reconcile's Ready=True: the destroy's own state, for the current generation."""
    obj = sample(name).object
    generation = obj["metadata"]["generation"]
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    ready = conditions["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", ready_reason)
    assert (conditions["Reconciling"]["status"], conditions["Stalled"]["status"]) == (
        reconciling,
        stalled,
    )
    assert obj["status"]["observedGeneration"] == generation
    assert {c["observedGeneration"] for c in conditions.values()} == {generation}
