"""Uncaught exceptions in other threads: ``threading.excepthook``."""

from __future__ import annotations

import threading
from typing import Any

from exporter.integrations import Hub


class ThreadingIntegration:
    def __init__(self) -> None:
        self.previous: Any = None
        self.monitor: Hub | None = None

    def install(self, monitor: Hub) -> None:
        self.monitor = monitor
        self.previous = threading.excepthook
        threading.excepthook = self.hook

    def uninstall(self) -> None:
        if threading.excepthook == self.hook:
            threading.excepthook = self.previous
        self.monitor = None

    def hook(self, args: Any) -> None:
        monitor = self.monitor
        if monitor is not None and args.exc_value is not None:
            thread = args.thread.name if args.thread is not None else ""
            monitor.capture_exception(
                args.exc_value, mechanism="threading", handled=False, context={"thread": thread}
            )
        (self.previous or threading.__excepthook__)(args)
