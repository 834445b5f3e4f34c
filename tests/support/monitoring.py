"""Reading a monitor in tests: its samples, counts, drops, and waiting for its threads."""

from __future__ import annotations

from typing import Any


def sample(monitor: Any, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample of the monitor's registry (0 when the series does not exist)."""
    value = monitor.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)


def dropped(monitor: Any, reason: str) -> int:
    name = f"{monitor.config.namespace}_error_reports_dropped_total"
    return int(sample(monitor, name, {"reason": reason}))


def internal_errors(monitor: Any) -> int:
    return int(sample(monitor, f"{monitor.config.namespace}_monitor_internal_errors_total"))


def errors_total(monitor: Any) -> int:
    """app_errors_total summed over every label set: the exact count."""
    return int(sum(value for _, value in monitor.metrics.error_totals()))


def settle(monitor: Any, timeout: float = 30) -> None:
    """Every report stored and every callback run (hang guards, not timings)."""
    assert monitor.flush(timeout)
    assert monitor._callbacks.flush(timeout)
