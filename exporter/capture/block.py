"""``monitor.capture(...)``: time a block and record what escapes it, with ``with`` or
``async with``.

KeyboardInterrupt, SystemExit and asyncio's CancelledError pass through unrecorded: they
are how code stops, not the block's error.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class Recorder(Protocol):
    """What a capture block calls on its monitor."""

    def observe_operation(
        self, component: str, plugin: str, operation: str, ok: bool, seconds: float
    ) -> None: ...

    def record_error(
        self,
        error: BaseException,
        component: str = "",
        plugin: str = "",
        operation: str = "",
        context: Any = None,
        severity: str | None = None,
    ) -> str | None: ...


class CaptureBlock:
    """``monitor.capture(...)``: a sync and async context manager around a block."""

    __slots__ = (
        "component",
        "context",
        "monitor",
        "operation",
        "plugin",
        "reraise",
        "severity",
        "started",
    )

    def __init__(
        self,
        monitor: Recorder,
        component: str,
        plugin: str,
        operation: str,
        reraise: bool,
        severity: str | None,
        context: Any,
    ) -> None:
        self.monitor = monitor
        self.component = component
        self.plugin = plugin
        self.operation = operation
        self.reraise = reraise
        self.severity = severity
        self.context = context
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        monitor = self.monitor
        seconds = time.perf_counter() - self.started
        if exc is None:
            monitor.observe_operation(self.component, self.plugin, self.operation, True, seconds)
            return False
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit, CancelledError: not the block's error
        monitor.observe_operation(self.component, self.plugin, self.operation, False, seconds)
        monitor.record_error(
            exc, self.component, self.plugin, self.operation, self.context, self.severity
        )
        return not self.reraise

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)
