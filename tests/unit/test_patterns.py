"""Pattern detection in a sliding window (per type and per signature) and plugin health."""

from __future__ import annotations

import time
from typing import Any

import pytest

from exporter.model import ErrorPattern
from exporter.patterns import BUCKETS_PER_WINDOW, PatternDetector, WindowCount, severity_for


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def detector(threshold: int = 5, window: float = 60.0, **kwargs: Any) -> tuple[Any, Any, list]:
    clock = FakeClock()
    started: list[ErrorPattern] = []
    found = PatternDetector(threshold, window, clock=clock, on_new_pattern=started.append, **kwargs)
    return found, clock, started


def observe(
    found: PatternDetector,
    n: int,
    error_type: str = "ValueError",
    signature: str = "sig-a",
    plugin: str = "",
    message: str = "bad value",
) -> None:
    for _ in range(n):
        found.observe(error_type, signature, message, plugin)


def severities(found: PatternDetector, kind: str = "type") -> dict[str, str]:
    return {p.key: p.severity for p in found.active(kind)}


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "none"),
        (4, "none"),
        (5, "warning"),
        (10, "warning"),
        (11, "error"),
        (15, "error"),
        (16, "critical"),
        (1000, "critical"),
    ],
)
def test_severity_thresholds_are_seed_003s(count, expected):
    # seed 003: > 3x threshold critical, > 2x error, otherwise (>= threshold) warning
    assert severity_for(count, 5) == expected


def test_a_pattern_starts_at_the_threshold_and_is_reported_once():
    found, _, started = detector(threshold=5)
    observe(found, 4)
    assert started == []
    assert found.active() == []
    observe(found, 1)
    assert [(p.kind, p.key, p.count, p.severity) for p in started] == [
        ("type", "ValueError", 5, "warning"),
        ("signature", "sig-a", 5, "warning"),
    ]
    observe(found, 20)
    assert len(started) == 2  # not again while active
    assert severities(found) == {"ValueError": "critical"}
    assert severities(found, "signature") == {"sig-a": "critical"}


def test_severity_follows_the_window_count():
    found, _, _ = detector(threshold=3)
    expected = {3: "warning", 6: "warning", 7: "error", 9: "error", 10: "critical"}
    for count in range(1, 11):
        observe(found, 1)
        if count in expected:
            assert severities(found) == {"ValueError": expected[count]}, count


def test_per_type_and_per_signature_are_separate():
    found, _, started = detector(threshold=4)
    observe(found, 2, signature="sig-a")
    observe(found, 2, signature="sig-b")
    assert [(p.kind, p.key) for p in started] == [("type", "ValueError")]
    assert severities(found, "signature") == {}
    observe(found, 2, signature="sig-b")
    assert [(p.kind, p.key) for p in started][1:] == [("signature", "sig-b")]
    observe(found, 3, error_type="KeyError", signature="sig-k")
    assert "KeyError" not in severities(found)


def test_pattern_fields():
    found, clock, started = detector(threshold=3)
    first = clock.now
    found.observe("TimeoutError", "s", "ECU 1 timeout", "weather")
    clock.advance(5)
    found.observe("TimeoutError", "s", "ECU 2 timeout", "clock")
    clock.advance(5)
    found.observe("TimeoutError", "s", "ECU 1 timeout", "weather")
    pattern = started[0]
    assert pattern.error_type == "TimeoutError"
    assert pattern.count == 3
    assert pattern.first_seen.timestamp() == pytest.approx(first)
    assert pattern.last_seen.timestamp() == pytest.approx(first + 10)
    assert pattern.affected_plugins == ["weather", "clock"]
    assert pattern.sample_messages == ["ECU 1 timeout", "ECU 2 timeout"]
    data = pattern.to_dict()
    assert set(data) >= {
        "error_type",
        "count",
        "first_seen",
        "last_seen",
        "affected_plugins",
        "sample_messages",
        "severity",
    }
    assert data["affected_plugins"] == ["clock", "weather"]


def test_old_errors_leave_the_window():
    found, clock, started = detector(threshold=5, window=60)
    observe(found, 4)
    clock.advance(120)
    observe(found, 4)
    assert started == []  # 4 + 4, but never 5 within one window


def test_patterns_decay_when_the_window_empties_and_can_start_again():
    found, clock, started = detector(threshold=3, window=60)
    observe(found, 7)
    assert severities(found) == {"ValueError": "error"}
    clock.advance(30)
    assert severities(found) == {"ValueError": "error"}
    clock.advance(61)
    assert found.active() == []
    assert found.type_levels() == {"ValueError": (0, 0)}
    started.clear()
    observe(found, 3)
    assert [p.kind for p in started] == ["type", "signature"]
    assert started[0].count == 3
    assert started[0].first_seen.timestamp() == pytest.approx(clock.now)


def test_severity_steps_down_as_old_errors_leave():
    found, clock, _ = detector(threshold=3, window=60)
    observe(found, 4)
    clock.advance(40)
    observe(found, 4)
    assert severities(found) == {"ValueError": "error"}  # 8 > 2x3
    clock.advance(30)  # the first four are older than the window now
    assert severities(found) == {"ValueError": "warning"}
    assert found.type_levels() == {"ValueError": (4, 1)}
    clock.advance(40)
    assert severities(found) == {}


