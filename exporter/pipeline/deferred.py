"""Reports and records whose costly parts are formatted when first read, not when stored.

Most occurrences are stored and never read one by one: the group's latest report is replaced
by the next occurrence, and records are read only by an export or the API. So the worker
stores a :class:`DeferredReport` / :class:`DeferredRecord`: every field the store, the
metrics and the filters use is set at once (ids, type, severity, priority, times, counts,
component, plugin, user, the scrubbed message and context); the trace text, the exception
chain, the location, the environment and the trace ids are formatted from the occurrence
(code objects and line numbers, never a frame) on the first read of any of them, by
whichever thread reads first (no lock: readers never wait for each other or the worker),
and the object then is a plain ErrorReport / ErrorRecord.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, Protocol, TypeVar

from exporter.capture.occurrence import Occurrence
from exporter.model import REPORT_FIELDS, ErrorRecord, ErrorReport, ErrorSeverity, ResourceSnapshot


class Formatter(Protocol):
    """What formats the deferred fields (the worker's ``report_builder.ReportBuilder``)."""

    def deferred_report_fields(
        self, occurrence: Occurrence, message: str, snapshot: ResourceSnapshot | None
    ) -> dict[str, Any]: ...

    def stack_trace(self, occurrence: Occurrence, message: str | None = None) -> str: ...

    def trace(self, occurrence: Occurrence) -> tuple[str | None, str | None, str | None]: ...


RECORD_FIELDS = tuple(f.name for f in fields(ErrorRecord))
_REPORT_DEFERRED = frozenset(REPORT_FIELDS) - {
    "error_id",
    "error_type",
    "error_message",
    "severity",
    "priority",
    "timestamp",
    "first_occurrence",
    "occurrence_count",
    "component",
    "session_id",
    "user_id",
    "affected_users",
    "frequency_per_hour",
    "recovery_attempted",
    "recovery_successful",
    "metadata",
    "plugin",
    "operation",
    "context",
    "handled",
    "mechanism",
    "thread_name",
    "last_occurrence",
}
_RECORD_DEFERRED = frozenset(("stack_trace", "trace_id", "span_id", "trace_url"))


_Settled = TypeVar("_Settled", bound="_Formats")


class _Deferred:
    """A field formatted on first read. A non-data descriptor: once formatted, the value
    sits in the instance's ``__dict__`` and is read from there (this is not called again).
    It also shadows the dataclass's class-level default, which would hide the field."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        d = instance.__dict__
        if self.name not in d:
            instance.materialize()
        return d[self.name]


class _Formats:
    """What both deferred kinds share: format on first read, then read as the plain kind.

    A subclass names its plain dataclass (``_plain``, ``_fields``) and how its deferred
    fields are formatted (``_format``)."""

    _plain: type
    _fields: tuple[str, ...]

    def __new__(cls, *args: Any, **fields: Any) -> Any:
        if fields and not args:  # dataclasses.replace(): every field by name, a plain one
            return cls._plain(**fields)
        return super().__new__(cls)

    def _format(
        self, builder: Formatter, occurrence: Occurrence, d: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def materialize(self: _Settled) -> _Settled:
        """Format the deferred fields now (idempotent; safe from any thread, no lock)."""
        d = self.__dict__
        occurrence = d.get("_occurrence")
        builder = d.get("_builder")
        if occurrence is not None and builder is not None:
            _settle(d, self._format(builder, occurrence, d))
        return self

    def to_dict(self) -> dict[str, Any]:
        self.materialize()
        plain: dict[str, Any] = super().to_dict()  # type: ignore[misc]
        return plain

    def __repr__(self) -> str:  # what the app knows it as
        self.materialize()
        text: str = self._plain.__repr__(self)  # type: ignore[call-arg]
        return self._plain.__name__ + text[len(type(self).__name__) :]

    def __eq__(self, other: object) -> bool:  # equal to the plain object it reads as
        if not isinstance(other, self._plain):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    __hash__ = None  # type: ignore[assignment]  # as the dataclasses: mutable, unhashable

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """copy, deepcopy and pickle give the plain object (an app's callback may send a
        report elsewhere; the builder it would drag along is neither light nor picklable)."""
        self.materialize()
        return _plain_copy, (self._plain, dict(self.__dict__))


def _plain_copy(plain: type, state: dict[str, Any]) -> Any:
    copied: Any = object.__new__(plain)
    copied.__dict__.update(state)
    return copied


class DeferredReport(_Formats, ErrorReport):
    """An ErrorReport whose trace, chain, location and environment wait for a reader."""

    _plain, _fields = ErrorReport, REPORT_FIELDS

    def __init__(
        self,
        builder: Formatter,
        occurrence: Occurrence,
        message: str,
        severity: ErrorSeverity,
        priority: Any,
        context: dict[str, Any],
        metadata: dict[str, Any],
        snapshot: ResourceSnapshot | None,
    ) -> None:
        self.__dict__ = new_report(
            builder, occurrence, message, severity, priority, context, metadata, snapshot
        ).__dict__

    def _format(
        self, builder: Formatter, occurrence: Occurrence, d: dict[str, Any]
    ) -> dict[str, Any]:
        return builder.deferred_report_fields(occurrence, d["error_message"], d.get("_snapshot"))


class DeferredRecord(_Formats, ErrorRecord):
    """An ErrorRecord whose stack trace and trace ids wait for a reader."""

    _plain, _fields = ErrorRecord, RECORD_FIELDS

    def __init__(
        self, builder: Formatter, occurrence: Occurrence, message: str, context: dict[str, Any]
    ) -> None:
        self.__dict__ = new_record(builder, occurrence, message, context).__dict__

    def _format(
        self, builder: Formatter, occurrence: Occurrence, d: dict[str, Any]
    ) -> dict[str, Any]:
        trace_id, span_id, trace_url = builder.trace(occurrence)
        return {
            "stack_trace": builder.stack_trace(occurrence, d["message"]),
            "trace_id": trace_id,
            "span_id": span_id,
            "trace_url": trace_url,
        }


_new = object.__new__
# A new report's state, in the order its fields are set (the constant ones already right).
_REPORT_TEMPLATE: dict[str, Any] = {
    "_builder": None,
    "_occurrence": None,
    "_snapshot": None,
    "error_id": None,
    "error_type": None,
    "error_message": None,
    "severity": None,
    "priority": None,
    "timestamp": None,
    "first_occurrence": None,
    "last_occurrence": None,
    "occurrence_count": 1,
    "component": None,
    "session_id": None,
    "user_id": None,
    "affected_users": 0,
    "frequency_per_hour": 0.0,
    "recovery_attempted": False,
    "recovery_successful": False,
    "metadata": None,
    "plugin": None,
    "operation": None,
    "context": None,
    "handled": None,
    "mechanism": None,
    "thread_name": None,
}


def new_report(
    builder: Formatter,
    occurrence: Occurrence,
    message: str,
    severity: ErrorSeverity,
    priority: Any,
    context: dict[str, Any],
    metadata: dict[str, Any],
    snapshot: ResourceSnapshot | None,
) -> DeferredReport:
    """``DeferredReport(...)``, as the worker makes one per occurrence: its fields in one
    dict display (one instruction, not a store per field) and no Python ``__new__`` call."""
    report: DeferredReport = _new(DeferredReport)
    # a copy of the template (every key in order, sized once), then the varying fields: a
    # display of this many keys is built key by key, growing the dict as it goes
    d = _REPORT_TEMPLATE.copy()
    d["_builder"] = builder
    d["_occurrence"] = occurrence
    d["_snapshot"] = snapshot
    d["error_id"] = occurrence.error_id
    d["error_type"] = occurrence.error_type
    d["error_message"] = message
    d["severity"] = severity
    d["priority"] = priority
    d["timestamp"] = d["first_occurrence"] = d["last_occurrence"] = occurrence.timestamp
    d["component"] = occurrence.component
    d["session_id"] = occurrence.session_id
    d["user_id"] = user_id = occurrence.user_id
    if user_id:
        d["affected_users"] = 1
    d["metadata"] = metadata
    d["plugin"] = occurrence.plugin
    d["operation"] = occurrence.operation
    d["context"] = context
    d["handled"] = occurrence.handled
    d["mechanism"] = occurrence.mechanism
    d["thread_name"] = occurrence.thread_name
    report.__dict__ = d
    return report


def new_record(
    builder: Formatter, occurrence: Occurrence, message: str, context: dict[str, Any]
) -> DeferredRecord:
    """``DeferredRecord(...)``, as the worker makes one per occurrence (see new_report)."""
    record: DeferredRecord = _new(DeferredRecord)
    record.__dict__ = {
        "_builder": builder,
        "_occurrence": occurrence,
        "error_type": occurrence.error_type,
        "message": message,
        "timestamp": datetime.fromtimestamp(occurrence.timestamp),
        "context": context,
        "plugin_id": occurrence.plugin or None,
        "operation": occurrence.operation or None,
        "error_id": occurrence.error_id,
        "severity": occurrence.severity,
        "component": occurrence.component,
        "user_id": occurrence.user_id,
        "session_id": occurrence.session_id,
    }
    return record


for _name in _REPORT_DEFERRED:
    setattr(DeferredReport, _name, _Deferred(_name))
for _name in _RECORD_DEFERRED:
    setattr(DeferredRecord, _name, _Deferred(_name))


def _settle(d: dict[str, Any], formatted: dict[str, Any]) -> None:
    """The formatted fields join the instance; then what pointed at the occurrence goes.

    Only adds, then removes private keys, so a reader on another thread never misses a
    field; two threads formatting at once both add the same values (the first stays).
    Values set meanwhile (the store's counts) win over formatted ones.
    """
    for name, value in formatted.items():
        d.setdefault(name, value)
    for name in ("_occurrence", "_builder", "_snapshot"):
        d.pop(name, None)


__all__ = ["DeferredRecord", "DeferredReport", "new_record", "new_report"]
