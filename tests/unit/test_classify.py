"""Severity rules (in the order documented in exporter/classify.py) and priority."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from exporter import ErrorPriority, ErrorSeverity, handle_errors
from exporter.classify import (
    DEFAULT_SEVERITY_BY_TYPE,
    FREQUENT_PER_HOUR,
    MANY_USERS,
    SeverityRules,
    priority,
)


class TuneError(Exception):
    pass


class BoostError(TuneError):
    pass


class FlakyLink(ConnectionResetError):
    pass


def severity_of(monitor: Any, exc: BaseException, **kwargs: Any) -> str:
    error_id = monitor.record_error(exc, **kwargs)
    assert monitor.flush()
    return monitor.get_group(error_id)["report"]["severity"]


# -- 5. built-in defaults by class, base classes included; 6. default_severity ------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MemoryError(), "critical"),
        (RecursionError(), "critical"),  # before its base RuntimeError
        (SystemError(), "critical"),
        (ConnectionRefusedError(), "high"),  # via ConnectionError
        (FlakyLink(), "high"),
        (FileNotFoundError(), "high"),  # via OSError
        (TimeoutError(), "high"),
        (NotImplementedError(), "high"),  # via RuntimeError
        (ModuleNotFoundError(), "high"),  # via ImportError
        (KeyError(), "medium"),
        (IndexError(), "medium"),  # via LookupError
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), "medium"),  # via ValueError
        (DeprecationWarning(), "low"),  # via Warning
        (ZeroDivisionError(), "medium"),  # not in the table: default_severity
        (TuneError(), "medium"),
    ],
)
def test_builtin_defaults_follow_base_classes(exc, expected):
    assert SeverityRules().severity(type(exc)) == expected


def test_builtin_table_uses_only_known_severities():
    assert set(DEFAULT_SEVERITY_BY_TYPE.values()) <= {"low", "medium", "high", "critical"}


def test_default_severity_is_configurable(make_monitor):
    monitor = make_monitor(default_severity="low")
    assert severity_of(monitor, TuneError("x")) == "low"
    assert severity_of(monitor, ConnectionError("x")) == "high"  # built-ins still apply


# -- 2. severity_by_type: nearest class by name, module-qualified or not ------------------------


def test_by_type_uses_the_nearest_configured_base():
    rules = SeverityRules(by_type={"OSError": "low", "ConnectionError": "critical"})
    assert rules.severity(FlakyLink) == "critical"
    assert rules.severity(FileNotFoundError) == "low"
    assert rules.severity(KeyError) == "medium"  # untouched types keep the defaults


def test_by_type_accepts_qualified_names():
    rules = SeverityRules(by_type={f"{__name__}.TuneError": "high"})
    assert rules.severity(BoostError) == "high"
    assert rules.severity(ValueError) == "medium"


def test_by_type_overrides_builtin_defaults():
    assert SeverityRules(by_type={"MemoryError": "low"}).severity(MemoryError) == "low"


# -- 3. severity_by_component ----------------------------------------------------------------


def test_by_component_applies_after_by_type():
    rules = SeverityRules(by_type={"KeyError": "low"}, by_component={"ECUControl": "critical"})
    assert rules.severity(ValueError, "ECUControl") == "critical"
    assert rules.severity(KeyError, "ECUControl") == "low"  # by_type comes first
    assert rules.severity(ValueError, "Dashboard") == "medium"
    assert rules.severity(ValueError, "") == "medium"


# -- 4. logging level -----------------------------------------------------------------------


def test_critical_log_level_after_configured_rules():
    rules = SeverityRules(by_component={"UI": "low"})
    assert rules.severity(KeyError, "", None, logging.CRITICAL) == "critical"
    assert rules.severity(KeyError, "UI", None, logging.CRITICAL) == "low"
    assert rules.severity(KeyError, "", None, logging.ERROR) == "medium"  # ERROR: built-ins
    assert rules.severity(MemoryError, "", None, logging.ERROR) == "critical"


# -- 1. the explicit argument wins ---------------------------------------------------------------


def test_explicit_argument_wins_over_every_rule():
    rules = SeverityRules(by_type={"KeyError": "low"}, by_component={"UI": "high"})
    assert rules.severity(KeyError, "UI", "critical", logging.CRITICAL) == "critical"
    assert rules.severity(MemoryError, "", "low") == "low"


def test_explicit_severity_through_the_api(monitor):
    assert severity_of(monitor, MemoryError("x"), severity="low") == "low"
    assert severity_of(monitor, KeyError("x"), severity=ErrorSeverity.CRITICAL) == "critical"
    assert severity_of(monitor, KeyError("y"), severity="HIGH") == "high"
    # an unknown value is ignored: the rules decide
    assert severity_of(monitor, KeyError("z"), severity="urgent") == "medium"

    @handle_errors(severity="critical", monitor=monitor, reraise=False)
    def update():
        raise ValueError("bad")

    update()
    by_severity = monitor.get_statistics()["errors_by_severity"]
    assert by_severity == {"critical": 2, "high": 1, "medium": 1, "low": 1}


def test_explicit_severity_does_not_stick_to_later_errors(monitor):
    """The hot-path cache is per (type, component): an explicit value must not leak into it."""
    for explicit in ("critical", None, "low", None):
        monitor.record_error(KeyError("k"), component="ECU", severity=explicit)
    assert monitor.get_statistics()["errors_by_severity"] == {
        "critical": 1,
        "high": 0,
        "medium": 2,
        "low": 1,
    }


def test_configured_rules_through_the_monitor(make_monitor):
    monitor = make_monitor(
        severity_by_type={"TuneError": "high"}, severity_by_component={"Dashboard": "low"}
    )
    assert severity_of(monitor, BoostError("b")) == "high"
    assert severity_of(monitor, ValueError("v"), component="Dashboard") == "low"
    assert severity_of(monitor, ValueError("v2"), component="ECUControl") == "medium"
    series = {
        (labels["error_type"], labels["severity"]) for labels, _ in monitor.metrics.error_totals()
    }
    assert series == {("BoostError", "high"), ("ValueError", "low"), ("ValueError", "medium")}


# -- priority ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "frequency", "users", "expected"),
    [
        ("low", 0.0, 0, ErrorPriority.LOW),
        ("low", FREQUENT_PER_HOUR, 0, ErrorPriority.MEDIUM),
        ("low", FREQUENT_PER_HOUR - 0.1, MANY_USERS - 1, ErrorPriority.LOW),
        ("low", FREQUENT_PER_HOUR, MANY_USERS, ErrorPriority.HIGH),
        ("medium", 0.0, MANY_USERS, ErrorPriority.HIGH),
        ("medium", 100.0, 100, ErrorPriority.CRITICAL),
        ("high", 0.0, 0, ErrorPriority.HIGH),
        ("high", FREQUENT_PER_HOUR, 0, ErrorPriority.CRITICAL),
        ("critical", 0.0, 0, ErrorPriority.CRITICAL),
        ("critical", 1000.0, 1000, ErrorPriority.CRITICAL),  # capped
    ],
)
def test_priority_from_severity_frequency_and_users(severity, frequency, users, expected):
    assert priority(severity, frequency, users) is expected


def test_group_priority_rises_with_frequency(monitor):
    def fail() -> str:
        try:
            raise ValueError("stale sensor reading")
        except ValueError as exc:
            error_id = monitor.record_error(exc)
            assert error_id is not None
            return error_id

    error_id = fail()
    monitor.flush()
    assert monitor.get_group(error_id)["report"]["priority"] == "medium"
    for _ in range(int(FREQUENT_PER_HOUR) - 1):
        fail()
    monitor.flush()
    group = monitor.get_group(error_id)["group"]
    assert group["occurrence_count"] == FREQUENT_PER_HOUR
    assert group["priority"] == "high"
    assert group["severity"] == "medium"


def test_group_priority_rises_with_affected_users(monitor):
    def fail(user: str) -> str:
        try:
            raise LookupError("map not found")
        except LookupError as exc:
            error_id = monitor.record_error(exc, user_id=user)
            assert error_id is not None
            return error_id

    error_id = ""
    for user in ("u1", "u2", "u1"):
        error_id = fail(user)
    monitor.flush()
    assert monitor.get_group(error_id)["group"]["priority"] == "medium"
    fail("u3")
    monitor.flush()
    group = monitor.get_group(error_id)["group"]
    assert group["affected_users"] == MANY_USERS
    assert group["priority"] == "high"
