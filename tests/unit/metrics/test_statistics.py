"""get_statistics / get_error_analysis / get_error_summary / get_plugin_health: exact numbers."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

SCENARIO: list[tuple[type[Exception], str, str]] = [
    (ValueError, "ECUControl", ""),
    (ValueError, "ECUControl", ""),
    (ConnectionError, "ECUControl", "can"),
    (ValueError, "ECUControl", ""),
    (MemoryError, "CANInterface", "can"),
    (DeprecationWarning, "", ""),
    (DeprecationWarning, "", ""),
]


def fail(monitor: Any, kind: type[Exception], component: str = "", plugin: str = "") -> str:
    try:
        raise kind(f"{kind.__name__} in {component or 'app'}")
    except kind as exc:
        error_id = monitor.record_error(exc, component=component, plugin=plugin, operation="update")
        assert error_id is not None
        return error_id


@pytest.fixture
def loaded(monitor):
    monitor.store.started = time.time() - 2 * 3600  # the monitor has run for two hours
    ids = [fail(monitor, *row) for row in SCENARIO]
    for success in (True, True, False, True):
        monitor.record_recovery(success, 0.1, component="ECUControl", error_id=ids[0])
    with monitor.session(user_id="driver"):
        pass
    assert monitor.flush()
    return monitor, ids


def test_get_statistics_numbers(loaded):
    monitor, _ = loaded
    stats = monitor.get_statistics()
    assert stats["total_errors"] == 7
    assert stats["errors_by_severity"] == {"critical": 1, "high": 1, "medium": 3, "low": 2}
    assert list(stats["errors_by_severity"]) == ["critical", "high", "medium", "low"]
    assert stats["errors_by_component"] == {"ECUControl": 4, "CANInterface": 1, "": 2}
    assert stats["errors_by_type"] == {
        "ValueError": 3,
        "ConnectionError": 1,
        "MemoryError": 1,
        "DeprecationWarning": 2,
    }
    assert stats["errors_by_plugin"] == {"can": 2}  # errors without a plugin are not listed
    assert stats["recovery_success_rate"] == 0.75
    assert stats["recovery_attempts"] == 4
    assert stats["average_errors_per_hour"] == 3.5
    assert stats["unique_errors"] == 4
    assert stats["dropped_reports"] == 0
    assert stats["queue_depth"] == 0
    assert stats["sessions"]["ended"]["exited"] == 1


def test_empty_statistics(monitor):
    stats = monitor.get_statistics()
    assert stats["total_errors"] == 0
    assert stats["errors_by_severity"] == {"critical": 0, "high": 0, "medium": 0, "low": 0}
    assert stats["errors_by_component"] == {}
    assert stats["errors_by_type"] == {}
    assert stats["recovery_success_rate"] is None  # nothing attempted: unknown, not 0
    assert stats["average_errors_per_hour"] == 0.0
    analysis = monitor.get_error_analysis()
    assert analysis["top_errors"] == []
    assert analysis["total_unique_errors"] == 0
    summary = monitor.get_error_summary()
    assert summary["total_errors"] == 0
    assert summary["recent_errors"] == []


def test_get_error_analysis_numbers(loaded):
    monitor, ids = loaded
    analysis = monitor.get_error_analysis()
    assert analysis["statistics"]["total_errors"] == 7
    assert analysis["total_unique_errors"] == 4
    assert analysis["session_count"] == 2  # the process session and the driver's
    top = analysis["top_errors"]
    assert [(t["report"]["error_type"], t["occurrence_count"]) for t in top] == [
        ("ValueError", 3),
        ("DeprecationWarning", 2),
        ("ConnectionError", 1),
        ("MemoryError", 1),
    ]
    assert top[0]["error_id"] == ids[0] == top[0]["report"]["error_id"]
    assert top[0]["report"]["occurrence_count"] == 3
    assert [t["occurrence_count"] for t in monitor.get_error_analysis(top=2)["top_errors"]] == [
        3,
        2,
    ]
    assert analysis["recovery"] == {"success_rate": 0.75, "attempts": 4, "success": 3, "failure": 1}


def test_get_error_summary_numbers(loaded):
    monitor, ids = loaded
    summary = monitor.get_error_summary()
    assert summary["total_errors"] == 7
    assert summary["error_rate_per_hour"] == 3.5
    assert summary["error_counts_by_type"] == {
        "ValueError": 3,
        "ConnectionError": 1,
        "MemoryError": 1,
        "DeprecationWarning": 2,
    }
    assert summary["plugin_error_counts"] == {"can": {"ConnectionError": 1, "MemoryError": 1}}
    assert summary["active_patterns"] == {}
    assert datetime.fromisoformat(summary["session_start"]).timestamp() == pytest.approx(
        monitor.store.started, abs=1e-3
    )
    recent = summary["recent_errors"]
    assert [r["error_type"] for r in recent] == [row[0].__name__ for row in SCENARIO]
    assert [r["error_id"] for r in recent] == ids
    assert recent[2]["plugin_id"] == "can"
    assert recent[0]["plugin_id"] is None  # seed 003: no plugin is null
    assert recent[0]["operation"] == "update"
    assert recent[0]["message"] == "ValueError in ECUControl"


def test_summary_total_is_exact_beyond_the_record_buffer(make_monitor):
    monitor = make_monitor(max_records=5)
    for _ in range(30):
        fail(monitor, KeyError, plugin="weather")
    summary = monitor.get_error_summary()
    assert summary["total_errors"] == 30
    assert len(summary["recent_errors"]) == 5
    assert summary["plugin_error_counts"] == {"weather": {"KeyError": 30}}
    assert monitor.get_plugin_health("weather")["total_errors"] == 30
    assert monitor.get_statistics()["total_errors"] == 30


def test_recent_errors_are_the_last_twenty(monitor):
    for i in range(25):
        fail(monitor, ValueError, component=f"c{i}")
    recent = monitor.get_error_summary()["recent_errors"]
    assert len(recent) == 20
    assert [r["component"] for r in recent] == [f"c{i}" for i in range(5, 25)]


def test_get_plugin_health_numbers(loaded):
    monitor, ids = loaded
    health = monitor.get_plugin_health("can")
    assert health["plugin_id"] == "can"
    assert health["status"] == "degraded"
    assert health["total_errors"] == 2
    assert health["recent_error_count"] == 2
    assert health["error_types"] == {"ConnectionError": 1, "MemoryError": 1}
    assert health["last_error"]["error_type"] == "MemoryError"
    assert health["last_error"]["error_id"] == ids[4]


def test_reads_see_everything_recorded_before_them(monitor):
    """No flush needed: a read waits (bounded) for the queue to drain."""
    for _ in range(200):
        fail(monitor, ValueError)
    assert monitor.get_error_analysis()["top_errors"][0]["occurrence_count"] == 200
    assert len(monitor.get_error_summary()["recent_errors"]) == 20
