"""Uncaught exceptions in the main thread: ``sys.excepthook``.

The error ends the process's session as crashed. With a durable store (``store_path``) the
report of the error that ends the interpreter, and that session, are written to the file
before the traceback is printed (a bounded flush of the worker, which
writes at each flush), so it is on disk even if the process is killed while it shuts down.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from exporter.integrations import Hub


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
            _end_crashed(monitor)
            _persist(monitor)
        previous = self.previous or sys.__excepthook__
        previous(exc_type, exc, tb)


def _end_crashed(monitor: Hub) -> None:
    """The interpreter ends with this error: so does the process's session, as crashed, now
    (before the flush below writes it), not at exit, which a kill may never reach."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return  # an interactive interpreter prints the error and goes on
    try:
        sessions = monitor.sessions
        if sessions.process_session_id:
            sessions.end(sessions.process_session_id, "crashed")
    except Exception as exc:
        monitor.note_internal_error(exc)


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
