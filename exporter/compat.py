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
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from exporter.config import HOOKS_OFF
from exporter.global_monitor import _ignored_message, _process_monitor
from exporter.model import ErrorPattern, ErrorRecord
from exporter.monitor import ErrorMonitor
from exporter.patterns import MAX_AFFECTED_PLUGINS, MAX_SAMPLE_MESSAGES, severity_for
from exporter.scrub import safe_text

MAX_PATTERN_TYPES = 1000  # error types one aggregator tracks for its pattern callbacks


class ErrorMonitoringService(ErrorMonitor):
    """``ErrorMonitoringService``: same options and defaults (terminal output on)."""

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


class _TypeWindow:
    """The recent errors of one type: their times and plugins, a few messages."""

    __slots__ = ("plugins", "samples", "times")

    def __init__(self, threshold: int) -> None:
        self.times: deque[float] = deque(maxlen=threshold)
        self.plugins: deque[str | None] = deque(maxlen=threshold)
        self.samples: list[str] = []


class _PatternWatch:
    """``ErrorAggregator``'s pattern rule, on the caller's thread.

    A type recorded ``threshold`` times within ``window`` seconds is a pattern, reported
    once: ``ErrorAggregator`` kept every detected pattern for the aggregator's lifetime, so the same
    type never fired again, even after its window emptied. Memory is bounded: at most
    ``max_types`` types (least recently seen forgotten first, and a forgotten type may fire
    again), each holding at most ``threshold`` timestamps.
    """

    def __init__(self, max_types: int = MAX_PATTERN_TYPES) -> None:
        self.max_types = max_types
        self._types: OrderedDict[str, _TypeWindow | None] = OrderedDict()  # None: reported
        self._lock = threading.Lock()

    def observe(
        self,
        error_type: str,
        message: str,
        plugin: str | None,
        now: float,
        threshold: int,
        window: float,
    ) -> ErrorPattern | None:
        """Count one error; the pattern if this error made its type one."""
        threshold = max(1, int(threshold))
        with self._lock:
            types = self._types
            if error_type in types:
                types.move_to_end(error_type)
                tracked = types[error_type]
                if tracked is None:
                    return None  # reported already
                if tracked.times.maxlen != threshold:  # the threshold was changed
                    resized = _TypeWindow(threshold)
                    resized.times.extend(tracked.times)
                    resized.plugins.extend(tracked.plugins)
                    resized.samples = tracked.samples
                    types[error_type] = tracked = resized
            else:
                tracked = types[error_type] = _TypeWindow(threshold)
                if len(types) > self.max_types:
                    types.popitem(last=False)
            times, plugins = tracked.times, tracked.plugins
            cutoff = now - window
            while times and times[0] <= cutoff:
                times.popleft()
                plugins.popleft()
            if not times:
                tracked.samples.clear()
            times.append(now)
            plugins.append(plugin)
            text = message[:500]
            if len(tracked.samples) < MAX_SAMPLE_MESSAGES and text not in tracked.samples:
                tracked.samples.append(text)
            count = len(times)
            if count < threshold:
                return None
            types[error_type] = None  # once per type, as ErrorAggregator did
        affected: list[str] = []
        for name in plugins:
            if name and name not in affected and len(affected) < MAX_AFFECTED_PLUGINS:
                affected.append(name)
        return ErrorPattern(
            error_type=error_type,
            count=count,
            first_seen=datetime.fromtimestamp(times[0]),
            last_seen=datetime.fromtimestamp(now),
            affected_plugins=affected,
            sample_messages=list(tracked.samples),
            severity=severity_for(count, threshold),
            key=error_type,
            kind="type",
        )


