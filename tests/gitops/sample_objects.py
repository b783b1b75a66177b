"""The sample ProxmoxVM objects in ``samples/``: one situation each, with what Argo CD's health
check and kstatus must make of it.

Each file holds ``description``, ``healthStatus`` (the health script's status and a fragment
of its message, as in Argo CD's ``health_test.yaml``), ``kstatus`` (status, and the reason
and message where kstatus reports them) and ``object``: the object as the API server returns
it, with the status the operator wrote in that situation (captured from the reconciler and
the destroy finalizer against the Proxmox simulator).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass(frozen=True)
class Sample:
    name: str
    description: str
    health_status: str
    health_message: str
    kstatus_status: str
    kstatus_reason: str | None
    kstatus_message: str | None
    object: dict[str, Any]

    @property
    def deleting(self) -> bool:
        return bool(self.object["metadata"].get("deletionTimestamp"))


@functools.cache
def load_samples() -> tuple[Sample, ...]:
    samples = []
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        samples.append(
            Sample(
                name=path.stem,
                description=raw["description"],
                health_status=raw["healthStatus"]["status"],
                health_message=raw["healthStatus"]["message"],
                kstatus_status=raw["kstatus"]["status"],
                kstatus_reason=raw["kstatus"].get("reason"),
                kstatus_message=raw["kstatus"].get("message"),
                object=raw["object"],
            )
        )
    return tuple(samples)


def sample(name: str) -> Sample:
    return next(s for s in load_samples() if s.name == name)
