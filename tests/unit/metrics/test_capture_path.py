"""Metric families on the capture path: exact labels, operation timing, bounded label values."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import ErrorMonitor, handle_errors
from exporter.config import HOOKS_OFF
from exporter.metrics.capture_path import (
    _PENDING_OBSERVATIONS_LIMIT,
    DROP_REASONS,
    MAX_LABEL_LENGTH,
    OVERFLOW_VALUE,
)

QUIET = HOOKS_OFF


def fail(
    monitor: Any, kind: type[Exception] = ValueError, message: str = "bad", **kwargs: Any
) -> str | None:
    try:
        raise kind(message)
    except kind as exc:
        return monitor.record_error(exc, **kwargs)


def value(monitor: Any, name: str, **labels: str) -> float:
    found = monitor.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def series(monitor: Any, family: str) -> list[dict[str, str]]:
    return [
        s.labels
        for m in monitor.registry.collect()
        if m.name == family
        for s in m.samples
        if s.name == family + "_total"
    ]


def test_errors_total_labels_are_exact(monitor):
    fail(monitor, ConnectionError, component="CANInterface", plugin="obd")
    fail(monitor, ConnectionError, component="CANInterface", plugin="obd")
    fail(monitor, KeyError)
    fail(monitor, KeyError, component=None, plugin=None)
    assert (
        value(
            monitor,
            "app_errors_total",
            error_type="ConnectionError",
            component="CANInterface",
            plugin="obd",
            severity="high",
        )
        == 2
    )
    assert (
        value(
            monitor,
            "app_errors_total",
            error_type="KeyError",
            component="",
            plugin="",
            severity="medium",
        )
        == 2
    )
    assert sorted(sorted(labels.items()) for labels in series(monitor, "app_errors")) == [
        [("component", ""), ("error_type", "KeyError"), ("plugin", ""), ("severity", "medium")],
        [
            ("component", "CANInterface"),
            ("error_type", "ConnectionError"),
            ("plugin", "obd"),
            ("severity", "high"),
        ],
    ]


def test_counts_are_made_on_the_callers_thread_without_a_worker():
    monitor = ErrorMonitor(**QUIET)  # not started: no worker at all
    for _ in range(3):
        fail(monitor, component="ECU")
    assert (
        value(
            monitor,
            "app_errors_total",
            error_type="ValueError",
            component="ECU",
            plugin="",
            severity="medium",
        )
        == 3
    )


def test_every_family_exists_from_the_start(monitor):
    text = generate_latest(monitor.registry).decode()
    for family in (
        "app_errors_total",
        "app_error_recoveries_total",
        "app_error_recovery_duration_seconds",
        "app_operation_duration_seconds",
        "app_error_reports_dropped_total",
        "app_monitor_internal_errors_total",
        "app_label_values_overflow_total",
    ):
        assert f"# TYPE {family} " in text or f"# TYPE {family[:-6]} " in text, family
    for reason in DROP_REASONS:
        assert value(monitor, "app_error_reports_dropped_total", reason=reason) == 0
        assert f'app_error_reports_dropped_total{{reason="{reason}"}} 0.0' in text
    assert value(monitor, "app_monitor_internal_errors_total") == 0
    assert "_created" not in text


def test_exemplar_carries_the_latest_error_id(monitor):
    first = fail(monitor, component="ECU")
    text = generate_openmetrics(monitor.registry).decode()
    line = next(x for x in text.splitlines() if x.startswith("app_errors_total{"))
    assert f'# {{error_id="{first}"}}' in line
    second = fail(monitor, KeyError, component="ECU")
    text = generate_openmetrics(monitor.registry).decode()
    assert f'error_id="{second}"' in text


# -- operation duration -------------------------------------------------------------------


def op_count(monitor: Any, outcome: str, **labels: str) -> float:
    return value(monitor, "app_operation_duration_seconds_count", outcome=outcome, **labels)


def test_operation_duration_via_handle_errors_sync(monitor):
    @handle_errors(component="CANInterface", plugin="obd", monitor=monitor)
    def read_frame(fail_now: bool) -> str:
        if fail_now:
            raise OSError("bus off")
        return "frame"

    assert read_frame(False) == "frame"
    assert read_frame(False) == "frame"
    with pytest.raises(OSError):
        read_frame(True)
    labels = {"component": "CANInterface", "plugin": "obd", "operation": "read_frame"}
    assert op_count(monitor, "ok", **labels) == 2
    assert op_count(monitor, "error", **labels) == 1
    assert value(monitor, "app_operation_duration_seconds_sum", outcome="ok", **labels) >= 0
    assert (
        value(
            monitor,
            "app_errors_total",
            error_type="OSError",
            component="CANInterface",
            plugin="obd",
            severity="high",
        )
        == 1
    )


def test_operation_duration_via_handle_errors_async(monitor):
    @handle_errors(plugin="weather", operation="update", reraise=False, default={}, monitor=monitor)
    async def update(fail_now: bool) -> dict[str, int]:
        await asyncio.sleep(0)
        if fail_now:
            raise TimeoutError("api slow")
        return {"temp": 21}

    async def main() -> list[Any]:
        return [await update(False), await update(True), await update(True)]

    assert asyncio.run(main()) == [{"temp": 21}, {}, {}]
    labels = {"component": "", "plugin": "weather", "operation": "update"}
    assert op_count(monitor, "ok", **labels) == 1
    assert op_count(monitor, "error", **labels) == 2
    # the error ratio dashboards compute
    errors = op_count(monitor, "error", **labels)
    assert errors / (errors + op_count(monitor, "ok", **labels)) == pytest.approx(2 / 3)


def test_operation_duration_via_capture(monitor):
    labels = {"component": "ECUControl", "plugin": "", "operation": "flash"}
    with monitor.capture(component="ECUControl", operation="flash"):
        pass
    with pytest.raises(KeyError), monitor.capture(component="ECUControl", operation="flash"):
        raise KeyError("map")
    with monitor.capture(component="ECUControl", operation="flash", reraise=False):
        raise ValueError("swallowed, recorded")
    assert op_count(monitor, "ok", **labels) == 1
    assert op_count(monitor, "error", **labels) == 2
    assert monitor.get_statistics()["errors_by_type"] == {"KeyError": 1, "ValueError": 1}


def test_timings_from_many_threads_are_all_in_the_next_scrape():
    """A timing is queued without a lock and put into its histogram before any read: eight
    threads timing at once while scrapes run lose none, and an unhashable label is made
    text on the way."""
    monitor = ErrorMonitor(**QUIET)  # not started: no tick, the scrapes alone apply them
    labels = {"component": "web", "plugin": "", "operation": "GET /x"}
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            generate_latest(monitor.registry)

    def time_requests() -> None:
        for i in range(5000):
            monitor.observe_operation("web", "", "GET /x", i % 10 != 0, 0.002)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    workers = [threading.Thread(target=time_requests) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    scraper.join()
    monitor.observe_operation("web", "", ["not", "hashable"], True, 0.5)
    assert op_count(monitor, "ok", **labels) == 8 * 4500
    assert op_count(monitor, "error", **labels) == 8 * 500
    assert op_count(monitor, "ok", component="web", plugin="", operation="['not', 'hashable']") == 1
    total = value(monitor, "app_operation_duration_seconds_sum", outcome="ok", **labels)
    assert total == pytest.approx(8 * 4500 * 0.002)


def test_timings_wait_for_no_tick_past_their_bound():
    """Nothing reads for a long while (no worker, no scrape): the queue of timings stays
    bounded, the caller folding them in once it is full."""
    monitor = ErrorMonitor(**QUIET)
    for _ in range(_PENDING_OBSERVATIONS_LIMIT + 10):
        monitor.observe_operation("web", "", "GET /", True, 0.001)
    assert len(monitor.metrics._pending_observations) <= _PENDING_OBSERVATIONS_LIMIT
    assert op_count(monitor, "ok", component="web", plugin="", operation="GET /") == (
        _PENDING_OBSERVATIONS_LIMIT + 10
    )


def test_keyboard_interrupt_through_capture_is_not_an_error(monitor):
    with pytest.raises(KeyboardInterrupt), monitor.capture(component="ECU", operation="op"):
        raise KeyboardInterrupt
    assert monitor.get_statistics()["total_errors"] == 0


def test_recovery_families(monitor):
    monitor.record_recovery(True, 0.3, component="CAN", plugin="obd")
    monitor.record_recovery(False, None, component="CAN", plugin="obd")
    assert (
        value(
            monitor, "app_error_recoveries_total", component="CAN", plugin="obd", result="success"
        )
        == 1
    )
    assert (
        value(
            monitor, "app_error_recoveries_total", component="CAN", plugin="obd", result="failure"
        )
        == 1
    )
    assert (
        value(monitor, "app_error_recovery_duration_seconds_count", component="CAN", plugin="obd")
        == 1
    )


# -- bounded label values -----------------------------------------------------------------


def test_label_values_overflow_to_other(make_monitor):
    monitor = make_monitor(label_value_limit=3)
    for i in range(5):
        fail(monitor, component=f"component-{i}")
    kept = {labels["component"] for labels in series(monitor, "app_errors")}
    assert kept == {"component-0", "component-1", "component-2", OVERFLOW_VALUE}
    assert (
        value(
            monitor,
            "app_errors_total",
            error_type="ValueError",
            component=OVERFLOW_VALUE,
            plugin="",
            severity="medium",
        )
        == 2
    )
    assert value(monitor, "app_label_values_overflow_total", label="component") == 2
    assert monitor.get_statistics()["total_errors"] == 5  # nothing lost


def test_empty_value_does_not_use_up_the_limit(make_monitor):
    monitor = make_monitor(label_value_limit=1)
    fail(monitor)
    fail(monitor, component="only")
    assert (
        value(
            monitor,
            "app_errors_total",
            error_type="ValueError",
            component="only",
            plugin="",
            severity="medium",
        )
        == 1
    )
    assert value(monitor, "app_label_values_overflow_total", label="component") == 0


def test_per_label_limits(make_monitor):
    monitor = make_monitor(label_value_limits={"plugin": 1, "error_type": 2})
    fail(monitor, plugin="weather")
    fail(monitor, plugin="clock")
    for kind in (KeyError, IndexError, TypeError):
        fail(monitor, kind)
    plugins = {labels["plugin"] for labels in series(monitor, "app_errors")}
    types = {labels["error_type"] for labels in series(monitor, "app_errors")}
    assert plugins == {"", "weather", OVERFLOW_VALUE}
    assert types == {"ValueError", "KeyError", OVERFLOW_VALUE}
    assert value(monitor, "app_label_values_overflow_total", label="plugin") == 1
    assert value(monitor, "app_label_values_overflow_total", label="error_type") == 2


def test_each_overflowing_value_is_counted_once_however_often_it_is_scraped(make_monitor):
    monitor = make_monitor(label_value_limit=1)
    for plugin in ("weather", "clock", "clock", "stocks"):
        fail(monitor, plugin=plugin)
    monitor.flush()
    for _ in range(5):  # each scrape looks the plugins up again for app_plugin_health
        text = generate_latest(monitor.registry).decode()
        assert 'app_plugin_health{plugin="other"} 1.0' in text
    assert value(monitor, "app_label_values_overflow_total", label="plugin") == 2


def test_operation_labels_are_bounded_too(make_monitor):
    monitor = make_monitor(label_value_limit=2)
    for i in range(4):
        with monitor.capture(operation=f"op{i}"):
            pass
    ops = {
        s.labels["operation"]
        for m in monitor.registry.collect()
        if m.name == "app_operation_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count")
    }
    assert ops == {"op0", "op1", OVERFLOW_VALUE}


def test_messages_and_ids_never_become_label_values(monitor):
    messages = [f"failure number {i} at 0x{i:x}" for i in range(50)]
    ids = set()
    for message in messages:
        ids.add(monitor.record_error(RuntimeError(message), component="ECU"))
    labels = {v for m in monitor.registry.collect() for s in m.samples for v in s.labels.values()}
    assert not labels & set(messages)
    assert not labels & ids
    assert len(series(monitor, "app_errors")) == 1
    assert monitor.get_statistics()["total_errors"] == 50


def test_odd_label_values_are_made_text(monitor):
    fail(monitor, component=42, plugin="p" * 500)  # type: ignore[arg-type]
    [labels] = series(monitor, "app_errors")
    assert labels["component"] == "42"
    assert labels["plugin"] == "p" * MAX_LABEL_LENGTH


# -- registry and namespace ---------------------------------------------------------------


def test_user_supplied_registry(make_monitor):
    registry = CollectorRegistry()
    monitor = make_monitor(registry=registry)
    fail(monitor, component="ECU")
    text = generate_latest(registry).decode()
    assert (
        'app_errors_total{component="ECU",error_type="ValueError",plugin="",severity="medium"} 1.0'
    ) in text
    assert (
        registry.get_sample_value(
            "app_errors_total",
            {"component": "ECU", "error_type": "ValueError", "plugin": "", "severity": "medium"},
        )
        == 1
    )


def test_two_monitors_with_their_own_registries_do_not_clash(make_monitor):
    first, second = make_monitor(), make_monitor()
    fail(first)
    assert (
        value(
            first,
            "app_errors_total",
            error_type="ValueError",
            component="",
            plugin="",
            severity="medium",
        )
        == 1
    )
    assert (
        value(
            second,
            "app_errors_total",
            error_type="ValueError",
            component="",
            plugin="",
            severity="medium",
        )
        == 0
    )


@pytest.mark.parametrize(("namespace", "prefix"), [("tuner", "tuner_"), ("", "")])
def test_namespace(make_monitor, namespace, prefix):
    monitor = make_monitor(namespace=namespace)
    fail(monitor)
    assert (
        value(
            monitor,
            f"{prefix}errors_total",
            error_type="ValueError",
            component="",
            plugin="",
            severity="medium",
        )
        == 1
    )
    text = generate_latest(monitor.registry).decode()
    assert f"{prefix}operation_duration_seconds" in text
    assert f"{prefix}error_reports_dropped_total" in text
    if prefix:
        assert "app_errors_total" not in text
