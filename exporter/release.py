"""Which app version was running when: the release a captured error belongs to.

``set_app_version`` (a deploy without a restart) is called on the app's thread while
occurrences captured before it may still wait in the queue; the worker asks
:meth:`Releases.version_at` with each occurrence's own capture time, so an error raised
before the deploy stays with the old version however late it is processed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

UNKNOWN_VERSION = "unknown"  # the metric label when no app_version is configured
MAX_VERSION_LENGTH = 200
MAX_VERSION_CHANGES = 64  # the history kept for occurrences still queued at a change


def check_version(version: Any) -> str:
    """A usable app version, or ValueError naming ``app_version`` and what is expected."""
    if not isinstance(version, str) or not version.strip():
        raise ValueError(f"app_version must be a non-empty string, got {version!r}")
    if len(version) > MAX_VERSION_LENGTH:
        raise ValueError(
            f"app_version must be at most {MAX_VERSION_LENGTH} characters, got {len(version)}"
        )
    return version


class Releases:
    """The current app version and when each earlier one started (bounded history)."""

    def __init__(self, version: str | None = None) -> None:
        # (started_at, version), oldest first; replaced whole, so readers need no lock
        self._history: tuple[tuple[float, str | None], ...] = ((float("-inf"), version),)
        self._lock = threading.Lock()

    @property
    def current(self) -> str | None:
        return self._history[-1][1]

    def set(self, version: str, at: float | None = None) -> None:
        """From now on (or ``at``, epoch seconds) errors belong to ``version``."""
        started = time.time() if at is None else at
        with self._lock:
            history = (*self._history, (started, version))
            self._history = history[-MAX_VERSION_CHANGES:]

    def version_at(self, moment: float) -> str | None:
        """The version running at ``moment`` (the oldest one kept for earlier moments)."""
        history = self._history
        if len(history) == 1:  # one version all along (the usual case): the answer either way
            return history[0][1]
        for started, version in reversed(history):
            if started <= moment:
                return version
        return history[0][1]

    def after_fork(self) -> None:
        self._lock = threading.Lock()


def version_label(version: str | None) -> str:
    """The ``app_version`` label value: ``unknown`` when no version is configured."""
    return version if version else UNKNOWN_VERSION


def monitor_version() -> str:
    """error-exporter's own version, as installed (``unknown`` in a source checkout on
    ``PYTHONPATH``): in ``app_monitor_info``, ``--version``, the OpenAPI document and the
    ``written_by`` of a durable store."""
    try:
        from importlib.metadata import version

        return version("error-exporter")
    except Exception:
        return "unknown"
