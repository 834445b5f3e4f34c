"""The two earlier APIs keep their behaviour (issue 7).

* ErrorAggregator: the pattern callback runs inside the ``record_error`` call that crossed
  the threshold, on the caller's thread, once per error type.
* get_error_aggregator / get_error_monitor: options that would be ignored are named in a
  RuntimeWarning; ``agg.export_path`` is the path actually written to.
* @handle_errors without ``monitor=`` reports to the monitor the app built and started.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import exporter._running_monitors as running_module
import exporter.compat as compat
import exporter.global_monitor as monitor_module
from exporter import (
    ErrorAggregator,
    ErrorMonitor,
    ErrorMonitoringService,
    ErrorPattern,
    ErrorRecord,
    get_error_aggregator,
    get_error_monitor,
    handle_errors,
    record_error,
)
from exporter.config import HOOKS_OFF

QUIET: dict[str, Any] = {**HOOKS_OFF, "serve": False}


@pytest.fixture
def aggregator() -> Iterator[Any]:
    made: list[ErrorAggregator] = []

    def factory(**options: Any) -> ErrorAggregator:
        agg = ErrorAggregator(**options)
        made.append(agg)
        return agg

    yield factory
    for agg in made:
        agg.monitor.stop(timeout=2.0)


@pytest.fixture
def services() -> Iterator[Any]:
    """User-built ErrorMonitoringService instances (not started); all stopped at teardown."""
    made: list[ErrorMonitor] = []

    def factory(**options: Any) -> ErrorMonitoringService:
        service = ErrorMonitoringService(**{"enable_terminal_output": False, **QUIET, **options})
        made.append(service)
        return service

    yield factory
    for service in made:
        service.stop(timeout=2.0)


def record(agg: Any, exc: BaseException, plugin: str | None = None) -> ErrorRecord:
    try:
        raise exc
    except BaseException as caught:
        return agg.record_error(caught, None, plugin, "update")


def other_site(agg: Any, exc: BaseException) -> ErrorRecord:
    """Same type, another raise site: another signature (the monitor's 2nd pattern kind)."""
    try:
        raise exc
    except BaseException as caught:
        return agg.record_error(caught)


@pytest.fixture
def caught_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen


def runtime_warnings(seen: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]


# -- ErrorAggregator pattern callbacks ------------------------------------------------------------


def test_pattern_callback_runs_inside_the_record_error_that_crossed_the_threshold(aggregator):
    agg = aggregator(pattern_threshold=3)
    caller = threading.get_ident()
    returned: list[int] = []  # index of each record_error call that has returned
    seen: list[tuple[ErrorPattern, int, list[int]]] = []

    def on_pattern(pattern: ErrorPattern) -> None:
        seen.append((pattern, threading.get_ident(), list(returned)))

    agg.on_pattern_detected(on_pattern)
    for i in range(3):
        record(agg, TimeoutError("api timeout"), "weather" if i < 2 else "clock")
        assert len(seen) == (1 if i == 2 else 0)  # there as soon as the 3rd call returns
        returned.append(i)
    [(pattern, thread, returned_then)] = seen
    assert thread == caller
    assert returned_then == [0, 1]  # the third call had not returned yet
    assert (pattern.error_type, pattern.count, pattern.kind, pattern.key) == (
        "TimeoutError",
        3,
        "type",
        "TimeoutError",
    )
    assert pattern.severity == "warning"
    assert pattern.affected_plugins == ["weather", "clock"]
    assert pattern.sample_messages == ["api timeout"]
    assert pattern.first_seen <= pattern.last_seen
    # nothing arrives later from the monitor's own (asynchronous) pattern detection
    agg.get_error_summary()
    assert agg.monitor._callbacks.flush(10)
    assert len(seen) == 1


def test_pattern_callback_fires_once_per_type_and_again_for_another_type(aggregator):
    agg = aggregator(pattern_threshold=3)
    seen: list[ErrorPattern] = []
    agg.on_pattern_detected(seen.append)
    for i in range(10):  # N > threshold, from two raise sites (two signatures)
        (record if i % 2 else other_site)(agg, ValueError(f"bad value {i}"))
    assert [p.error_type for p in seen] == ["ValueError"]
    assert seen[0].count == 3
    assert len(seen[0].sample_messages) == 3
    for _ in range(2):
        record(agg, KeyError("k"))
    assert len(seen) == 1  # below the threshold for KeyError
    record(agg, KeyError("k"))
    assert [p.error_type for p in seen] == ["ValueError", "KeyError"]
    for _ in range(5):
        record(agg, KeyError("k"))
        record(agg, ValueError("again"))
    agg.get_error_summary()
    assert agg.monitor._callbacks.flush(10)
    assert [p.error_type for p in seen] == ["ValueError", "KeyError"]
    # the monitor's own view still has the patterns (summary shape unchanged)
    assert set(agg.get_error_summary()["active_patterns"]) == {"ValueError", "KeyError"}


def test_pattern_window_counts_only_recent_errors_and_a_pattern_is_reported_once(aggregator):
    agg = aggregator(pattern_threshold=3, pattern_window_minutes=1)
    now = [1_000_000.0]
    agg._clock = lambda: now[0]
    seen: list[ErrorPattern] = []
    agg.on_pattern_detected(seen.append)
    record(agg, OSError("disk"))
    record(agg, OSError("disk"))
    now[0] += 61  # both fall out of the one-minute window
    record(agg, OSError("disk"))
    record(agg, OSError("disk"))
    assert seen == []
    now[0] += 30
    record(agg, OSError("disk"), "logger")
    [pattern] = seen
    assert pattern.count == 3
    assert pattern.first_seen.timestamp() == pytest.approx(1_000_061.0)
    assert pattern.last_seen.timestamp() == pytest.approx(1_000_091.0)
    assert pattern.affected_plugins == ["logger"]
    now[0] += 3600  # as the seed: a detected pattern stays detected, no second call
    for _ in range(5):
        record(agg, OSError("disk"))
    assert len(seen) == 1


def test_pattern_severity_follows_the_monitor_rule(aggregator):
    from exporter.patterns import severity_for

    agg = aggregator(pattern_threshold=1)
    seen: list[ErrorPattern] = []
    agg.on_pattern_detected(seen.append)
    record(agg, LookupError("x"))
    assert [(p.count, p.severity) for p in seen] == [(1, severity_for(1, 1))]


def test_pattern_callback_raising_does_not_break_record_error(aggregator):
    agg = aggregator(pattern_threshold=2)
    after: list[ErrorPattern] = []

    def broken(pattern: ErrorPattern) -> None:
        raise RuntimeError("callback bug")

    agg.on_pattern_detected(broken)
    agg.on_pattern_detected(after.append)
    before = agg.monitor.registry.get_sample_value("app_monitor_internal_errors_total") or 0.0
    records = [record(agg, ConnectionError("down"), "news") for _ in range(3)]
    assert all(isinstance(r, ErrorRecord) for r in records)
    assert records[1].error_type == "ConnectionError" and records[1].plugin_id == "news"
    assert [p.error_type for p in after] == ["ConnectionError"]  # the next callback still ran
    counted = agg.monitor.registry.get_sample_value("app_monitor_internal_errors_total")
    assert counted == before + 1
    assert agg.get_error_summary()["total_errors"] == 3


def test_pattern_callback_once_under_concurrent_record_error(aggregator):
    agg = aggregator(pattern_threshold=50)
    seen: list[ErrorPattern] = []
    agg.on_pattern_detected(seen.append)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(25):
            record(agg, ArithmeticError("overflow"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 1
    assert seen[0].count == 50


def test_pattern_memory_is_bounded(aggregator):
    agg = aggregator(pattern_threshold=3)
    agg._watch.max_types = 10
    for i in range(50):
        record(agg, type(f"Error{i}", (Exception,), {})("x"))
    assert len(agg._watch._types) == 10
    assert all(w is None or len(w.times) <= 3 for w in agg._watch._types.values())


def test_seed_003_script_gets_its_pattern_callback_in_order(tmp_path):
    """A small script written the way the seed's users wrote them."""
    script = textwrap.dedent(
        """
        import threading
        from exporter.compat import get_error_aggregator, record_error

        def on_pattern(pattern):
            print("pattern", pattern.error_type, pattern.count, pattern.severity,
                  threading.current_thread() is threading.main_thread(), flush=True)

        get_error_aggregator(pattern_threshold=3).on_pattern_detected(on_pattern)
        for i in range(5):
            try:
                raise ConnectionError("feed unreachable")
            except ConnectionError as exc:
                rec = record_error(exc, plugin_id="news", operation="update")
            print("recorded", i, rec.error_type, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "recorded 0 ConnectionError",
        "recorded 1 ConnectionError",
        "pattern ConnectionError 3 warning True",
        "recorded 2 ConnectionError",
        "recorded 3 ConnectionError",
        "recorded 4 ConnectionError",
    ]


# -- ignored options are named ------------------------------------------------------------------


def test_get_error_aggregator_names_the_ignored_options(tmp_path, caught_warnings):
    agg = get_error_aggregator(pattern_threshold=3, max_records=50)
    assert runtime_warnings(caught_warnings) == []
    assert get_error_aggregator() is agg
    assert (
        get_error_aggregator(pattern_threshold=3, max_records=50, pattern_window_minutes=60) is agg
    )  # equal: nothing to say
    try:
        raise ValueError("module level")
    except ValueError as exc:
        record_error(exc)
    assert runtime_warnings(caught_warnings) == []

    assert get_error_aggregator(export_path=tmp_path, pattern_threshold=5, max_records=50) is agg
    [message] = runtime_warnings(caught_warnings)
    assert message.startswith("get_error_aggregator(): an aggregator already exists")
    assert f"export_path={str(tmp_path)!r} (in use: None)" in message
    assert "pattern_threshold=5 (in use: 3)" in message
    assert "max_records" not in message
    [warning] = [w for w in caught_warnings if issubclass(w.category, RuntimeWarning)]
    assert warning.filename == __file__  # points at the caller's line
    assert agg.export_path is None  # the truth: nothing is exported
    assert agg.monitor.config.export_path is None
    assert agg.pattern_threshold == 3


def test_get_error_aggregator_over_an_existing_monitor_names_its_settings(caught_warnings):
    monitor = get_error_monitor(pattern_threshold=7, **QUIET)
    agg = get_error_aggregator(pattern_threshold=3, max_records=1000)
    assert agg.monitor is monitor
    [message] = runtime_warnings(caught_warnings)
    assert message.startswith(
        "get_error_aggregator(): the new aggregator uses the existing process-wide monitor"
    )
    assert "pattern_threshold=3 (in use: 7)" in message
    assert "max_records" not in message  # 1000 is what the monitor has
    assert agg.pattern_threshold == 7


def test_aggregator_export_path_is_the_path_written_to(tmp_path, aggregator):
    agg = get_error_aggregator(export_path=tmp_path)
    assert agg.export_path == tmp_path
    assert agg.monitor.config.export_path == str(tmp_path)
    own = aggregator(export_path=str(tmp_path / "own"))
    assert own.export_path == tmp_path / "own"
    shared = aggregator(monitor=ErrorMonitor(**QUIET), export_path=tmp_path)
    assert shared.export_path is None  # its monitor exports nowhere: say so
    shared.export_path = tmp_path / "later"  # the seed's attribute still configures it
    assert shared.monitor.config.export_path == str(tmp_path / "later")
    assert shared.monitor.metrics.materialized  # the auto-export reads them: made here
    assert shared.export_path == tmp_path / "later"


def test_get_error_monitor_names_the_ignored_options(caught_warnings):
    first = get_error_monitor(max_breadcrumbs=3, **QUIET)
    assert get_error_monitor() is first
    assert get_error_monitor(max_breadcrumbs=3, capture_logging=False) is first
    assert runtime_warnings(caught_warnings) == []
    assert (
        get_error_monitor(
            max_breadcrumbs=50, session_timeout=10.0, api_token="s3cret", no_such_option=1
        )
        is first
    )
    [message] = runtime_warnings(caught_warnings)
    assert message.startswith("get_error_monitor(): returning the existing process-wide monitor")
    assert "max_breadcrumbs=50 (in use: 3)" in message
    assert "session_timeout=10.0 (in use: 3600.0)" in message
    assert "api_token=***" in message and "s3cret" not in message
    assert "no_such_option=1 (not an option)" in message
    assert "capture_logging" not in message
    assert first.config.max_breadcrumbs == 3


def test_get_error_monitor_warning_names_a_running_app_monitor(services, caught_warnings):
    service = services(app_version="1.0").start()
    assert get_error_monitor() is service
    assert get_error_monitor(app_version="1.0") is service
    assert runtime_warnings(caught_warnings) == []
    assert get_error_monitor(app_version="2.0") is service
    [message] = runtime_warnings(caught_warnings)
    assert "the running monitor started most recently" in message
    assert "app_version='2.0' (in use: '1.0')" in message


def test_the_warning_is_visible_without_any_configuration(tmp_path):
    """Default warning filters, no logging set up: the user still sees it on stderr."""
    script = textwrap.dedent(
        f"""
        from exporter.compat import get_error_aggregator
        from exporter import get_error_monitor

        get_error_aggregator(pattern_threshold=3)
        get_error_aggregator(export_path={str(tmp_path)!r})
        get_error_monitor(max_breadcrumbs=5)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (
        "RuntimeWarning: get_error_aggregator(): an aggregator already exists; ignored "
        f"options: export_path={str(tmp_path)!r} (in use: None)" in done.stderr
    )
    assert (
        "RuntimeWarning: get_error_monitor(): returning the existing process-wide "
        "monitor" in done.stderr
    )
    assert "max_breadcrumbs=5 (in use: 100)" in done.stderr


# -- handle_errors and the process-wide lookup ---------------------------------------------------


@handle_errors(component="Dyno", reraise=False, default="fallback")
def decorated_at_import() -> str:
    raise ConnectionError("dyno offline")


@handle_errors(component="CAN", reraise=False, default="async fallback")
async def decorated_async_at_import() -> str:
    raise TimeoutError("bus silent")


def groups_by_type(monitor: ErrorMonitor) -> dict[str, dict[str, Any]]:
    monitor.flush()
    return {g["error_type"]: g for g in monitor.list_groups()}


def test_handle_errors_reports_to_the_running_service_the_app_built(services):
    service = services().start()  # built after the functions were decorated
    assert decorated_at_import() == "fallback"
    assert asyncio.run(decorated_async_at_import()) == "async fallback"
    groups = groups_by_type(service)
    assert set(groups) == {"ConnectionError", "TimeoutError"}
    assert groups["ConnectionError"]["component"] == "Dyno"
    assert groups["TimeoutError"]["component"] == "CAN"
    assert monitor_module._global_monitor is None  # no idle process-wide monitor was made
    assert get_error_monitor() is service


def test_handle_errors_sync_and_async_reraise_into_the_running_service(services):
    @handle_errors(component="ECU", operation="write_map")
    def write_map() -> None:
        raise PermissionError("locked")

    @handle_errors(plugin="telemetry")
    async def upload() -> None:
        raise OSError("no route")

    service = services().start()
    with pytest.raises(PermissionError):
        write_map()
    with pytest.raises(OSError):
        asyncio.run(upload())
    groups = groups_by_type(service)
    assert set(groups) == {"PermissionError", "OSError"}
    summary = service.get_statistics()
    assert summary["total_errors"] == 2


def test_the_lookup_falls_back_when_the_running_monitor_stops(services):
    older = services().start()
    newer = services().start()
    assert decorated_at_import() == "fallback"
    assert set(groups_by_type(newer)) == {"ConnectionError"}
    assert groups_by_type(older) == {}
    newer.stop(timeout=2.0)
    assert get_error_monitor() is older
    assert asyncio.run(decorated_async_at_import()) == "async fallback"
    assert set(groups_by_type(older)) == {"TimeoutError"}
    older.stop(timeout=2.0)
    fresh = get_error_monitor(**QUIET)  # nothing running: the process-wide one, as before
    assert fresh is not older and fresh is not newer
    assert monitor_module._global_monitor is fresh
    newer.start()
    assert get_error_monitor() is fresh  # the one get_error_monitor created comes first


def test_a_monitor_get_error_monitor_created_comes_first(services):
    explicit = get_error_monitor(**QUIET).start()
    service = services().start()
    assert get_error_monitor() is explicit
    assert decorated_at_import() == "fallback"
    assert set(groups_by_type(explicit)) == {"ConnectionError"}
    assert groups_by_type(service) == {}


def test_reset_error_monitor_forgets_both(services):
    explicit = get_error_monitor(**QUIET).start()
    service = services().start()
    monitor_module.reset_error_monitor()
    assert explicit.running is False  # the process-wide one is stopped
    assert service.running is True  # the app's own keeps running, just forgotten
    assert get_error_monitor(**QUIET) is not service
    assert running_module._running == []


def test_the_lookup_does_not_keep_a_dropped_monitor_alive(services):
    monitor = ErrorMonitor(**QUIET).start()
    assert get_error_monitor() is monitor
    monitor.stop(timeout=2.0)
    ref = weakref.ref(monitor)
    del monitor
    gc.collect()
    assert ref() is None
    # a monitor still listed (as if dropped while registered) is held weakly too
    noted = ErrorMonitor(**QUIET)
    running_module.started(noted)
    assert len(running_module._running) == 1
    ref = weakref.ref(noted)
    del noted
    gc.collect()
    assert ref() is None
    assert get_error_monitor() is not None and monitor_module._global_monitor is not None
    assert running_module._running == []  # the dead reference was dropped


def test_start_stop_cycles_leave_no_entries(services):
    service = services()
    for _ in range(20):
        service.start()
        service.stop(timeout=2.0)
    assert running_module._running == []
    other = services().start()
    assert [r() for r in running_module._running] == [other]


def test_aggregator_record_error_after_reset_uses_a_fresh_aggregator():
    """The conftest resets compat._aggregator; record_error must follow it."""
    try:
        raise ValueError("x")
    except ValueError as exc:
        rec = record_error(exc)
    assert compat._aggregator is not None
    assert rec.error_id
    assert compat._aggregator.export_path is None