class ErrorAggregator:
    """``ErrorAggregator``: synchronous-looking API over a monitor's worker.

    Pattern callbacks run as the original ran them: inside the ``record_error`` call that made
    an error type a pattern, on the caller's thread, once per type.
    """

    def __init__(
        self,
        max_records: int = 1000,
        pattern_threshold: int = 5,
        pattern_window_minutes: float = 60,
        export_path: Path | str | None = None,
        monitor: ErrorMonitor | None = None,
    ) -> None:
        """Without ``monitor``, builds its own from these options; with one, uses its settings."""
        if monitor is None:
            monitor = ErrorMonitor(
                max_records=max_records,
                pattern_threshold=pattern_threshold,
                pattern_window_minutes=pattern_window_minutes,
                export_path=None if export_path is None else str(export_path),
                **HOOKS_OFF,
            )
        self.monitor = monitor
        self.max_records = monitor.config.max_records
        self.pattern_threshold = monitor.config.pattern_threshold
        self.pattern_window = timedelta(seconds=monitor.config.pattern_window_seconds)
        self._pattern_callbacks: list[Callable[[ErrorPattern], None]] = []
        self._watch = _PatternWatch()
        self._clock: Callable[[], float] = time.time
        monitor.start()  # hooks off (HOOKS_OFF); start() also flushes at exit

    @property
    def export_path(self) -> Path | None:
        """The directory auto-exports are written to (the monitor's ``export_path``)."""
        path = self.monitor.config.export_path
        return None if path is None else Path(path)

    @export_path.setter
    def export_path(self, value: Path | str | None) -> None:
        self.monitor.config.export_path = None if value is None else str(value)
        self.monitor._make_registry_for_monitor_threads()  # read by the auto-export

    def record_error(
        self,
        error: BaseException,
        context: dict[str, Any] | None = None,
        plugin_id: str | None = None,
        operation: str | None = None,
    ) -> ErrorRecord:
        """Record an error and return its record (as the aggregator did).

        If this error makes its type a pattern, the ``on_pattern_detected`` callbacks run
        before this returns.
        """
        monitor = self.monitor
        recorded = monitor.record_error_now(
            error, plugin=plugin_id or "", operation=operation or "", context=context
        )
        error_id = recorded.error_id if recorded is not None else None
        record = recorded or ErrorRecord(  # not an error (KeyboardInterrupt...): not counted
            error_type=type(error).__name__,
            message=safe_text(error),
            timestamp=datetime.now(),
            context={},
            plugin_id=plugin_id,
            operation=operation,
        )
        if error_id is not None:  # None: not an error (KeyboardInterrupt...), not counted
            self._detect_pattern(record)
        return record

    def _detect_pattern(self, record: ErrorRecord) -> None:
        monitor = self.monitor
        try:
            pattern = self._watch.observe(
                record.error_type,
                record.message,
                record.plugin_id,
                self._clock(),
                self.pattern_threshold,
                self.pattern_window.total_seconds(),
            )
        except Exception as exc:
            monitor.note_internal_error(exc)
            return
        if pattern is None:
            return
        for callback in tuple(self._pattern_callbacks):
            try:
                callback(pattern)
            except Exception as exc:  # the original logged and went on
                monitor.note_internal_error(exc)

    def on_pattern_detected(self, callback: Callable[[ErrorPattern], None]) -> None:
        """Called with each new pattern of an error type (``ErrorAggregator``'s patterns).

        Synchronously, inside the ``record_error`` call that crossed the threshold, once
        per error type; an exception it raises is counted, never raised to the caller.
        """
        self._pattern_callbacks.append(callback)

    def get_error_summary(self) -> dict[str, Any]:
        return self.monitor.get_error_summary()

    def get_plugin_health(self, plugin_id: str) -> dict[str, Any]:
        return self.monitor.get_plugin_health(plugin_id)

    def clear_old_records(self, max_age_hours: float = 24) -> int:
        return self.monitor.clear_old_records(max_age_hours)

    def export_to_file(self, filepath: Path | str) -> None:
        self.monitor.export_to_file(Path(filepath))


class _Unset(Enum):
    UNSET = "unset"


_UNSET = _Unset.UNSET
_aggregator: ErrorAggregator | None = None
_aggregator_lock = threading.Lock()


def _path_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _aggregator_ignored(agg: ErrorAggregator, requested: dict[str, Any]) -> list[str]:
    """``name=requested (in use: effective)`` for each requested option the aggregator lacks."""
    in_use: dict[str, Any] = {
        "max_records": agg.max_records,
        "pattern_threshold": agg.pattern_threshold,
        "pattern_window_minutes": agg.pattern_window.total_seconds() / 60.0,
        "export_path": _path_text(agg.export_path),
    }
    ignored = []
    for name, value in requested.items():
        if name == "export_path":
            value = _path_text(value)
        if value != in_use[name]:
            ignored.append(f"{name}={value!r} (in use: {in_use[name]!r})")
    return ignored


def get_error_aggregator(
    max_records: int | _Unset = _UNSET,
    pattern_threshold: int | _Unset = _UNSET,
    pattern_window_minutes: float | _Unset = _UNSET,
    export_path: Path | str | _Unset | None = _UNSET,
) -> ErrorAggregator:
    """The process-wide aggregator, over the process-wide monitor (first call's settings win).

    Options left out take the monitor's configuration (defaults: 1000 records, threshold
    5, a 60-minute window, no export). When the aggregator, or the monitor it would use
    (see ``get_error_monitor``), already exists, options that differ from the settings in
    use are ignored with a ``RuntimeWarning`` that names each of them.
    """
    global _aggregator
    requested: dict[str, Any] = {
        name: value
        for name, value in (
            ("max_records", max_records),
            ("pattern_threshold", pattern_threshold),
            ("pattern_window_minutes", pattern_window_minutes),
            ("export_path", export_path),
        )
        if value is not _UNSET
    }
    with _aggregator_lock:
        agg = _aggregator
        if agg is None:
            options = dict(requested)
            if "export_path" in options:
                options["export_path"] = _path_text(options["export_path"])
            # the process-wide monitor keeps its hooks: ErrorMonitoringService code may share it
            monitor, ignored, existing = _process_monitor(options)
            agg = _aggregator = ErrorAggregator(monitor=monitor)
            reason = f"the new aggregator uses {existing}, whose settings stay"
        else:
            ignored = _aggregator_ignored(agg, requested)
            reason = "an aggregator already exists"
    if ignored:
        warnings.warn(
            _ignored_message("get_error_aggregator", reason, ignored), RuntimeWarning, stacklevel=2
        )
    return agg


def record_error(
    error: BaseException,
    context: dict[str, Any] | None = None,
    plugin_id: str | None = None,
    operation: str | None = None,
) -> ErrorRecord:
    """Record an error on the process-wide aggregator."""
    return get_error_aggregator().record_error(error, context, plugin_id, operation)
