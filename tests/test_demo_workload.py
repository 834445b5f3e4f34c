"""The demo workload must exercise every feature of the monitor, or the demo shows an
empty dashboard: several groups and severities, sessions of every ending, recoveries that
succeed and fail, timed operations, patterns and an unhealthy plugin."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter import ErrorMonitor
from exporter.demo.workload import COMPONENTS, PLUGINS, Workload


def sample_sum(registry: Any, name: str, **labels: str) -> float:
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def make_monitor(**options: Any) -> ErrorMonitor:
    settings: dict[str, Any] = {
        "pattern_threshold": 5, "pattern_window_minutes": 1, "capture_sys_excepthook": False,
        "capture_threading": False, "enable_resource_monitoring": False,
    }
    settings.update(options)
    return ErrorMonitor(**settings)


# step() without run() leaves the current session open (and current in this thread's
# context): every test that steps by hand calls close(), so later tests start clean.


@pytest.fixture
def monitor() -> Iterator[ErrorMonitor]:
    mon = make_monitor()
    mon.start()
    try:
        yield mon
    finally:
        mon.stop()


def test_short_run_exercises_every_feature(monitor: ErrorMonitor) -> None:
    workload = Workload(monitor, rate=1000, seed=0, storm_every=0.3)
    workload.run(threading.Event(), duration=1.5)
    assert monitor.flush(timeout=10)
    assert workload.counts["workload_failures"] == 0
    assert workload.counts["storm"] >= 2

    stats = monitor.get_statistics()
    assert stats["total_errors"] > 100
    assert all(stats["errors_by_severity"][s] > 0 for s in ("low", "medium", "high", "critical"))
    assert set(COMPONENTS) <= set(stats["errors_by_component"])
    assert set(PLUGINS) <= set(stats["errors_by_plugin"])
    assert {"ConnectionError", "TimeoutError", "ValueError", "KeyError", "OSError",
            "CANBusError", "MemoryError", "RuntimeError"} <= set(stats["errors_by_type"])
    assert 0 < stats["recovery_success_rate"] < 1

    groups = monitor.list_groups()
    assert len(groups) >= 10
    assert all(g["file_path"] and g["file_path"].endswith("workload.py") for g in groups)
    assert len({g["function_name"] for g in groups}) >= 8

    ended = stats["sessions"]["ended"]
    assert ended["exited"] > 0 and ended["errored"] > 0 and ended["crashed"] > 0
    assert stats["sessions"]["users"] >= 3
    # run() ends its sessions on the way out: only the process session is left
    assert stats["sessions"]["active"] == 1

    registry = monitor.registry
    assert sample_sum(registry, "app_error_recoveries_total", result="success") > 0
    assert sample_sum(registry, "app_error_recoveries_total", result="failure") > 0
    assert sample_sum(registry, "app_operation_duration_seconds_count", outcome="ok") > 0
    assert sample_sum(registry, "app_operation_duration_seconds_count", outcome="error") > 0
    assert sample_sum(registry, "app_sessions_total", status="crashed") > 0

    severities = {p["severity"] for p in monitor.get_patterns()}
    assert "critical" in severities
    assert monitor.get_plugin_health("weather")["status"] == "unhealthy"


def test_errors_carry_breadcrumbs_context_and_users(monitor: ErrorMonitor) -> None:
    workload = Workload(monitor, rate=1000, seed=1)
    try:
        for _ in range(200):
            workload.step()
    finally:
        workload.close()
    monitor.flush()
    flash = next(g for g in monitor.list_groups() if g["function_name"] == "flash_ecu_map")
    detail = monitor.get_group(flash["error_id"])
    assert detail is not None
    report = detail["report"]
    assert report["context"]["map"] == "fuel"
    assert any(b["action"] == "flash_map" for b in report["breadcrumbs"])
    assert report["user_id"] in {"alice", "bob", "carol", "dave", "erin", "frank"}
    assert flash["affected_users"] >= 2


def test_same_seed_same_run() -> None:
    runs = []
    for _ in range(2):
        mon = make_monitor()
        mon.start()
        workload = Workload(mon, rate=1000, seed=42)
        try:
            runs.append([workload.step() for _ in range(150)])
        finally:
            workload.close()
            mon.stop()
    assert runs[0] == runs[1]
    assert len(set(runs[0])) >= 5


def test_storm_mode_is_all_critical_memory_errors(monitor: ErrorMonitor) -> None:
    workload = Workload(monitor, rate=1000, seed=0, storm=True)
    for _ in range(30):
        workload.step()
    workload.close()
    monitor.flush()
    stats = monitor.get_statistics()
    assert stats["errors_by_type"] == {"MemoryError": 30}
    assert stats["errors_by_severity"]["critical"] == 30
    assert stats["errors_by_plugin"] == {"news": 30}
    critical = [p for p in monitor.get_patterns() if p["error_type"] == "MemoryError"]
    assert critical and all(p["severity"] == "critical" for p in critical)
    assert monitor.get_plugin_health("news")["status"] == "unhealthy"


def test_run_stops_promptly(monitor: ErrorMonitor) -> None:
    stop = threading.Event()
    workload = Workload(monitor, rate=0.2, seed=0)  # a 5 s pause between steps
    thread = threading.Thread(target=workload.run, args=(stop,))
    thread.start()
    time.sleep(0.2)
    stop.set()
    thread.join(timeout=3)  # well inside the 5 s pause: stop interrupts it
    assert not thread.is_alive()


def test_rate_must_be_positive(monitor: ErrorMonitor) -> None:
    with pytest.raises(ValueError, match="rate"):
        Workload(monitor, rate=0)
