"""External tools the tests run: present, or the test skips (or fails when CI=true)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """The tool's path. Missing, the test skips on a workstation and fails in CI (CI=true)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (CI=true) but is not on PATH")
        pytest.skip(f"{name} is not on PATH")
    return path
