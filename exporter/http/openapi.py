"""The OpenAPI 3.1 document of the HTTP routes, built from the monitor's configuration.

It is generated rather than kept as a file so it always says what this server really does:
the bearer-token requirement appears only when a token is configured, ``/metrics`` is marked
protected only with ``protect_metrics``, and ``servers`` points at where the app is mounted.
The fuzz test (schemathesis against the live server) keeps it honest.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from exporter.config import SEVERITIES
from exporter.http.params import EXPORT_SORTS, MAX_CURSOR, MAX_LIMIT, SORTS, TIME_HELP
from exporter.release import monitor_version
from exporter.store.read_protocol import ErrorReader

Schema = dict[str, Any]
_cache: dict[tuple[Any, ...], Schema] = {}
_cache_lock = threading.Lock()


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    return out


def _object(
    properties: dict[str, Schema], required: list[str] | None = None, description: str = ""
) -> Schema:
    out: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    if description:
        out["description"] = description
    return out


def _map(values: Schema) -> Schema:
    return {"type": "object", "additionalProperties": values}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
OBJ: Schema = {"type": "object"}
SEVERITY: Schema = {"type": "string", "enum": list(SEVERITIES)}
LEVELS: Schema = {"type": "string", "enum": list(SEVERITIES)}
ISO: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "ISO-8601 in UTC with its offset, e.g. 2024-05-01T12:00:00.250000+00:00",
}
EPOCH: Schema = {"type": "number", "description": "the same instant in epoch seconds"}
PLUGIN: Schema = {"type": ["string", "null"], "description": "null when there is no plugin"}
TRACE: dict[str, Schema] = {
    "trace_id": {
        "type": ["string", "null"],
        "pattern": "^[0-9a-f]{32}$",
        "description": "the trace the occurrence happened in (OpenTelemetry's current "
        "span, else the request's traceparent); null without one",
    },
    "span_id": {
        "type": ["string", "null"],
        "pattern": "^[0-9a-f]{16}$",
        "description": "the span (with a traceparent only: the caller's span)",
    },
    "trace_url": {
        "type": ["string", "null"],
        "description": "trace_url_template filled in; null without a template or a trace",
    },
}
VERSION: Schema = {
    "type": ["string", "null"],
    "description": "an app version (app_version / set_app_version); null when none was set",
}
RELEASE: dict[str, Schema] = {
    "first_seen_version": VERSION,
    "last_seen_version": VERSION,
    "resolved": {**BOOL, "description": "marked resolved (POST .../resolve) and not seen since"},
    "resolved_at": _nullable(ISO),
    "resolved_at_epoch": _nullable(NUM),
    "resolved_version": {
        **VERSION,
        "description": "the version running when it was last resolved (kept when it regresses)",
    },
    "regressed": {**BOOL, "description": "seen again after it was resolved (until resolved again)"},
    "regressed_at": _nullable(ISO),
    "regressed_at_epoch": _nullable(NUM),
}
INSTANCES: Schema = {
    "type": "array",
    "description": "with a shared store (store_url postgresql://...): which instance counted "
    "how many of the group's occurrences (they add up to occurrence_count) and "
    "when it last saw it, the busiest first; absent without a shared store",
    "items": {
        "type": "object",
        "required": ["instance", "occurrence_count", "last_seen"],
        "properties": {
            "instance": {
                **STR,
                "description": "ERROR_EXPORTER_INSTANCE, else host:pid "
                "(unknown: counted before schema 4)",
            },
            "occurrence_count": INT,
            "last_seen": _nullable(ISO),
            "last_seen_epoch": NUM,
        },
    },
}
FRAME: Schema = {
    "type": "object",
    "properties": {"file_path": STR, "line_number": {"type": "integer"}, "function_name": STR},
}


_GROUP_REQUIRED = (
    "error_id",
    "error_type",
    "error_message",
    "severity",
    "priority",
    "component",
    "plugin",
    "operation",
    "file_path",
    "line_number",
    "function_name",
    "frames",
    "occurrence_count",
    "coalesced_occurrences",
    "last_severity",
    "components",
    "plugins",
    "first_occurrence",
    "first_occurrence_epoch",
    "last_occurrence",
    "last_occurrence_epoch",
    "frequency_per_hour",
    "affected_users",
    *RELEASE,
)


def _schemas() -> dict[str, Schema]:
    snapshot_fields = (
        "cpu_percent",
        "memory_percent",
        "memory_used_mb",
        "memory_available_mb",
        "disk_io_read_mb",
        "disk_io_write_mb",
        "network_sent_mb",
        "network_recv_mb",
        "process_cpu_percent",
    )
    return {
        "Error": _object(
            {
                "error": STR,
                "status": {"type": "integer"},
                "parameter": STR,
                "allowed": {},
                "error_id": STR,
                "plugin": STR,
            },
            ["error", "status"],
            "Every error answer: a message and the HTTP status.",
        ),
        "Health": _object(
            {"status": {"type": "string", "enum": ["ok"]}, "running": BOOL, "queue_depth": INT}
        ),
        "ResourceSnapshot": _object(
            {
                "timestamp": ISO,
                "timestamp_epoch": EPOCH,
                **{k: NUM for k in snapshot_fields},
                "process_count": INT,
                "thread_count": INT,
                "process_open_files": INT,
            },
            ["timestamp", "timestamp_epoch"],
            "psutil readings around the time of an error.",
        ),
        "Breadcrumb": _object(
            {
                "timestamp": ISO,
                "timestamp_epoch": EPOCH,
                "action": STR,
                "component": STR,
                "data": OBJ,
                "level": STR,
                "category": STR,
            }
        ),
        "ErrorRecord": _object(
            {
                "error_type": STR,
                "message": STR,
                "timestamp": ISO,
                "context": OBJ,
                "plugin_id": PLUGIN,
                "operation": _nullable(STR),
                "stack_trace": _nullable(STR),
                "error_id": STR,
                "severity": SEVERITY,
                "component": STR,
                "user_id": _nullable(STR),
                "session_id": _nullable(STR),
                **TRACE,
            },
            description="One occurrence of an error.",
        ),
        "GroupSummary": _object(
            {
                "error_id": STR,
                "error_type": STR,
                "error_message": STR,
                "severity": SEVERITY,
                "priority": LEVELS,
                "component": STR,
                "plugin": PLUGIN,
                "operation": STR,
                "file_path": _nullable(STR),
                "line_number": _nullable({"type": "integer"}),
                "function_name": _nullable(STR),
                "frames": {
                    "type": "array",
                    "items": FRAME,
                    "description": "the trace's frames, innermost first (at most 10): "
                    "tells apart groups raised at the same line",
                },
                "occurrence_count": INT,
                "coalesced_occurrences": INT,
                "last_severity": SEVERITY,
                "components": {"type": "array", "items": STR},
                "plugins": {"type": "array", "items": STR},
                "first_occurrence": ISO,
                "first_occurrence_epoch": EPOCH,
                "last_occurrence": ISO,
                "last_occurrence_epoch": EPOCH,
                "frequency_per_hour": NUM,
                "affected_users": INT,
                **RELEASE,
                "instances": INSTANCES,
            },
            [*_GROUP_REQUIRED],
            description="An error group (one signature) with its counts; times are ISO-8601 "
            "in UTC, with epoch seconds beside (*_epoch). severity is the highest "
            "seen; error_message, component, plugin and operation are the latest "
            "occurrence's; coalesced_occurrences were counted during a storm "
            "without their detail. Release health: the app versions that saw it "
            "first and last, and whether it is resolved or regressed.",
        ),
        "ErrorReport": _object(
            {
                "error_id": STR,
                "error_type": STR,
                "error_message": STR,
                "severity": SEVERITY,
                "priority": LEVELS,
                "timestamp": ISO,
                "timestamp_epoch": EPOCH,
                "first_occurrence": ISO,
                "first_occurrence_epoch": EPOCH,
                "last_occurrence": ISO,
                "last_occurrence_epoch": EPOCH,
                "occurrence_count": INT,
                "component": STR,
                "plugin": PLUGIN,
                "operation": STR,
                "file_path": _nullable(STR),
                "line_number": _nullable({"type": "integer"}),
                "function_name": _nullable(STR),
                "stack_trace": STR,
                "traceback_lines": {"type": "array", "items": STR},
                "environment": OBJ,
                "breadcrumbs": {"type": "array", "items": _ref("Breadcrumb")},
                "resource_snapshot": _nullable(_ref("ResourceSnapshot")),
                "session_id": _nullable(STR),
                "user_id": _nullable(STR),
                "affected_users": INT,
                "frequency_per_hour": NUM,
                "recovery_attempted": BOOL,
                "recovery_successful": BOOL,
                "metadata": OBJ,
                "context": OBJ,
                "exception_chain": {"type": "array", "items": OBJ},
                "handled": BOOL,
                "mechanism": STR,
                "thread_name": STR,
                **TRACE,
                **RELEASE,
            },
            [
                "error_id",
                "error_type",
                "error_message",
                "severity",
                "priority",
                "timestamp",
                "occurrence_count",
                "stack_trace",
                "breadcrumbs",
                "resource_snapshot",
            ],
            "One occurrence's full report (message, context, severity, breadcrumbs are its "
            "own) with its group's counts. mechanism names what recorded it: record_error "
            "(also handle_errors and capture(), which then re-raise), logging, excepthook, "
            "threading, asyncio, session, wsgi, asgi, flask, django; handled is false for "
            "what only a hook or middleware saw (nothing in the app caught it). In the "
            "analysis' top errors it also carries its group's release health fields.",
        ),
        "Pattern": _object(
            {
                "error_type": STR,
                "count": INT,
                "first_seen": ISO,
                "last_seen": ISO,
                "affected_plugins": {"type": "array", "items": STR},
                "sample_messages": {"type": "array", "items": STR},
                "severity": {"type": "string", "enum": ["none", "warning", "error", "critical"]},
                "key": STR,
                "kind": {"type": "string", "enum": ["type", "signature"]},
            },
            description="A recurring error in the sliding window.",
        ),
        "Sessions": _object(
            {
                "active": INT,
                "ended": _map(INT),
                "total_ended": INT,
                "crash_free_ratio": NUM,
                "users": INT,
            }
        ),
        "Statistics": _object(
            {
                "total_errors": INT,
                "errors_by_severity": _object({s: INT for s in SEVERITIES}),
                "errors_by_component": _map(INT),
                "errors_by_type": _map(INT),
                "errors_by_plugin": {
                    **_map(INT),
                    "description": "errors without a plugin are not listed",
                },
                "recovery_success_rate": _nullable(NUM),
                "recovery_attempts": INT,
                "average_errors_per_hour": NUM,
                "unique_errors": INT,
                "dropped_reports": INT,
                "queue_depth": INT,
                "sessions": _ref("Sessions"),
                "resources": _nullable(_ref("ResourceSnapshot")),
            },
            description="Exact counts from the metric counters.",
        ),
        "Analysis": _object(
            {
                "statistics": _ref("Statistics"),
                "top_errors": {
                    "type": "array",
                    "items": _object(
                        {
                            "error_id": STR,
                            "occurrence_count": INT,
                            "report": _ref("ErrorReport"),
                            "instances": INSTANCES,
                        },
                        ["error_id", "occurrence_count", "report"],
                    ),
                },
                "total_unique_errors": INT,
                "session_count": INT,
                "patterns": {"type": "array", "items": _ref("Pattern")},
                "sessions": _ref("Sessions"),
                "recovery": _object(
                    {
                        "success_rate": _nullable(NUM),
                        "attempts": INT,
                        "success": INT,
                        "failure": INT,
                    }
                ),
            },
        ),
        "Summary": _object(
            {
                "session_start": ISO,
                "total_errors": INT,
                "error_rate_per_hour": NUM,
                "error_counts_by_type": _map(INT),
                "plugin_error_counts": _map(_map(INT)),
                "active_patterns": _map(_ref("Pattern")),
                "recent_errors": {"type": "array", "items": _ref("ErrorRecord")},
            },
        ),
        "PluginHealth": _object(
            {
                "plugin_id": STR,
                "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                "total_errors": INT,
                "error_types": _map(INT),
                "recent_error_count": INT,
                "last_error": _nullable(_ref("ErrorRecord")),
            },
        ),
        "ErrorList": _object(
            {"errors": {"type": "array", "items": _ref("GroupSummary")}, "total": INT}
        ),
        "ErrorDetail": _object(
            {
                "group": _ref("GroupSummary"),
                "report": _ref("ErrorReport"),
                "occurrences": {"type": "array", "items": _ref("ErrorRecord")},
            }
        ),
        "PatternList": _object({"patterns": {"type": "array", "items": _ref("Pattern")}}),
        "ApiIndex": _object(
            {
                "routes": {
                    "type": "array",
                    "items": _object(
                        {
                            "path": {
                                **STR,
                                "description": "as requested (where the app is mounted "
                                "included); {name} marks a path parameter",
                            },
                            "method": {
                                "type": "string",
                                "enum": ["GET", "POST"],
                                "description": "GET routes answer HEAD too",
                            },
                            "summary": STR,
                        }
                    ),
                },
                "openapi": {**STR, "description": "the path of the OpenAPI document"},
            },
            description="Every route of this server (those of its OpenAPI document).",
        ),
        "Export": _object(
            {
                "exported_at": ISO,
                "global": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["summary", "statistics", "analysis"]},
                    "description": "the parts that describe every error whatever the filters; "
                    "only all_records is filtered",
                },
                "summary": _ref("Summary"),
                "all_records": {"type": "array", "items": _ref("ErrorRecord")},
                "statistics": _ref("Statistics"),
                "analysis": _ref("Analysis"),
                "next_cursor": _nullable(
                    {
                        "type": "integer",
                        "minimum": 0,
                        "description": "pass as ?cursor= for the next page; null on the last page",
                    }
                ),
            },
        ),
    }


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": description,
    }


LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
TIME = {"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}
EXPORT_PARAMS = [
    _query(
        "since",
        TIME,
        f"only records at or after this time: {TIME_HELP} (without an offset: local time)",
    ),
    _query("until", TIME, f"only records at or before this time: {TIME_HELP}"),
    _query("severity", {"type": "string", "enum": list(SEVERITIES)}, "only this severity"),
    _query("component", STR, "only this component (empty: errors without a component)"),
    _query("plugin", STR, "only this plugin (empty: errors without a plugin)"),
    _query("error_type", STR, "only this exception type name, e.g. ValueError"),
    _query("limit", LIMIT, "at most this many records; more pages are signalled by next_cursor"),
    _query(
        "cursor",
        {"type": "integer", "minimum": 0, "maximum": MAX_CURSOR},
        "the next_cursor of the previous page (0 or absent: from the start)",
    ),
    _query(
        "sort",
        {"type": "string", "enum": list(EXPORT_SORTS), "default": "time"},
        "the records' order: oldest first (the only one; the cursor pages by it)",
    ),
]
ERROR_PARAMS = [
    _query(
        "sort",
        {"type": "string", "enum": list(SORTS), "default": "count"},
        "order: most occurrences first, or most recently seen first",
    ),
    _query("limit", LIMIT, "at most this many groups"),
    _query(
        "new_in",
        {"type": "string", "minLength": 1, "pattern": "\\S"},
        "only the groups first seen in this app version (new in that release); total "
        "then counts those",
    ),
]


def _json(schema: str, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _operation(
    op_id: str,
    summary: str,
    ok: Schema,
    *,
    secured: bool,
    parameters: list[Schema] | None = None,
    not_found: bool = False,
    tag: str = "api",
) -> Schema:
    responses: dict[str, Schema] = {"200": ok}
    if parameters:
        responses["400"] = _json("Error", "A query value is invalid; the body names it.")
    if secured:
        responses["401"] = {
            **_json("Error", "Missing or wrong bearer token."),
            "headers": {"WWW-Authenticate": {"schema": STR, "description": "Bearer challenge"}},
        }
    if not_found:
        responses["404"] = _json("Error", "Nothing at this path.")
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if parameters:
        op["parameters"] = parameters
    op["security"] = [{"bearerAuth": []}] if secured else []
    return {"get": op}


def _resolve() -> Schema:
    """The one write route, listed only when a token is configured (without one the server
    closes it: every call answers 403, so it is no operation of that server)."""
    op: Schema = {
        "operationId": "resolveError",
        "summary": "Mark a group resolved; seen again, it is a regression",
        "tags": ["api"],
        "responses": {
            "200": _json("GroupSummary", "The group, resolved (resolving twice is fine)"),
            "401": {
                **_json("Error", "Missing or wrong bearer token."),
                "headers": {"WWW-Authenticate": {"schema": STR, "description": "Bearer challenge"}},
            },
            "404": _json("Error", "No group with this id."),
        },
        "parameters": [_path("error_id", "the group's error_id")],
        "security": [{"bearerAuth": []}],
    }
    return {"post": op}


def _paths(api_secured: bool, metrics_secured: bool) -> dict[str, Schema]:
    text = {"schema": STR}
    api = api_secured
    write = {"/api/v1/errors/{error_id}/resolve": _resolve()} if api else {}
    return {
        "/": _operation(
            "landing",
            "Landing page linking the routes",
            {"description": "HTML page", "content": {"text/html": text}},
            secured=False,
            tag="meta",
        ),
        "/metrics": _operation(
            "metrics",
            "Prometheus metrics",
            {
                "description": "Text format 0.0.4, or OpenMetrics 1.0 (with error_id and trace_id "
                "exemplars) when the Accept header asks for "
                "application/openmetrics-text; "
                "gzip when Accept-Encoding allows.",
                "content": {"text/plain": text, "application/openmetrics-text": text},
            },
            secured=metrics_secured,
            tag="metrics",
        ),
        "/healthz": _operation(
            "healthz",
            "Liveness and queue depth",
            _json("Health", "Alive"),
            secured=False,
            tag="meta",
        ),
        "/api/v1/": _operation(
            "apiIndex",
            "The API's routes: path, method, summary",
            _json("ApiIndex", "Every route of this server"),
            secured=api,
            tag="meta",
        ),
        "/api/v1/statistics": _operation(
            "statistics", "Error statistics", _json("Statistics", "Statistics"), secured=api
        ),
        "/api/v1/analysis": _operation(
            "analysis",
            "Top errors, patterns, sessions, recovery",
            _json("Analysis", "Analysis"),
            secured=api,
        ),
        "/api/v1/errors": _operation(
            "listErrors",
            "Error groups with counts",
            _json("ErrorList", "Groups; total counts all of them (with new_in: those new there)"),
            secured=api,
            parameters=ERROR_PARAMS,
        ),
        "/api/v1/errors/{error_id}": _operation(
            "getError",
            "One group: summary, latest report, recent occurrences",
            _json("ErrorDetail", "The group"),
            secured=api,
            not_found=True,
            parameters=[_path("error_id", "the group's error_id")],
        ),
        **write,
        "/api/v1/patterns": _operation(
            "patterns", "Active error patterns", _json("PatternList", "Patterns"), secured=api
        ),
        "/api/v1/plugins/{plugin}/health": _operation(
            "pluginHealth",
            "Health of one plugin from its recent errors",
            _json(
                "PluginHealth",
                "Health of a plugin that reported errors (a plugin never "
                "seen is a 404: the monitor knows plugins from their errors)",
            ),
            secured=api,
            not_found=True,
            parameters=[_path("plugin", "plugin id")],
        ),
        "/api/v1/export": _operation(
            "export",
            "Full export: summary, records, statistics, analysis; paged",
            _json("Export", "The export (streamed)"),
            secured=api,
            parameters=EXPORT_PARAMS,
        ),
        "/api/v1/openapi.json": _operation(
            "openapi",
            "This document",
            {
                "description": "OpenAPI 3.1 document",
                "content": {"application/json": {"schema": OBJ}},
            },
            secured=api,
            tag="meta",
        ),
    }


def build_openapi(monitor: ErrorReader, script_name: str = "") -> Schema:
    """The document for this monitor's settings, mounted under ``script_name``."""
    config = monitor.config
    secured = bool(config.api_token)
    key = (secured, secured and bool(config.protect_metrics), script_name)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is None:
            cached = _document(*key)
            if len(_cache) > 64:
                _cache.clear()
            _cache[key] = cached
    return copy.deepcopy(cached)


def _document(api_secured: bool, metrics_secured: bool, script_name: str) -> Schema:
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "error-exporter",
            "version": monitor_version(),
            "description": "Errors captured in this process: Prometheus metrics and a JSON "
            "API. Reads are GET and HEAD; the one write, POST "
            "/api/v1/errors/{error_id}/resolve, needs the api_token (listed "
            "only when one is configured: without it the route answers 403); "
            "other methods answer 405 with Allow; unknown paths answer 404, "
            "invalid query values 400, all with an Error body. "
            "Every time is an ISO-8601 string in UTC with its offset "
            "(2024-05-01T12:00:00.250000+00:00); where epoch seconds help they "
            "are beside it as <key>_epoch. A missing plugin is null (metric "
            "labels use the empty string: Prometheus has no null).",
        },
        "servers": [{"url": script_name.rstrip("/") or "/"}],
        "paths": _paths(api_secured, metrics_secured),
        "components": {"schemas": _schemas()},
    }
    if api_secured or metrics_secured:
        doc["components"]["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "the monitor's api_token (ERROR_EXPORTER_API_TOKEN)",
            }
        }
    return doc
