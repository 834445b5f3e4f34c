"""Which monitors are running: what the process-wide lookup finds when the app built its own.

Held weakly: a monitor the app dropped is not kept alive by the lookup. Kept apart from
``monitor.py`` (which reports starts and stops here) and ``global_monitor.py`` (which asks), so
neither imports the other.
"""

from __future__ import annotations

import weakref
from typing import Protocol

from exporter._process_events import ForkSafeLock


class Runnable(Protocol):
    running: bool


_lock = ForkSafeLock()  # never held while calling into a monitor
_running: list[weakref.ref[Runnable]] = []  # started, not stopped; oldest first


def _forget(monitor: Runnable | None) -> None:
    """Drop ``monitor`` and collected monitors (caller holds the lock)."""
    _running[:] = [r for r in _running if (m := r()) is not None and m is not monitor]


def started(monitor: Runnable) -> None:
    """A monitor started: the process-wide lookup may need to find it."""
    with _lock:
        _forget(monitor)
        _running.append(weakref.ref(monitor))


def stopped(monitor: Runnable) -> None:
    """A monitor stopped: the lookup no longer returns it."""
    with _lock:
        _forget(monitor)


def latest() -> Runnable | None:
    """The most recently started monitor still running."""
    with _lock:
        if any(ref() is None for ref in _running):  # collected without stop()
            _forget(None)
        for ref in reversed(_running):
            monitor = ref()
            if monitor is not None and monitor.running:
                return monitor
    return None


def forget_all() -> None:
    with _lock:
        _running.clear()
