"""Query-string parsing with errors that name the parameter and what is allowed.

Validation is strict on purpose (ASCII digits only, exact enum values, each parameter at most
once) so that what the OpenAPI document promises and what the server accepts are the same
set; the fuzz test holds both to it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

from exporter.config import SEVERITIES
from exporter.store.memory import ExportFilter

MAX_LIMIT = 10000
MAX_FIELDS = 100
MAX_CURSOR = 2**53 - 1
SORTS = ("count", "last_seen")
EXPORT_SORTS = ("time",)  # records in the order they were recorded: the order the cursor pages
_INT = re.compile(r"-?[0-9]{1,18}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?"
)
TIME_HELP = "epoch seconds (e.g. 1700000000.5) or an ISO-8601 date-time"


class ParamError(ValueError):
    """A query value is not acceptable; carries the parameter name and the allowed values."""

    def __init__(self, param: str, message: str, allowed: Any = None) -> None:
        super().__init__(message)
        self.param = param
        self.allowed = allowed

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parameter": self.param}
        if self.allowed is not None:
            out["allowed"] = self.allowed
        return out


class Query:
    """The single values of a query string; repeated or undecodable input is an error."""

    def __init__(self, raw: str) -> None:
        try:
            text = raw.encode("latin-1", "replace").decode("utf-8", "surrogateescape")
            parsed = parse_qs(
                text, keep_blank_values=True, errors="surrogateescape", max_num_fields=MAX_FIELDS
            )
        except ValueError:
            raise ParamError(
                "query", f"the query string has more than {MAX_FIELDS} fields"
            ) from None
        self.values: dict[str, list[str]] = parsed

    def get(self, name: str) -> str | None:
        values = self.values.get(name)
        if values is None:
            return None
        if len(values) > 1:
            raise ParamError(
                name, f"parameter {name!r} was given {len(values)} times; give it at most once"
            )
        value = values[0]
        try:
            value.encode("utf-8")
        except UnicodeError:
            raise ParamError(
                name, f"parameter {name!r} is not valid UTF-8 (bad percent-encoding)"
            ) from None
        return value

    def choice(self, name: str, allowed: Sequence[str], default: str | None = None) -> str | None:
        value = self.get(name)
        if value is None:
            return default
        if value not in allowed:
            raise ParamError(
                name, f"{name}={value!r} is not one of {', '.join(allowed)}", list(allowed)
            )
        return value

    def integer(self, name: str, low: int, high: int | None = None) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        upper = "" if high is None else f" and at most {high}"
        if not _INT.fullmatch(value):
            raise ParamError(
                name,
                f"{name}={value!r} is not an integer (expected at least {low}{upper})",
                _range(low, high),
            )
        number = int(value)
        if number < low or (high is not None and number > high):
            raise ParamError(
                name,
                f"{name}={number} is out of range (expected at least {low}{upper})",
                _range(low, high),
            )
        return number

    def timestamp(self, name: str) -> float | None:
        value = self.get(name)
        if value is None:
            return None
        parsed = parse_time(value)
        if parsed is None:
            raise ParamError(name, f"{name}={value!r} is not {TIME_HELP}", TIME_HELP)
        return parsed


def _range(low: int, high: int | None) -> dict[str, int]:
    return {"minimum": low} if high is None else {"minimum": low, "maximum": high}


def parse_time(value: str) -> float | None:
    """Epoch seconds or ISO-8601 (naive means local time, like the export's timestamps)."""
    text = value.strip()
    if _NUMBER.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else None
    moment = _parse_rfc3339(text)
    if moment is None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        if moment.tzinfo is None:  # local time out of the platform's range: read it as UTC
            try:
                return moment.replace(tzinfo=timezone.utc).timestamp()
            except (OverflowError, ValueError):
                return None
        return None


def _parse_rfc3339(text: str) -> datetime | None:
    """RFC 3339 date-times, including the leap second 60 (read as 59) and lower-case t/z."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        tz = _zone(zone)
        return datetime(year, month, day, hour, minute, min(second, 59), micro, tz)
    except ValueError:
        return None


def _zone(text: str | None) -> timezone | None:
    if text is None:
        return None
    if text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def version(query: Query, name: str) -> str | None:
    """An app version to filter by (``new_in``): absent is None, empty is an error."""
    value = query.get(name)
    if value is not None and not value.strip():
        raise ParamError(name, f"{name} must not be empty: give an app version, e.g. {name}=1.4.2")
    return value


def export_filter(query: Query) -> ExportFilter:
    """The /api/v1/export filters; raises ParamError naming the first bad one.

    ``sort`` is validated like /api/v1/errors' even though the export has one order (oldest
    first, what ``cursor`` pages by): a ``sort=count`` must not be silently ignored.
    """
    query.choice("sort", EXPORT_SORTS)
    return ExportFilter(
        since=query.timestamp("since"),
        until=query.timestamp("until"),
        severity=query.choice("severity", SEVERITIES),
        component=query.get("component"),
        plugin=query.get("plugin"),
        error_type=query.get("error_type"),
        limit=query.integer("limit", 1, MAX_LIMIT),
        cursor=query.integer("cursor", 0, MAX_CURSOR) or 0,
    )
