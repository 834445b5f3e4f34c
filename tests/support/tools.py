"""Locate external binaries: a missing tool fails the test in CI and skips it elsewhere."""

from __future__ import annotations

import os
import shutil

import pytest

_TRUTHY = {"1", "true", "yes", "on"}


def in_ci() -> bool:
    """True when the environment variable CI is set to a truthy value (CI=true, CI=1, ...)."""
    return os.environ.get("CI", "").strip().lower() in _TRUTHY


def require_tool(name: str) -> str:
    """Return the absolute path of the executable ``name``.

    When it is not on PATH the calling test fails if running in CI (``CI=true``), so a broken
    CI image cannot silently skip the checks, and is skipped otherwise.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"required tool {name!r} is not installed (not found on PATH)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
