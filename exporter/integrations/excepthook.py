"""Uncaught exceptions in the main thread: ``sys.excepthook``."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..monitor import ErrorMonitor


class ExcepthookIntegration:
    def __init__(self) -> None:
        self.previous: Any = None
        self.monitor: ErrorMonitor | None = None

    def install(self, monitor: ErrorMonitor) -> None:
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
            monitor.capture_unhandled(exc, mechanism="excepthook")
        previous = self.previous or sys.__excepthook__
        previous(exc_type, exc, tb)
