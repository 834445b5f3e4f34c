"""The JSON shapes of :mod:`exporter.model` read back into objects, for the SQLite stores.

Both stores (the multiprocess shared store and the durable store of one process) keep a
report or a record as the very JSON the API and the export show (``to_dict``), so one
format is written and read everywhere. Times come back from their ``*_epoch`` keys (exact)
where the shape has them, from the ISO text otherwise.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from exporter.model import (
    Breadcrumb,
    ErrorPriority,
    ErrorRecord,
    ErrorReport,
    ErrorSeverity,
    ResourceSnapshot,
    local_datetime,
)

_EPOCH_KEYS = ("timestamp", "first_occurrence", "last_occurrence")


def record_from_json(text: str) -> ErrorRecord:
    """An :class:`ErrorRecord` from the JSON of its ``to_dict``."""
    data = json.loads(text)
    return ErrorRecord(
        error_type=data["error_type"],
        message=data["message"],
        timestamp=local_datetime(data["timestamp"]),
        context=data.get("context") or {},
        plugin_id=data.get("plugin_id"),
        operation=data.get("operation"),
        stack_trace=data.get("stack_trace"),
        error_id=data.get("error_id", ""),
        severity=data.get("severity", "medium"),
        component=data.get("component", ""),
        user_id=data.get("user_id"),
        session_id=data.get("session_id"),
        trace_id=data.get("trace_id"),
        span_id=data.get("span_id"),
        trace_url=data.get("trace_url"),
    )


def _epoch(data: dict[str, Any], key: str) -> float:
    value = data.get(key + "_epoch", data.get(key))
    return float(value) if isinstance(value, (int, float)) else 0.0


def _breadcrumb(data: dict[str, Any]) -> Breadcrumb:
    return Breadcrumb(
        timestamp=_epoch(data, "timestamp"),
        action=str(data.get("action", "")),
        component=str(data.get("component") or ""),
        data=data.get("data") or {},
        level=str(data.get("level", "info")),
        category=str(data.get("category", "default")),
    )


def _snapshot(data: dict[str, Any] | None) -> ResourceSnapshot | None:
    if not isinstance(data, dict):
        return None
    known = {f.name for f in fields(ResourceSnapshot)} - {"timestamp"}
    values = {k: v for k, v in data.items() if k in known}
    return ResourceSnapshot(timestamp=_epoch(data, "timestamp"), **values)


def report_from_dict(data: dict[str, Any]) -> ErrorReport:
    """An :class:`ErrorReport` from its ``to_dict`` shape (keys it does not know are ignored)."""
    known = {f.name for f in fields(ErrorReport)}
    values = {k: v for k, v in data.items() if k in known}
    for key in _EPOCH_KEYS:
        values[key] = _epoch(data, key)
    values["severity"] = ErrorSeverity(data.get("severity") or "medium")
    values["priority"] = ErrorPriority(data.get("priority") or "medium")
    values["breadcrumbs"] = [
        _breadcrumb(b) for b in data.get("breadcrumbs") or [] if isinstance(b, dict)
    ]
    values["resource_snapshot"] = _snapshot(data.get("resource_snapshot"))
    values["plugin"] = data.get("plugin") or ""
    values["environment"] = data.get("environment") or {}
    return ErrorReport(**values)


__all__ = ["record_from_json", "report_from_dict"]
