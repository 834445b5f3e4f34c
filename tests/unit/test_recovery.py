"""Recovery tracking: attempted / successful, time to recover, per group and in metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.monitoring import sample

from exporter import handle_errors


def recoveries(monitor: Any, result: str, component: str = "", plugin: str = "") -> float:
    return sample(
        monitor,
        "app_error_recoveries_total",
        {"component": component, "plugin": plugin, "result": result},
    )


def fail(monitor: Any, **kwargs: Any) -> str:
    try:
        raise ConnectionError("CAN bus lost")
    except ConnectionError as exc:
        error_id = monitor.record_error(exc, **kwargs)
        assert error_id is not None
        return error_id


def report(monitor: Any, error_id: str) -> dict[str, Any]:
    assert monitor.flush()
    return monitor.get_group(error_id)["report"]


def test_no_recovery_by_default(monitor):
    error_id = fail(monitor)
    r = report(monitor, error_id)
    assert r["recovery_attempted"] is False
    assert r["recovery_successful"] is False
    stats = monitor.get_statistics()
    assert stats["recovery_success_rate"] is None  # nothing attempted: unknown, not 0
    assert stats["recovery_attempts"] == 0


def test_record_recovery_counts_times_and_marks_the_group(monitor):
    error_id = fail(monitor, component="CANInterface")
    monitor.record_recovery(False, 0.2, component="CANInterface", error_id=error_id)
    r = report(monitor, error_id)
    assert (r["recovery_attempted"], r["recovery_successful"]) == (True, False)
    monitor.record_recovery(True, 2.5, component="CANInterface", error_id=error_id)
    r = report(monitor, error_id)
    assert (r["recovery_attempted"], r["recovery_successful"]) == (True, True)

    assert recoveries(monitor, "success", "CANInterface") == 1
    assert recoveries(monitor, "failure", "CANInterface") == 1
    labels = {"component": "CANInterface", "plugin": ""}
    assert sample(monitor, "app_error_recovery_duration_seconds_count", labels) == 2
    assert sample(monitor, "app_error_recovery_duration_seconds_sum", labels) == pytest.approx(2.7)
    bucket = "app_error_recovery_duration_seconds_bucket"
    assert sample(monitor, bucket, {**labels, "le": "0.25"}) == 1
    assert sample(monitor, bucket, {**labels, "le": "1.0"}) == 1
    assert sample(monitor, bucket, {**labels, "le": "2.5"}) == 2

    stats = monitor.get_statistics()
    assert stats["recovery_attempts"] == 2
    assert stats["recovery_success_rate"] == 0.5
    analysis = monitor.get_error_analysis()["recovery"]
    assert analysis == {"success_rate": 0.5, "attempts": 2, "success": 1, "failure": 1}


def test_recovery_state_survives_later_occurrences(monitor):
    error_id = fail(monitor)
    monitor.record_recovery(True, 0.1, error_id=error_id)
    assert fail(monitor) == error_id
    r = report(monitor, error_id)
    assert r["occurrence_count"] == 2
    assert r["recovery_attempted"] is True
    assert r["recovery_successful"] is True


def test_recovery_without_duration_or_group(monitor):
    monitor.record_recovery(True)
    monitor.record_recovery(False, error_id="no-such-group")
    assert monitor.flush()
    assert recoveries(monitor, "success") == 1
    assert recoveries(monitor, "failure") == 1
    assert (
        sample(
            monitor, "app_error_recovery_duration_seconds_count", {"component": "", "plugin": ""}
        )
        == 0
    )


def test_recovery_context_manager(monitor):
    error_id = fail(monitor, plugin="weather")
    with monitor.recovery(plugin="weather", error_id=error_id):
        pass  # reconnected
    with pytest.raises(OSError), monitor.recovery(plugin="weather", error_id=error_id):
        raise OSError("still down")
    assert recoveries(monitor, "success", plugin="weather") == 1
    assert recoveries(monitor, "failure", plugin="weather") == 1
    r = report(monitor, error_id)
    assert (r["recovery_attempted"], r["recovery_successful"]) == (True, False)
    assert (
        sample(
            monitor,
            "app_error_recovery_duration_seconds_count",
            {"component": "", "plugin": "weather"},
        )
        == 2
    )


def test_handle_errors_recovery_success_returns_its_result(monitor):
    seen: list[BaseException] = []

    def reconnect(exc: BaseException) -> str:
        seen.append(exc)
        return "cached frame"

    @handle_errors(component="CANInterface", recovery=reconnect, reraise=False, monitor=monitor)
    def read_frame() -> str:
        raise ConnectionError("bus off")

    assert read_frame() == "cached frame"
    assert [type(e) for e in seen] == [ConnectionError]
    assert recoveries(monitor, "success", "CANInterface") == 1
    monitor.flush()
    [group] = monitor.list_groups()
    r = monitor.get_group(group["error_id"])["report"]
    assert (r["recovery_attempted"], r["recovery_successful"]) == (True, True)


def test_handle_errors_recovery_failure_returns_default_or_reraises(monitor):
    def give_up(exc: BaseException) -> str:
        raise RuntimeError("recovery failed too")

    @handle_errors(component="ECU", recovery=give_up, reraise=False, default="n/a", monitor=monitor)
    def quiet() -> str:
        raise TimeoutError("ECU silent")

    @handle_errors(component="ECU", recovery=give_up, monitor=monitor)
    def loud() -> str:
        raise KeyError("map")

    assert quiet() == "n/a"
    with pytest.raises(KeyError):
        loud()
    assert recoveries(monitor, "failure", "ECU") == 2
    stats = monitor.get_statistics()
    assert stats["total_errors"] == 2  # the recovery's own failure is not an app error
    assert stats["recovery_success_rate"] == 0.0


def test_async_handle_errors_recovery(monitor):
    @handle_errors(
        plugin="weather", recovery=lambda exc: "stale forecast", reraise=False, monitor=monitor
    )
    async def fetch() -> str:
        await asyncio.sleep(0)
        raise ConnectionError("api down")

    assert asyncio.run(fetch()) == "stale forecast"
    assert recoveries(monitor, "success", plugin="weather") == 1
    assert monitor.get_statistics()["errors_by_plugin"] == {"weather": 1}
