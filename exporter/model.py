"""The records the monitor keeps, and their JSON shapes.

Field names and JSON keys follow the two in-house systems this replaces (the error
monitoring service's ErrorReport / Breadcrumb / ResourceSnapshot and the aggregator's
ErrorRecord / ErrorPattern), so existing consumers of their exports keep working. Every
JSON shape is defined here once and used by the file export, the API and the CLI.

Two conventions hold in every shape:

- **Times** are ISO-8601 strings in UTC with an explicit offset
  (``2024-05-01T12:00:00.250000+00:00``, :func:`iso_time`); where the epoch number is
  useful it sits beside, named ``<key>_epoch`` (``first_occurrence`` and
  ``first_occurrence_epoch``). The Python objects keep their types (floats on ErrorReport,
  naive local datetimes on ErrorRecord, as the two earlier systems had them).
- **No plugin** is ``null`` (the aggregator's ``plugin_id``); only metric labels, which cannot
  be null, use the empty string.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any


class ErrorSeverity(str, Enum):
    """How bad one error is (metric label ``severity``)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ErrorPriority(str, Enum):
    """How urgently a group needs attention: severity raised by frequency and reach."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
PATTERN_SEVERITY_VALUE = {"none": 0, "warning": 1, "error": 2, "critical": 3}
MAX_SUMMARY_FRAMES = 10
_FRAME_LINE = re.compile(
    r'^[ |+\-]*File "(?P<file>.*)", line (?P<line>\d+), in (?P<func>.+)$', re.MULTILINE
)


_LOCAL_OFFSETS: dict[tuple[int, int, int, int, int], timedelta] = {}


def iso_time(moment: float | datetime | None) -> str | None:
    """The one time format of every JSON shape: ISO-8601 in UTC, with its offset.

    Epoch seconds or a datetime (naive means local time, as ``datetime.now()`` gives). The
    local offset of a naive time is cached per hour (and fold): the export formats thousands.
    """
    if moment is None:
        return None
    try:
        if isinstance(moment, datetime):
            if moment.tzinfo is not None:
                return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
            key = (moment.year, moment.month, moment.day, moment.hour, moment.fold)
            offset = _LOCAL_OFFSETS.get(key)
            if offset is None:
                offset = moment.astimezone().utcoffset() or timedelta(0)
                if len(_LOCAL_OFFSETS) > 1024:
                    _LOCAL_OFFSETS.clear()
                _LOCAL_OFFSETS[key] = offset
            return (moment - offset).isoformat(timespec="microseconds") + "+00:00"
        return datetime.fromtimestamp(float(moment), timezone.utc).isoformat(
            timespec="microseconds"
        )
    except (OverflowError, OSError, ValueError):  # outside the platform's range
        return moment.isoformat() if isinstance(moment, datetime) else None


def local_datetime(text: str) -> datetime:
    """A naive local datetime from an ISO-8601 string (what ErrorRecord.timestamp holds)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment


def iso_text(value: Any) -> Any:
    """An ISO-8601 string without an offset (local time) rewritten by :func:`iso_time`."""
    if not isinstance(value, str):
        return value
    try:
        return iso_time(datetime.fromisoformat(value))
    except ValueError:
        return value


def trace_frames(stack_trace: str | None, limit: int = MAX_SUMMARY_FRAMES) -> list[dict[str, Any]]:
    """The frames of a formatted trace's last traceback, innermost first.

    What lets two groups raised at the same line be told apart: their callers differ.
    """
    if not stack_trace:
        return []
    start = stack_trace.rfind("Traceback (most recent call last):")
    found = list(_FRAME_LINE.finditer(stack_trace, max(start, 0)))
    return [
        {"file_path": m["file"], "line_number": int(m["line"]), "function_name": m["func"]}
        for m in reversed(found[-limit:])
    ]


@dataclass
class Breadcrumb:
    """One user or system action that preceded an error."""

    timestamp: float
    action: str
    component: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    level: str = "info"
    category: str = "default"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["timestamp"] = iso_time(self.timestamp)
        data["timestamp_epoch"] = self.timestamp
        return data


@dataclass
class ResourceSnapshot:
    """System resources around the time of an error (psutil)."""

    timestamp: float
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    memory_used_mb: float = 0.0
    memory_available_mb: float = 0.0
    disk_io_read_mb: float = 0.0
    disk_io_write_mb: float = 0.0
    network_sent_mb: float = 0.0
    network_recv_mb: float = 0.0
    process_count: int = 0
    thread_count: int = 0
    process_cpu_percent: float = 0.0
    process_open_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["timestamp"] = iso_time(self.timestamp)
        data["timestamp_epoch"] = self.timestamp
        return data


