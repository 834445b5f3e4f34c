"""Error, alert and pattern callbacks; ones that raise or block never break capture."""

from __future__ import annotations

import threading
from typing import Any

from support.monitoring import sample, settle

from exporter import ErrorPattern, ErrorPriority, ErrorReport


def fail(monitor: Any, kind: type[Exception] = ValueError, message: str = "bad") -> str:
    try:
        raise kind(message)
    except kind as exc:
        error_id = monitor.record_error(exc, component="ECUControl")
        assert error_id is not None
        return error_id


def test_error_callback_gets_every_report(monitor):
    reports: list[ErrorReport] = []
    monitor.register_error_callback(reports.append)
    fail(monitor)
    fail(monitor)
    fail(monitor, KeyError)
    settle(monitor)
    assert len(reports) == 3
    assert all(isinstance(r, ErrorReport) for r in reports)
    assert [r.error_type for r in reports] == ["ValueError", "ValueError", "KeyError"]
    assert reports[0].component == "ECUControl"
    assert reports[0].to_dict()["error_type"] == "ValueError"


def test_callbacks_run_off_the_callers_thread(monitor):
    threads: list[str] = []
    monitor.register_error_callback(lambda r: threads.append(threading.current_thread().name))
    fail(monitor)
    settle(monitor)
    assert threads == ["error-exporter-callbacks"]


def test_alert_callback_only_for_high_priority(monitor):
    alerts: list[ErrorReport] = []
    monitor.register_alert_callback(alerts.append)
    fail(monitor, ValueError)  # medium
    fail(monitor, ConnectionError)  # high
    fail(monitor, MemoryError)  # critical
    settle(monitor)
    assert [(r.error_type, r.priority) for r in alerts] == [
        ("ConnectionError", ErrorPriority.HIGH),
        ("MemoryError", ErrorPriority.CRITICAL),
    ]


def test_pattern_callback(make_monitor):
    monitor = make_monitor(pattern_threshold=3)
    patterns: list[ErrorPattern] = []
    monitor.register_pattern_callback(patterns.append)
    for _ in range(5):
        fail(monitor)
    settle(monitor)
    assert sorted((p.kind, p.error_type, p.count) for p in patterns) == [
        ("signature", "ValueError", 3),
        ("type", "ValueError", 3),
    ]


def test_a_raising_callback_never_breaks_capture(make_monitor):
    monitor = make_monitor(capture_logging=True)  # its failures must not come back as errors
    good: list[str] = []

    def explodes(report: ErrorReport) -> None:
        raise RuntimeError("callback bug")

    def exits(report: ErrorReport) -> None:
        raise SystemExit(3)

    monitor.register_error_callback(explodes)
    monitor.register_error_callback(exits)
    monitor.register_error_callback(lambda r: good.append(r.error_id))
    monitor.register_alert_callback(explodes)
    for _ in range(10):
        fail(monitor, ConnectionError)
    settle(monitor)
    assert len(good) == 10
    assert monitor.get_statistics()["total_errors"] == 10
    assert monitor.get_statistics()["errors_by_type"] == {"ConnectionError": 10}
    # 10 x explodes, 10 x exits, 10 x the raising alert callback
    assert sample(monitor, "app_monitor_internal_errors_total") == 30
    assert monitor._callbacks.alive


def test_a_blocking_callback_never_breaks_capture(make_monitor):
    monitor = make_monitor(callback_queue_size=5)
    entered, release = threading.Event(), threading.Event()

    def blocks(report: ErrorReport) -> None:
        entered.set()
        release.wait()  # "forever" until the test lets it go

    monitor.register_error_callback(blocks)
    try:
        fail(monitor)
        assert entered.wait(30)
        for _ in range(100):
            fail(monitor)
        assert monitor.flush(10), "the report worker must not wait for callbacks"
        stats = monitor.get_statistics()
        assert stats["total_errors"] == 101
        assert monitor.list_groups()[0]["occurrence_count"] == 101
        # one callback running, five queued, the other 95 dropped and counted: by the full
        # callback queue, or before it by the group's storm budget (coalesced)
        assert (
            sample(monitor, "app_error_reports_dropped_total", {"reason": "callback_queue_full"})
            + sample(monitor, "app_error_reports_dropped_total", {"reason": "coalesced"})
            == 95
        )
        assert sample(monitor, "app_error_reports_dropped_total", {"reason": "queue_full"}) == 0
        monitor.stop(timeout=1.0)  # returns although a callback never finishes
        assert monitor.running is False
    finally:
        release.set()


def test_callbacks_registered_late_see_later_errors_only(monitor):
    fail(monitor)
    settle(monitor)
    late: list[ErrorReport] = []
    monitor.register_error_callback(late.append)
    fail(monitor, KeyError)
    settle(monitor)
    assert [r.error_type for r in late] == ["KeyError"]


def test_a_callback_may_record_errors_itself(monitor):
    """A callback that records an error is an app choice: counted, not a loop."""
    recorded: list[str | None] = []

    def reports_once(report: ErrorReport) -> None:
        if report.error_type == "ValueError":
            recorded.append(fail(monitor, KeyError, "from a callback"))

    monitor.register_error_callback(reports_once)
    fail(monitor)
    settle(monitor)
    settle(monitor)
    assert len(recorded) == 1
    assert monitor.get_statistics()["errors_by_type"] == {"ValueError": 1, "KeyError": 1}


def test_an_auto_export_never_makes_the_metrics_on_the_callback_thread(monkeypatch, tmp_path):
    """export_path set on the config behind the monitor's back, after its start, while
    prometheus_client is not imported: the export is skipped and counted as failed rather
    than importing it on the callback thread (a monitor setting export_path makes them)."""
    from exporter import ErrorMonitor
    from exporter.config import HOOKS_OFF
    from exporter.pipeline import ingest

    monitor = ErrorMonitor(**HOOKS_OFF)
    monkeypatch.setattr(ingest, "prometheus_client_imported", lambda: False)
    monitor.config.export_path = str(tmp_path)
    monitor.pipeline._auto_export()
    assert not monitor.metrics.materialized
    assert list(tmp_path.iterdir()) == []
    assert sample(monitor, "app_error_reports_dropped_total", {"reason": "export_failed"}) == 1
