"""Exceptions that reach an asyncio loop's exception handler (failed tasks, callbacks).

``start()`` installs the handler on the running loop, if any; call
``monitor.instrument_loop()`` from inside ``asyncio.run(...)`` for the app's own loop.
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

from exporter.integrations import Hub

if TYPE_CHECKING:
    import asyncio


class AsyncioIntegration:
    def __init__(self) -> None:
        self.monitor: Hub | None = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def install(self, monitor: Hub) -> None:
        self.monitor = monitor
        running = sys.modules.get("asyncio")  # an app that never imported it runs no loop
        if running is None:
            return
        try:
            loop = running.get_running_loop()
        except RuntimeError:
            return
        self.instrument(loop)

    def instrument(self, loop: asyncio.AbstractEventLoop) -> None:
        """Chain our handler in front of the loop's current one (idempotent)."""
        if loop in self._loops:
            return
        previous = loop.get_exception_handler()
        self._loops[loop] = previous

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            monitor = self.monitor
            exc = context.get("exception")
            if monitor is not None and isinstance(exc, BaseException):
                task = context.get("task") or context.get("future")
                extra = {"asyncio_message": str(context.get("message", ""))}
                if task is not None and hasattr(task, "get_name"):
                    extra["task"] = task.get_name()
                monitor.capture_exception(exc, mechanism="asyncio", handled=False, context=extra)
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

    def uninstall(self) -> None:
        for loop, previous in list(self._loops.items()):
            if not loop.is_closed():
                loop.set_exception_handler(previous)
        self._loops.clear()
        self.monitor = None