def test_buckets_stay_bounded_under_100k_adds():
    window = WindowCount(60.0)
    largest = 0
    for i in range(100_000):
        window.add(1_700_000_000.0 + i * 0.05)  # 5000 seconds: many windows
        largest = max(largest, len(window.buckets))
    assert largest <= BUCKETS_PER_WINDOW + 1
    # what is left is exactly what the window holds: at most one window of adds
    assert window.total == sum(int(b[1]) for b in window.buckets)
    assert 1200 - 20 <= window.total <= 1200 + 20


def test_detector_memory_is_bounded_by_max_keys():
    found, clock, _ = detector(threshold=2, max_keys=50)
    for i in range(10_000):
        found.observe(f"Error{i % 500}", f"sig{i}", "m", "")
        clock.advance(0.01)
    assert len(found._tracked) <= 50
    assert len(found._active) <= 50
    for tracked in found._tracked.values():
        assert len(tracked.window.buckets) <= BUCKETS_PER_WINDOW + 1
        assert len(tracked.samples) <= 3


# -- through the monitor -----------------------------------------------------------------


def fail_n(monitor: Any, n: int, kind: type[Exception] = ValueError, plugin: str = "") -> None:
    for i in range(n):
        try:
            raise kind(f"reading {i} out of range")
        except kind as exc:
            monitor.record_error(exc, plugin=plugin)


def test_monitor_patterns_and_callback(make_monitor):
    monitor = make_monitor(pattern_threshold=3, pattern_window_minutes=1)
    assert monitor.patterns.window_seconds == 60
    seen: list[ErrorPattern] = []
    monitor.register_pattern_callback(seen.append)
    fail_n(monitor, 2, plugin="weather")
    assert monitor.get_patterns() == []
    fail_n(monitor, 2, plugin="weather")
    patterns = monitor.get_patterns()
    assert {(p["kind"], p["error_type"], p["count"], p["severity"]) for p in patterns} == {
        ("type", "ValueError", 4, "warning"),
        ("signature", "ValueError", 4, "warning"),
    }
    summary = monitor.get_error_summary()["active_patterns"]
    assert list(summary) == ["ValueError"]
    assert summary["ValueError"]["affected_plugins"] == ["weather"]
    monitor.flush()
    assert monitor._callbacks.flush(10)
    assert sorted(p.kind for p in seen) == ["signature", "type"]
    assert (
        monitor.registry.get_sample_value(
            "app_error_pattern_severity", {"error_type": "ValueError"}
        )
        == 1
    )
    assert (
        monitor.registry.get_sample_value(
            "app_error_pattern_occurrences", {"error_type": "ValueError"}
        )
        == 4
    )


def test_monitor_patterns_decay(make_monitor):
    monitor = make_monitor(pattern_threshold=2, pattern_window_minutes=1)
    fail_n(monitor, 7)
    assert monitor.get_patterns()[0]["severity"] == "critical"
    monitor.patterns.clock = lambda: time.time() + 120  # two windows later
    assert monitor.get_patterns() == []
    assert monitor.get_error_summary()["active_patterns"] == {}
    assert (
        monitor.registry.get_sample_value(
            "app_error_pattern_severity", {"error_type": "ValueError"}
        )
        == 0
    )


# -- plugin health -------------------------------------------------------------------------


def test_plugin_health_levels(monitor):
    assert monitor.get_plugin_health("weather") == {
        "plugin_id": "weather",
        "status": "healthy",
        "total_errors": 0,
        "error_types": {},
        "recent_error_count": 0,
        "last_error": None,
    }
    fail_n(monitor, 1, plugin="weather")
    health = monitor.get_plugin_health("weather")
    assert health["status"] == "degraded"
    assert health["recent_error_count"] == 1
    fail_n(monitor, 3, plugin="weather")
    assert monitor.get_plugin_health("weather")["status"] == "degraded"
    fail_n(monitor, 1, kind=KeyError, plugin="weather")
    health = monitor.get_plugin_health("weather")
    assert health["status"] == "unhealthy"
    assert health["total_errors"] == 5
    assert health["error_types"] == {"ValueError": 4, "KeyError": 1}
    assert health["last_error"]["error_type"] == "KeyError"
    assert health["last_error"]["plugin_id"] == "weather"
    assert monitor.get_plugin_health("clock")["status"] == "healthy"
    assert monitor.registry.get_sample_value("app_plugin_health", {"plugin": "weather"}) == 2


def test_plugin_health_thresholds_are_configurable(make_monitor):
    monitor = make_monitor(plugin_degraded_threshold=2, plugin_unhealthy_threshold=3)
    fail_n(monitor, 1, plugin="p")
    assert monitor.get_plugin_health("p")["status"] == "healthy"
    fail_n(monitor, 1, plugin="p")
    assert monitor.get_plugin_health("p")["status"] == "degraded"
    fail_n(monitor, 1, plugin="p")
    assert monitor.get_plugin_health("p")["status"] == "unhealthy"


def test_plugin_health_recovers_when_its_window_passes(make_monitor):
    monitor = make_monitor(plugin_health_window=60.0)
    fail_n(monitor, 6, plugin="weather")
    monitor.flush()
    assert monitor.store.plugin_status("weather") == ("unhealthy", 6)
    later = time.time() + 180
    assert monitor.store.plugin_status("weather", now=later) == ("healthy", 0)
    assert monitor.get_plugin_health("weather")["total_errors"] == 6  # totals stay
