"""The two in-house APIs this product replaces, on top of ErrorMonitor.

* ``ErrorMonitoringService`` (the racing tuner's service): ``ErrorMonitor`` with its
  constructor options and terminal output on by default.
* ``ErrorAggregator`` (LEDMatrix's aggregator): ``record_error(error, context, plugin_id,
  operation)`` returning an ErrorRecord, ``on_pattern_detected``, ``get_error_summary``,
  ``get_plugin_health``, ``clear_old_records``, ``export_to_file`` and the module-level
  ``get_error_aggregator`` / ``record_error``.

Switching is a change of imports; see the README's migration table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .model import ErrorPattern, ErrorRecord
from .monitor import ErrorMonitor, get_error_monitor
from .reports import _merged_context

_QUIET: dict[str, Any] = {
    "capture_sys_excepthook": False,
    "capture_threading": False,
    "capture_logging": False,
    "capture_asyncio": False,
}


class ErrorMonitoringService(ErrorMonitor):
    """Seed 000's service: same options and defaults (terminal output on)."""

    def __init__(
        self,
        enable_terminal_output: bool = True,
        enable_resource_monitoring: bool = True,
        enable_breadcrumbs: bool = True,
        max_breadcrumbs: int = 100,
        resource_check_interval: float = 1.0,
        error_buffer_size: int = 1000,
        session_timeout: float = 3600.0,
        **options: Any,
    ) -> None:
        super().__init__(
            enable_terminal_output=enable_terminal_output,
            enable_resource_monitoring=enable_resource_monitoring,
            enable_breadcrumbs=enable_breadcrumbs,
            max_breadcrumbs=max_breadcrumbs,
            resource_check_interval=resource_check_interval,
            error_buffer_size=error_buffer_size,
            session_timeout=session_timeout,
            **options,
        )


class ErrorAggregator:
    """Seed 003's aggregator: synchronous-looking API over a monitor's worker."""

    def __init__(
        self,
        max_records: int = 1000,
        pattern_threshold: int = 5,
        pattern_window_minutes: float = 60,
        export_path: Path | str | None = None,
        monitor: ErrorMonitor | None = None,
    ) -> None:
        if monitor is None:
            monitor = ErrorMonitor(
                max_records=max_records,
                pattern_threshold=pattern_threshold,
                pattern_window_minutes=pattern_window_minutes,
                export_path=None if export_path is None else str(export_path),
                enable_resource_monitoring=False,
                **_QUIET,
            )
        self.monitor = monitor
        self.max_records = monitor.config.max_records
        self.pattern_threshold = monitor.config.pattern_threshold
        self.pattern_window = timedelta(seconds=monitor.config.pattern_window_seconds)
        self.export_path = Path(export_path) if export_path is not None else None
        monitor.start()  # hooks off (see _QUIET); start() also flushes at exit

    def record_error(
        self,
        error: BaseException,
        context: dict[str, Any] | None = None,
        plugin_id: str | None = None,
        operation: str | None = None,
    ) -> ErrorRecord:
        """Record an error and return its record (as the aggregator did)."""
        monitor = self.monitor
        error_id = monitor.record_error(
            error, plugin=plugin_id or "", operation=operation or "", context=context
        )
        builder = monitor.builder
        severity = "medium"
        if isinstance(error, BaseException):
            severity = monitor.rules.severity(type(error))
        return ErrorRecord(
            error_type=type(error).__name__,
            message=builder.message(error) if isinstance(error, BaseException) else str(error),
            timestamp=datetime.now(),
            context=monitor.scrubber.clean(_merged_context(context, error)) or {},
            plugin_id=plugin_id,
            operation=operation,
            stack_trace=builder.stack_trace(error) if isinstance(error, BaseException) else None,
            error_id=error_id or "",
            severity=severity,
        )

    def on_pattern_detected(self, callback: Callable[[ErrorPattern], None]) -> None:
        """Called with each new pattern of an error type (seed 003's patterns)."""

        def by_type(pattern: ErrorPattern) -> None:
            if pattern.kind == "type":
                callback(pattern)

        self.monitor.register_pattern_callback(by_type)

    def get_error_summary(self) -> dict[str, Any]:
        return self.monitor.get_error_summary()

    def get_plugin_health(self, plugin_id: str) -> dict[str, Any]:
        return self.monitor.get_plugin_health(plugin_id)

    def clear_old_records(self, max_age_hours: float = 24) -> int:
        return self.monitor.clear_old_records(max_age_hours)

    def export_to_file(self, filepath: Path | str) -> None:
        self.monitor.export_to_file(Path(filepath))


_aggregator: ErrorAggregator | None = None
_aggregator_lock = threading.Lock()


def get_error_aggregator(
    max_records: int = 1000,
    pattern_threshold: int = 5,
    pattern_window_minutes: float = 60,
    export_path: Path | str | None = None,
) -> ErrorAggregator:
    """The process-wide aggregator, over the process-wide monitor (first call's settings win)."""
    global _aggregator
    with _aggregator_lock:
        if _aggregator is None:
            monitor = get_error_monitor(
                max_records=max_records,
                pattern_threshold=pattern_threshold,
                pattern_window_minutes=pattern_window_minutes,
                export_path=None if export_path is None else str(export_path),
            )  # the process-wide monitor keeps its hooks: seed 000 code may share it
            _aggregator = ErrorAggregator(monitor=monitor, export_path=export_path)
        return _aggregator


def record_error(
    error: BaseException,
    context: dict[str, Any] | None = None,
    plugin_id: str | None = None,
    operation: str | None = None,
) -> ErrorRecord:
    """Record an error on the process-wide aggregator."""
    return get_error_aggregator().record_error(error, context, plugin_id, operation)
