"""A monitor with a series in every metric family, hostile label values included."""

from __future__ import annotations

from typing import Any

from exporter import ErrorMonitor

HOSTILE = [
    'say "hi"',
    "back\\slash",
    "two\nlines",
    "tab\tand unicode \u00e9\u2603",
    "trailing\\",
    '\\"both\\"',
]


def raise_and_record(monitor: ErrorMonitor, exc: BaseException, **kwargs: Any) -> str | None:
    try:
        raise exc
    except BaseException as caught:
        return monitor.record_error(caught, **kwargs)


class Unusual(Exception):
    """Another error type."""


def populate_every_family(monitor: ErrorMonitor) -> str:
    """Give every family in the contract at least one series; returns the last error_id."""
    last = None
    for i, text in enumerate(HOSTILE):
        last = raise_and_record(
            monitor,
            ValueError(text),
            component=text,
            plugin=f"plug{i}",
            severity=("low", "medium", "high", "critical")[i % 4],
        )
    for exc in (KeyError("k"), Unusual("u"), OSError("o"), TypeError("t")):
        for _ in range(3):
            last = raise_and_record(monitor, exc, component="db", plugin="plug0")
    with monitor.capture(component="db", plugin="plug0", operation="query", reraise=False):
        pass
    with monitor.capture(component="db", plugin="plug0", operation="query", reraise=False):
        raise RuntimeError("failed query")
    monitor.count_task_retry("celery", "tasks.fetch", "ConnectionError")
    monitor.record_recovery(True, 0.3, component="db", plugin="plug0")
    monitor.record_recovery(False, 2.0, component="db", plugin="plug0")
    for status in ("exited", "errored", "crashed", "abnormal"):
        monitor.end_session(monitor.start_session(user_id="u"), status=status)
    monitor.start_session(user_id="active")
    last = raise_and_record(monitor, LookupError("the latest"), component="api", plugin="plug1")
    assert monitor.flush(5.0)
    assert last is not None
    return last


def rich_monitor(make_monitor: Any, **options: Any) -> ErrorMonitor:
    return make_monitor(
        enable_resource_monitoring=True,
        pattern_threshold=2,
        label_value_limits={"plugin": 5},
        **options,
    )
