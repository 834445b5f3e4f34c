"""Uncaught exceptions in the main thread: ``sys.excepthook``."""

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
        previous = self.previous or sys.__excepthook__
        previous(exc_type, exc, tb)
