"""The route table and handlers: each reads the monitor through its public read methods.

Routing is a dict for the fixed paths plus two patterns for the ones with a path parameter;
the app checks method, auth and path sanity before a handler runs, so handlers only deal with
their own query parameters.

What the routes read of the "monitor" (an ErrorMonitor, or the multiprocess SharedView that
mimics it): ``config`` (api_token, protect_metrics), ``registry``, ``running``,
``queue_depth``, ``note_internal_error()``, the read API (get_statistics, get_error_analysis,
get_error_summary, list_groups, get_group, get_patterns, get_plugin_health) and
``store.groups`` (its len) and ``store.iter_records(ExportFilter)`` for the streamed export.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporter.http import params
from exporter.http.export_stream import export_chunks
from exporter.http.exposition import metrics_response
from exporter.http.openapi import build_openapi
from exporter.http.responses import HTML_TYPE, Response, error_response, json_response
from exporter.store.read_protocol import ErrorReader


@dataclass
class Request:
    """What a handler needs of one request."""

    environ: dict[str, Any]
    method: str
    path: str
    query: params.Query
    script_name: str = ""
    path_params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return str(self.environ.get("HTTP_" + name.upper().replace("-", "_"), ""))


Handler = Callable[[ErrorReader, Request], Response]


READ_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Route:
    """One route; ``access`` is ``public``, ``api`` (token when set), ``metrics`` or
    ``write`` (always a token: closed with 403 while none is configured)."""

    name: str
    handler: Handler
    access: str = "api"
    methods: tuple[str, ...] = READ_METHODS


def landing(monitor: ErrorReader, request: Request) -> Response:
    """A small HTML page linking the routes, relative to where the app is mounted."""
    base = html.escape(request.script_name.rstrip("/"), quote=True)
    links = [
        ("/metrics", "Prometheus metrics (text format or OpenMetrics)"),
        ("/healthz", "liveness"),
        ("/api/v1/", "the API's routes (JSON)"),
        ("/api/v1/statistics", "error statistics"),
        ("/api/v1/analysis", "analysis: top errors, patterns, sessions"),
        ("/api/v1/errors", "error groups (?sort=count|last_seen&limit=N&new_in=VERSION)"),
        ("/api/v1/patterns", "active error patterns"),
        ("/api/v1/export", "full JSON export (filters, paging)"),
        ("/api/v1/openapi.json", "OpenAPI document of this API"),
    ]
    items = "\n".join(
        f'<li><a href="{base}{path}">{path}</a> &ndash; {html.escape(text)}</li>'
        for path, text in links
    )
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>error-exporter</title>'
        "</head>\n<body><h1>error-exporter</h1>\n<ul>\n" + items + "\n</ul>\n"
        "<p>/api routes need <code>Authorization: Bearer &lt;token&gt;</code> when a token "
        "is configured.</p></body></html>\n"
    )
    return Response(200, page.encode("utf-8"), HTML_TYPE)


def metrics(monitor: ErrorReader, request: Request) -> Response:
    return metrics_response(
        monitor.registry, request.header("Accept"), request.header("Accept-Encoding")
    )


def healthz(monitor: ErrorReader, request: Request) -> Response:
    return json_response(
        200,
        {"status": "ok", "running": bool(monitor.running), "queue_depth": int(monitor.queue_depth)},
    )


def statistics(monitor: ErrorReader, request: Request) -> Response:
    return json_response(200, monitor.get_statistics())


def analysis(monitor: ErrorReader, request: Request) -> Response:
    return json_response(200, monitor.get_error_analysis())


def errors(monitor: ErrorReader, request: Request) -> Response:
    sort = request.query.choice("sort", params.SORTS, "count") or "count"
    limit = request.query.integer("limit", 1, params.MAX_LIMIT)
    new_in = params.version(request.query, "new_in")
    if new_in is not None:  # total: the groups new in that version
        found = monitor.list_groups(sort, None, new_in)
        return json_response(200, {"errors": found[:limit], "total": len(found)})
    with monitor.reading():
        groups = monitor.list_groups(sort, limit)
        total = monitor.get_statistics()["unique_errors"]  # fleet-wide in multiprocess mode
    return json_response(200, {"errors": groups, "total": total})


def error_detail(monitor: ErrorReader, request: Request) -> Response:
    error_id = request.path_params["error_id"]
    return _group_or_404(error_id, monitor.get_group(error_id))


def resolve(monitor: ErrorReader, request: Request) -> Response:
    """Mark a group resolved: seen again later, it is a regression."""
    error_id = request.path_params["error_id"]
    return _group_or_404(error_id, monitor.resolve_group(error_id))


def _group_or_404(error_id: str, group: dict[str, Any] | None) -> Response:
    if group is None:
        shown = error_id if len(error_id) <= 200 else error_id[:200] + "..."
        return error_response(404, f"no error group with id {shown!r}", error_id=shown)
    return json_response(200, group)


def patterns(monitor: ErrorReader, request: Request) -> Response:
    return json_response(200, {"patterns": monitor.get_patterns()})


def plugin_health(monitor: ErrorReader, request: Request) -> Response:
    """A plugin is known from its errors: one never seen is a 404, not "healthy".

    (``get_plugin_health`` itself keeps the aggregator's answer for it: healthy, no errors.)
    """
    plugin = request.path_params["plugin"]
    health = monitor.get_plugin_health(plugin)
    if not (
        health.get("total_errors") or health.get("recent_error_count") or health.get("last_error")
    ):
        shown = plugin if len(plugin) <= 200 else plugin[:200] + "..."
        return error_response(
            404,
            f"no error was ever recorded for plugin {shown!r} (a plugin "
            "is known once it reports an error)",
            plugin=shown,
        )
    return json_response(200, health)


def export(monitor: ErrorReader, request: Request) -> Response:
    flt = params.export_filter(request.query)
    if request.method == "HEAD":  # same status and headers, without computing the body
        return Response(200, iter(()))
    return Response(200, export_chunks(monitor, flt))


def api_index(monitor: ErrorReader, request: Request) -> Response:
    """``/api/v1/``: every route with its method and summary, and where the OpenAPI document is.

    The demo banner and the README print this URL as "the API": it must answer with a map of
    the API, not a 404. Built from the OpenAPI document of this server, so the two never
    disagree (the resolve route is listed only where it is open, with a token); paths
    include where the app is mounted, so each can be requested as it is.
    """
    base = request.script_name.rstrip("/")
    doc = build_openapi(monitor, request.script_name)
    routes = [
        {"path": base + path, "method": method.upper(), "summary": op["summary"]}
        for path, item in doc["paths"].items()
        for method, op in item.items()
    ]
    return json_response(200, {"routes": routes, "openapi": f"{base}/api/v1/openapi.json"})


def openapi(monitor: ErrorReader, request: Request) -> Response:
    return json_response(200, build_openapi(monitor, request.script_name))


FIXED: dict[str, Route] = {
    "/": Route("landing", landing, "public"),
    "/metrics": Route("metrics", metrics, "metrics"),
    "/healthz": Route("healthz", healthz, "public"),
    "/api/v1/": Route("api_index", api_index),
    "/api/v1/statistics": Route("statistics", statistics),
    "/api/v1/analysis": Route("analysis", analysis),
    "/api/v1/errors": Route("errors", errors),
    "/api/v1/patterns": Route("patterns", patterns),
    "/api/v1/export": Route("export", export),
    "/api/v1/openapi.json": Route("openapi", openapi),
}
PATTERNS: tuple[tuple[re.Pattern[str], Route], ...] = (
    (
        re.compile(r"/api/v1/errors/(?P<error_id>[^/]+)/resolve"),
        Route("resolve", resolve, "write", ("POST",)),
    ),
    (re.compile(r"/api/v1/errors/(?P<error_id>[^/]+)"), Route("error", error_detail)),
    (re.compile(r"/api/v1/plugins/(?P<plugin>.+)/health"), Route("plugin_health", plugin_health)),
)


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for an already-sanitised path, with its path parameters."""
    route = FIXED.get(path)
    if route is not None:
        return route, {}
    for pattern, candidate in PATTERNS:
        found = pattern.fullmatch(path)
        if found is not None:
            return candidate, found.groupdict()
    return None
