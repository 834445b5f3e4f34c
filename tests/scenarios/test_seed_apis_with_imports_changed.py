"""Both in-house APIs keep working with only the imports changed (seed 000 and seed 003)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import exporter.compat as compat
from exporter import (
    Breadcrumb,
    ErrorAggregator,
    ErrorMonitoringService,
    ErrorPattern,
    ErrorPriority,
    ErrorRecord,
    ErrorReport,
    ErrorSeverity,
    ResourceSnapshot,
    get_error_aggregator,
    get_error_monitor,
    record_error,
)
from exporter.config import HOOKS_OFF

QUIET = {k: v for k, v in HOOKS_OFF.items() if k != "enable_resource_monitoring"}

# -- seed 000: the error monitoring service ---------------------------------------------------

SEED_000_REPORT_FIELDS = [
    "error_id",
    "error_type",
    "error_message",
    "severity",
    "priority",
    "timestamp",
    "first_occurrence",
    "occurrence_count",
    "component",
    "file_path",
    "line_number",
    "function_name",
    "stack_trace",
    "traceback_lines",
    "environment",
    "breadcrumbs",
    "resource_snapshot",
    "session_id",
    "user_id",
    "affected_users",
    "frequency_per_hour",
    "recovery_attempted",
    "recovery_successful",
    "metadata",
]
SEED_000_SNAPSHOT_FIELDS = [
    "timestamp",
    "cpu_percent",
    "memory_percent",
    "memory_used_mb",
    "memory_available_mb",
    "disk_io_read_mb",
    "disk_io_write_mb",
    "network_sent_mb",
    "network_recv_mb",
    "process_count",
    "thread_count",
]
SEED_000_OPTIONS = {
    "enable_terminal_output": False,
    "enable_resource_monitoring": False,
    "enable_breadcrumbs": True,
    "max_breadcrumbs": 7,
    "resource_check_interval": 0.5,
    "error_buffer_size": 20,
    "session_timeout": 120.0,
}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_seed_000_dataclass_fields():
    assert field_names(ErrorReport)[: len(SEED_000_REPORT_FIELDS)] == SEED_000_REPORT_FIELDS
    assert field_names(ResourceSnapshot)[: len(SEED_000_SNAPSHOT_FIELDS)] == (
        SEED_000_SNAPSHOT_FIELDS
    )
    assert {"timestamp", "action", "component", "data"} <= set(field_names(Breadcrumb))


def test_seed_000_enums():
    for enum in (ErrorSeverity, ErrorPriority):
        assert [m.name for m in enum] == ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
        assert [m.value for m in enum] == ["low", "medium", "high", "critical"]
    assert ErrorPriority("critical") is ErrorPriority.CRITICAL


@pytest.fixture
def service():
    made: list[ErrorMonitoringService] = []

    def factory(**options: Any) -> ErrorMonitoringService:
        monitor = ErrorMonitoringService(**{**SEED_000_OPTIONS, **QUIET, **options})
        made.append(monitor)
        return monitor

    yield factory
    for monitor in made:
        monitor.stop(timeout=2.0)


def test_seed_000_every_constructor_option(service):
    monitor = service()
    for name, value in SEED_000_OPTIONS.items():
        assert getattr(monitor.config, name) == value, name
    assert monitor.sessions.max_breadcrumbs == 7
    assert monitor.store.max_groups == 20
    assert monitor.sessions.timeout == 120.0
    assert monitor.resources.interval == 0.5


def test_seed_000_defaults():
    monitor = ErrorMonitoringService(**QUIET)
    assert monitor.config.enable_terminal_output is True  # the service printed by default
    assert monitor.config.enable_resource_monitoring is True
    assert monitor.config.max_breadcrumbs == 100
    assert monitor.config.error_buffer_size == 1000
    assert monitor.config.session_timeout == 3600.0
    assert monitor.config.resource_check_interval == 1.0


def test_seed_000_running_start_and_attribute_configuration(service, capsys):
    monitor = service()
    monitor.enable_terminal_output = True
    monitor.enable_resource_monitoring = True
    monitor.enable_breadcrumbs = True
    assert monitor.running is False
    if not monitor.running:
        monitor.start()
    assert monitor.running is True
    assert monitor.start() is monitor  # starting twice is harmless
    monitor.add_breadcrumb(
        action="start_tuning_session", component="MainWindow", data={"session_type": "dyno"}
    )
    try:
        raise ConnectionError("dyno offline")
    except ConnectionError as exc:
        monitor.record_error(exc, component="MainWindow")
    monitor.flush()
    report = monitor.get_error_analysis()["top_errors"][0]["report"]
    assert report["resource_snapshot"] is not None
    assert report["breadcrumbs"][0]["action"] == "start_tuning_session"
    assert "ConnectionError" in capsys.readouterr().err


def test_seed_000_callbacks_receive_error_reports(service):
    monitor = service()
    errors: list[ErrorReport] = []
    critical: list[ErrorReport] = []
    done = threading.Event()

    def on_error_detected(report: ErrorReport) -> None:
        errors.append(report)
        if len(errors) == 2:
            done.set()

    def on_critical_error(report: ErrorReport) -> None:
        if report.priority == ErrorPriority.CRITICAL:
            critical.append(report)

    monitor.register_error_callback(on_error_detected)
    monitor.register_alert_callback(on_critical_error)
    monitor.start()
    for exc in (ValueError("bad map"), MemoryError("out of memory")):
        try:
            raise exc
        except Exception as caught:
            monitor.record_error(caught, component="ECUControl")
    assert done.wait(30)
    assert [f"{r.error_type} in {r.component}" for r in errors] == [
        "ValueError in ECUControl",
        "MemoryError in ECUControl",
    ]
    monitor.flush()
    assert monitor._callbacks.flush(10)
    assert [r.error_type for r in critical] == ["MemoryError"]
    assert isinstance(errors[0].severity, ErrorSeverity)
    assert isinstance(errors[0].priority, ErrorPriority)


def test_seed_000_statistics_and_analysis_shapes(service):
    monitor = service()
    monitor.start()
    for kind, component in (
        (ValueError, "ECUControl"),
        (ValueError, "ECUControl"),
        (ConnectionError, "CANInterface"),
    ):
        try:
            raise kind("x")
        except kind as exc:
            monitor.record_error(exc, component=component)
    stats = monitor.get_statistics()
    for key in (
        "total_errors",
        "errors_by_severity",
        "errors_by_component",
        "errors_by_type",
        "recovery_success_rate",
        "average_errors_per_hour",
    ):
        assert key in stats
    assert stats["total_errors"] == 3
    assert set(stats["errors_by_severity"]) == {"critical", "high", "medium", "low"}
    assert stats["errors_by_component"] == {"ECUControl": 2, "CANInterface": 1}
    assert stats["errors_by_type"] == {"ValueError": 2, "ConnectionError": 1}
    analysis = monitor.get_error_analysis()
    assert {"statistics", "top_errors", "total_unique_errors", "session_count"} <= set(analysis)
    assert analysis["total_unique_errors"] == 2
    top = analysis["top_errors"][0]
    assert set(top) == {"error_id", "occurrence_count", "report"}
    assert top["occurrence_count"] == 2
    assert set(SEED_000_REPORT_FIELDS) <= set(top["report"])
    json.dumps(analysis)


def test_seed_000_get_error_monitor_is_process_wide():
    first = get_error_monitor(max_breadcrumbs=3, **QUIET)
    assert get_error_monitor() is first
    assert get_error_monitor(max_breadcrumbs=50).config.max_breadcrumbs == 3  # first call wins


# -- seed 003: the error aggregator -----------------------------------------------------------

SEED_003_RECORD_KEYS = {
    "error_type",
    "message",
    "timestamp",
    "context",
    "plugin_id",
    "operation",
    "stack_trace",
}
SEED_003_PATTERN_KEYS = {
    "error_type",
    "count",
    "first_seen",
    "last_seen",
    "affected_plugins",
    "sample_messages",
    "severity",
}
SEED_003_SUMMARY_KEYS = {
    "session_start",
    "total_errors",
    "error_rate_per_hour",
    "error_counts_by_type",
    "plugin_error_counts",
    "active_patterns",
    "recent_errors",
}
SEED_003_HEALTH_KEYS = {
    "plugin_id",
    "status",
    "total_errors",
    "error_types",
    "recent_error_count",
    "last_error",
}


class LEDMatrixError(Exception):
    """The seed's base exception: carries its own context dict."""

    def __init__(self, message: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.context = context or {}


class PluginError(LEDMatrixError):
    pass


@pytest.fixture
def aggregator():
    made: list[ErrorAggregator] = []

    def factory(**options: Any) -> ErrorAggregator:
        agg = ErrorAggregator(**options)
        made.append(agg)
        return agg

    yield factory
    for agg in made:
        agg.monitor.stop(timeout=2.0)


def raise_and_record(agg: Any, exc: BaseException, *args: Any, **kwargs: Any) -> ErrorRecord:
    try:
        raise exc
    except BaseException as caught:
        return agg.record_error(caught, *args, **kwargs)


def test_seed_003_constructor_options(aggregator, tmp_path):
    agg = aggregator(
        max_records=10, pattern_threshold=3, pattern_window_minutes=5, export_path=tmp_path
    )
    assert agg.max_records == 10
    assert agg.pattern_threshold == 3
    assert agg.pattern_window == timedelta(minutes=5)
    assert agg.export_path == tmp_path
    assert agg.monitor.config.max_records == 10
    assert agg.monitor.patterns.window_seconds == 300


def test_seed_003_record_error_returns_an_error_record(aggregator):
    agg = aggregator()
    before = datetime.now()
    record = raise_and_record(
        agg, ValueError("bad brightness 300"), {"value": 300}, "clock", "display"
    )
    assert isinstance(record, ErrorRecord)
    assert record.error_type == "ValueError"
    assert record.message == "bad brightness 300"
    assert before <= record.timestamp <= datetime.now()
    assert record.context == {"value": 300}
    assert record.plugin_id == "clock"
    assert record.operation == "display"
    assert record.stack_trace.startswith("Traceback (most recent call last):")
    assert "ValueError: bad brightness 300" in record.stack_trace
    data = record.to_dict()
    assert set(data) >= SEED_003_RECORD_KEYS
    # ISO-8601 as the seed wrote it, now in UTC with its offset (one time format everywhere)
    assert datetime.fromisoformat(data["timestamp"]) == record.timestamp.astimezone()
    assert data["timestamp"].endswith("+00:00")
    bare = raise_and_record(agg, KeyError("k"))
    assert (bare.context, bare.plugin_id, bare.operation) == ({}, None, None)
    keywords = raise_and_record(
        agg, KeyError("k"), context={"a": 1}, plugin_id="weather", operation="update"
    )
    assert (keywords.plugin_id, keywords.operation) == ("weather", "update")


def test_seed_003_exception_context_is_merged(aggregator):
    agg = aggregator()
    record = raise_and_record(
        agg, PluginError("fetch failed", {"url": "https://api.example"}), {"attempt": 2}, "weather"
    )
    assert record.context == {"url": "https://api.example", "attempt": 2}
    stored = agg.get_error_summary()["recent_errors"][-1]
    assert stored["context"] == {"url": "https://api.example", "attempt": 2}


def test_seed_003_on_pattern_detected(aggregator):
    agg = aggregator(pattern_threshold=3)
    patterns: list[ErrorPattern] = []
    seen = threading.Event()

    def on_pattern(pattern: ErrorPattern) -> None:
        patterns.append(pattern)
        seen.set()

    agg.on_pattern_detected(on_pattern)
    for plugin in ("weather", "weather", "clock", "clock"):
        raise_and_record(agg, TimeoutError("api timeout"), None, plugin, "update")
    assert seen.wait(30)
    agg.get_error_summary()
    assert agg.monitor._callbacks.flush(10)
    assert len(patterns) == 1  # per error type, as the seed did; not per signature
    pattern = patterns[0]
    assert pattern.error_type == "TimeoutError"
    assert pattern.count == 3
    assert pattern.severity == "warning"
    assert pattern.affected_plugins == ["weather", "clock"]
    assert set(pattern.to_dict()) >= SEED_003_PATTERN_KEYS


def test_seed_003_get_error_summary_shape(aggregator):
    agg = aggregator(pattern_threshold=2)
    for _ in range(3):
        raise_and_record(agg, ConnectionError("no network"), None, "weather", "update")
    raise_and_record(agg, ValueError("bad"), {"x": 1})
    summary = agg.get_error_summary()
    assert set(summary) == SEED_003_SUMMARY_KEYS
    datetime.fromisoformat(summary["session_start"])
    assert summary["total_errors"] == 4
    assert isinstance(summary["error_rate_per_hour"], float)
    assert summary["error_counts_by_type"] == {"ConnectionError": 3, "ValueError": 1}
    assert summary["plugin_error_counts"] == {"weather": {"ConnectionError": 3}}
    assert set(summary["active_patterns"]) == {"ConnectionError"}
    assert set(summary["active_patterns"]["ConnectionError"]) >= SEED_003_PATTERN_KEYS
    assert summary["active_patterns"]["ConnectionError"]["severity"] == "warning"
    assert [r["error_type"] for r in summary["recent_errors"]] == ["ConnectionError"] * 3 + [
        "ValueError"
    ]
    assert set(summary["recent_errors"][0]) >= SEED_003_RECORD_KEYS
    json.dumps(summary)


def test_seed_003_get_plugin_health_shape(aggregator):
    agg = aggregator()
    assert agg.get_plugin_health("clock") == {
        "plugin_id": "clock",
        "status": "healthy",
        "total_errors": 0,
        "error_types": {},
        "recent_error_count": 0,
        "last_error": None,
    }
    for _ in range(5):
        raise_and_record(agg, KeyError("missing"), None, "clock")
    health = agg.get_plugin_health("clock")
    assert set(health) == SEED_003_HEALTH_KEYS
    assert health["status"] == "unhealthy"
    assert health["total_errors"] == 5
    assert health["error_types"] == {"KeyError": 5}
    assert set(health["last_error"]) >= SEED_003_RECORD_KEYS


def test_seed_003_clear_old_records(aggregator):
    agg = aggregator()
    for i in range(5):
        raise_and_record(agg, ValueError(f"v{i}"), None, "clock")
    agg.get_error_summary()
    assert agg.clear_old_records() == 0
    assert agg.clear_old_records(max_age_hours=24) == 0
    old = datetime.now() - timedelta(hours=48)
    for _, record in list(agg.monitor.store.records)[:3]:
        record.timestamp = old  # three records from two days ago
    assert agg.clear_old_records(24) == 3
    assert len(agg.get_error_summary()["recent_errors"]) == 2
    assert agg.clear_old_records(0) == 2
    assert agg.get_error_summary()["recent_errors"] == []


def test_seed_003_export_to_file_shape(aggregator, tmp_path):
    agg = aggregator()
    raise_and_record(agg, ValueError("exported"), {"k": "v"}, "clock", "render")
    target = tmp_path / "sub" / "errors.json"
    assert agg.export_to_file(target) is None
    data = json.loads(target.read_text())
    assert {"exported_at", "summary", "all_records"} <= set(data)
    datetime.fromisoformat(data["exported_at"])
    assert set(data["summary"]) >= SEED_003_SUMMARY_KEYS
    [record] = data["all_records"]
    assert set(record) >= SEED_003_RECORD_KEYS
    assert (record["message"], record["plugin_id"], record["operation"]) == (
        "exported",
        "clock",
        "render",
    )
    agg.export_to_file(str(tmp_path / "as-string.json"))
    assert (tmp_path / "as-string.json").exists()


def test_seed_003_auto_export_on_pattern(aggregator, tmp_path):
    agg = aggregator(pattern_threshold=2, export_path=tmp_path)
    for _ in range(2):
        raise_and_record(agg, OSError("disk"), None, "logger")
    agg.get_error_summary()
    assert agg.monitor._callbacks.flush(10)
    [exported] = list(tmp_path.glob("errors_*.json"))
    assert set(json.loads(exported.read_text())) >= {"exported_at", "summary", "all_records"}


def test_seed_003_module_level_functions():
    agg = get_error_aggregator(max_records=50, pattern_threshold=4)
    assert get_error_aggregator() is agg
    assert get_error_aggregator(max_records=5).max_records == 50  # first call wins
    try:
        raise RuntimeError("module level")
    except RuntimeError as exc:
        record = record_error(exc, {"a": 1}, "weather", "update")
    assert isinstance(record, ErrorRecord)
    assert record.plugin_id == "weather"
    assert agg.get_error_summary()["total_errors"] == 1
    assert compat._aggregator is agg


def test_seed_003_auto_export_happens_even_when_the_script_ends(tmp_path):
    """A short script: the pattern's export is written before the interpreter exits."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from exporter import get_error_aggregator, record_error

        get_error_aggregator(pattern_threshold=3, export_path=Path({str(tmp_path)!r}))
        for i in range(3):
            try:
                raise ConnectionError("feed unreachable")
            except ConnectionError as exc:
                record_error(exc, plugin_id="news", operation="update")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [exported] = list(Path(tmp_path).glob("errors_*.json"))
    data = json.loads(exported.read_text())
    assert data["summary"]["active_patterns"]["ConnectionError"]["count"] == 3