@dataclass
class ErrorReport:
    """The detailed report of an error group, as ``ErrorMonitoringService`` defined it."""

    error_id: str
    error_type: str
    error_message: str
    severity: ErrorSeverity
    priority: ErrorPriority
    timestamp: float
    first_occurrence: float
    occurrence_count: int
    component: str
    file_path: str | None
    line_number: int | None
    function_name: str | None
    stack_trace: str
    traceback_lines: list[str]
    environment: dict[str, Any]
    breadcrumbs: list[Breadcrumb] = field(default_factory=list)
    resource_snapshot: ResourceSnapshot | None = None
    session_id: str | None = None
    user_id: str | None = None
    affected_users: int = 0
    frequency_per_hour: float = 0.0
    recovery_attempted: bool = False
    recovery_successful: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    # additions of this monitor
    plugin: str = ""
    operation: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    error_class: str = ""
    exception_chain: list[dict[str, Any]] = field(default_factory=list)
    handled: bool = True
    mechanism: str = "record_error"
    thread_name: str = ""
    last_occurrence: float = 0.0
    # the trace the occurrence happened in (capture/trace_context.py): 32 and 16 hex digits,
    # or None;
    # trace_url from the trace_url_template option
    trace_id: str | None = None
    span_id: str | None = None
    trace_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in REPORT_FIELDS}
        for key, value in self.__dict__.items():  # anything an app set on it besides
            if key not in data and not key.startswith("_"):
                data[key] = value
        data["severity"] = self.severity.value
        data["priority"] = self.priority.value
        data["breadcrumbs"] = [b.to_dict() for b in self.breadcrumbs]
        data["resource_snapshot"] = (
            self.resource_snapshot.to_dict() if self.resource_snapshot else None
        )
        data["plugin"] = self.plugin or None
        for key in ("timestamp", "first_occurrence", "last_occurrence"):
            data[key] = iso_time(getattr(self, key))
            data[key + "_epoch"] = getattr(self, key)
        if isinstance(self.environment.get("started_at"), str):
            data["environment"] = {
                **self.environment,
                "started_at": iso_text(self.environment["started_at"]),
            }
        return data


REPORT_FIELDS = tuple(f.name for f in fields(ErrorReport))  # in order: the JSON keys' order


@dataclass
class ErrorRecord:
    """One occurrence, as ``ErrorAggregator`` defined it (plus the group it belongs to)."""

    error_type: str
    message: str
    timestamp: datetime
    context: dict[str, Any] = field(default_factory=dict)
    plugin_id: str | None = None
    operation: str | None = None
    stack_trace: str | None = None
    error_id: str = ""
    severity: str = "medium"
    component: str = ""
    user_id: str | None = None
    session_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    trace_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "message": self.message,
            "timestamp": iso_time(self.timestamp),
            "context": self.context,
            "plugin_id": self.plugin_id or None,
            "operation": self.operation,
            "stack_trace": self.stack_trace,
            "error_id": self.error_id,
            "severity": self.severity,
            "component": self.component,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "trace_url": self.trace_url,
        }


@dataclass
class ErrorPattern:
    """A recurring error in the sliding window, as ``ErrorAggregator`` defined it."""

    error_type: str
    count: int
    first_seen: datetime
    last_seen: datetime
    affected_plugins: list[str] = field(default_factory=list)
    sample_messages: list[str] = field(default_factory=list)
    severity: str = "warning"
    key: str = ""
    kind: str = "type"

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "count": self.count,
            "first_seen": iso_time(self.first_seen),
            "last_seen": iso_time(self.last_seen),
            "affected_plugins": sorted(set(self.affected_plugins)),
            "sample_messages": self.sample_messages[:3],
            "severity": self.severity,
            "key": self.key,
            "kind": self.kind,
        }


_MAX_JSON_DEPTH = 64


def json_text(data: Any, indent: int | None = None, ascii_only: bool = True) -> str:
    """The package's one JSON writer: API answers, export files and stored rows.

    Strict JSON whatever the value holds (NaN and Infinity become strings, cycles and deep
    nests are cut, unknown objects become their ``str``), so an odd value in some error's
    context never turns a read into a 500 or a write into a lost batch. Compact unless
    ``indent`` is given; ``ascii_only`` escapes the rest (the HTTP layer sends it as ASCII),
    files and rows keep their text readable.
    """
    separators = (",", ":") if indent is None else None
    options: dict[str, Any] = {
        "default": str,
        "allow_nan": False,
        "indent": indent,
        "separators": separators,
        "ensure_ascii": ascii_only,
    }
    try:
        return json.dumps(data, **options)
    except (ValueError, TypeError, RecursionError):
        return json.dumps(_json_safe(data, 0, set()), **options)


def _json_safe(value: Any, depth: int, seen: set[int]) -> Any:
    """A JSON-safe copy: non-finite floats become strings, cycles and deep nests are cut."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if depth >= _MAX_JSON_DEPTH or id(value) in seen:
        return "<cycle or too deep>"
    if isinstance(value, dict):
        seen.add(id(value))
        out = {str(k): _json_safe(v, depth + 1, seen) for k, v in value.items()}
        seen.discard(id(value))
        return out
    if isinstance(value, (list, tuple)):
        seen.add(id(value))
        items = [_json_safe(v, depth + 1, seen) for v in value]
        seen.discard(id(value))
        return items
    return str(value)
