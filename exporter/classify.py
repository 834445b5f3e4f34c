"""Severity and priority rules.

Severity of one error, first match wins:
1. the ``severity`` argument of ``record_error`` / ``handle_errors``;
2. ``severity_by_type``: the exception's class or its nearest base class by name
   (``"ConnectionError"`` or ``"requests.exceptions.ConnectionError"``);
3. ``severity_by_component``;
4. the logging level when the error came through logging (CRITICAL -> critical);
5. built-in defaults by class (``DEFAULT_SEVERITY_BY_TYPE``, base classes included);
6. ``default_severity`` (medium).

Priority of a group: its severity, raised one step when it recurs often
(>= 10 per hour) and one step when it reaches several users (>= 3), capped at critical.
"""

from __future__ import annotations

import logging

from exporter.model import SEVERITY_RANK, ErrorPriority

DEFAULT_SEVERITY_BY_TYPE: dict[str, str] = {
    "MemoryError": "critical",
    "SystemError": "critical",
    "RecursionError": "critical",
    "ConnectionError": "high",
    "TimeoutError": "high",
    "OSError": "high",
    "RuntimeError": "high",
    "ImportError": "high",
    "Warning": "low",
    "KeyError": "medium",
    "ValueError": "medium",
    "TypeError": "medium",
    "AttributeError": "medium",
    "LookupError": "medium",
}
FREQUENT_PER_HOUR = 10.0
MANY_USERS = 3
_PRIORITIES = [ErrorPriority.LOW, ErrorPriority.MEDIUM, ErrorPriority.HIGH, ErrorPriority.CRITICAL]


class SeverityRules:
    """Decides an error's severity; cached per (type, component) on the hot path."""

    def __init__(
        self,
        by_type: dict[str, str] | None = None,
        by_component: dict[str, str] | None = None,
        default: str = "medium",
    ) -> None:
        self.by_type = dict(by_type or {})
        self.by_component = dict(by_component or {})
        self.default = default
        self._cache: dict[tuple[type, str], str] = {}

    def cached(self, exc_type: type[BaseException], component: str) -> str | None:
        """The hot path: a previously decided severity, or None."""
        return self._cache.get((exc_type, component))

    def severity(
        self,
        exc_type: type[BaseException],
        component: str = "",
        explicit: str | None = None,
        log_level: int | None = None,
    ) -> str:
        if explicit is not None:
            return explicit
        if log_level is not None and log_level >= logging.CRITICAL:
            configured = self._configured(exc_type, component)
            return configured or "critical"
        key = (exc_type, component)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._configured(exc_type, component) or self._builtin(exc_type)
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def _configured(self, exc_type: type[BaseException], component: str) -> str | None:
        if self.by_type:
            found = _match_mro(exc_type, self.by_type)
            if found:
                return found
        return self.by_component.get(component) if component else None

    def _builtin(self, exc_type: type[BaseException]) -> str:
        return _match_mro(exc_type, DEFAULT_SEVERITY_BY_TYPE) or self.default


def _match_mro(exc_type: type, table: dict[str, str]) -> str | None:
    for klass in getattr(exc_type, "__mro__", (exc_type,)):
        for name in (f"{klass.__module__}.{klass.__qualname__}", klass.__qualname__):
            if name in table:
                return table[name]
    return None


def per_hour(count: float, seconds: float) -> float:
    """Errors per hour over ``seconds``, never extrapolated from less than an hour.

    The one rule for every rate per hour (a group's ``frequency_per_hour``, the statistics'
    ``average_errors_per_hour``, the summary's ``error_rate_per_hour``): 8 errors in 19
    seconds are 8 per hour, not 1,516 (a burst is not a rate), and the priority's "10 or
    more per hour" means 10 errors within an hour.
    """
    return count / max(seconds / 3600.0, 1.0)


def priority(severity: str, frequency_per_hour: float, affected_users: int) -> ErrorPriority:
    """A group's priority from its severity, frequency and reach."""
    rank = SEVERITY_RANK.get(severity, 1)
    if frequency_per_hour >= FREQUENT_PER_HOUR:
        rank += 1
    if affected_users >= MANY_USERS:
        rank += 1
    return _PRIORITIES[min(rank, 3)]
