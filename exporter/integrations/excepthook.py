"""Uncaught exceptions in the main thread: ``sys.excepthook``.

With a durable store (``store_path``) the report of the error that ends the interpreter is
written to the file before the traceback is printed (a bounded flush of the worker, which
writes at each flush), so it is on disk even if the process is killed while it shuts down.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from . import Hub


class ExcepthookIntegration:
    def __init__(self) -> None:
        self.previous: Any = None
        self.monitor: Hub | None = None

    def install(self, monitor: Hub) -> None:
        self.monitor = monitor
        self.previous = sys.excepthook
        sys.excepthook = self.hook

    def uninstall(self) -> None:
        if sys.excepthook == self.hook:
            sys.excepthook = self.previous
        self.monitor = None

    def hook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        monitor = self.monitor
        if monitor is not None:
            monitor.capture_exception(exc, mechanism="excepthook", handled=False)
            _persist(monitor)
        previous = self.previous or sys.__excepthook__
        previous(exc_type, exc, tb)


def _persist(monitor: Hub) -> None:
    """The durable store has the crash before the interpreter goes on to exit (bounded)."""
    if monitor.config.store_path is None and monitor.config.store_url is None:
        return
    flush = getattr(monitor, "flush", None)  # the monitor's; a bare Hub may not have one
    if callable(flush):
        try:
            flush(max(monitor.config.exit_flush_timeout, 0.1))
        except Exception as exc:
            monitor.note_internal_error(exc)
