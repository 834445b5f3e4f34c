"""What the WSGI, ASGI, Flask and Django integrations do for each request.

- ``operation`` is ``"<METHOD> <route template>"`` (``GET /items/{item_id}``), or the method
  alone when no route matched: never the raw path, whose values are unbounded. Unknown
  methods become ``OTHER`` for the same reason.
- Every request is timed into ``app_operation_duration_seconds{component="http"}``; the
  outcome is ``error`` for an unhandled exception or a 5xx status, ``ok`` otherwise (4xx are
  the client's errors, not the app's).
- Every request is a session by default (``sessions=True``): ``app_sessions_total`` then
  counts requests by how they ended, and an error's breadcrumbs are those of its request. The
  request's breadcrumb (method, path, request id) is its first one.
- The request id comes from ``X-Request-ID`` when it is a sane token, else a new one; it is in
  :func:`current_request_id` while the request runs, echoed in the response, and in the
  error's context.
- A valid W3C ``traceparent`` header makes its trace current for the request (with
  ``capture_trace_context``): errors recorded without an OpenTelemetry span carry its
  ``trace_id`` and, as ``span_id``, the caller's span (:mod:`exporter.capture.trace_context`).
- The error's context holds the request with its headers and query scrubbed (Authorization,
  Cookie and anything matching the monitor's scrub keys become ``[Filtered]``) and, only with
  ``capture_body=True``, the first ``max_body_bytes`` of a JSON, form or text body, scrubbed
  the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from exporter.capture.ids import new_id
from exporter.capture.work_unit import current_work
from exporter.integrations import Hub
from exporter.integrations.scope import WorkScope
from exporter.model import Breadcrumb
from exporter.scrub import FILTERED, fix_surrogates

KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
)
SENSITIVE_HEADERS = frozenset(
    (
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-csrftoken",
        "x-csrf-token",
        "x-xsrf-token",
        "x-amz-security-token",
    )
)
MAX_HEADERS = 50
MAX_QUERY_ITEMS = 50
MAX_PATH_CHARS = 512
MAX_LABEL_CHARS = 100  # as the metrics' labels (a breadcrumb's component is one)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_BODY_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/")


def current_request_id() -> str | None:
    """The id of the request being handled in this thread / task, if any."""
    unit = current_work.get()
    return unit.request_id if isinstance(unit, RequestScope) else None


def method_name(raw: str) -> str:
    method = raw.upper()
    return method if method in KNOWN_METHODS else "OTHER"


def operation_name(method: str, route: str | None) -> str:
    return f"{method} {route}" if route else method


def clean_request_id(raw: str | None) -> str:
    """The client's request id when it is a plain token, else a new random one."""
    if raw:
        raw = raw.strip()
        if _REQUEST_ID.fullmatch(raw):
            return raw
    return new_id()  # exporter.capture.ids: unique without a system call


@dataclass(frozen=True)
class WebOptions:
    """Settings shared by every web integration."""

    component: str = "http"
    plugin: str = ""
    sessions: bool = True
    capture_body: bool = False
    max_body_bytes: int = 4096
    request_id_header: str = "X-Request-ID"
    breadcrumbs: bool = True


class MonitoredApp:
    """Base of the middlewares: the monitor given, or the process-wide one at first request.

    Looked up late so a middleware built at import time follows ``get_error_monitor``'s
    first-call-wins settings made later by the app's start-up code.
    """

    _monitor: Hub | None = None
    options: WebOptions

    @property
    def monitor(self) -> Hub:
        if self._monitor is None:
            from exporter.global_monitor import get_error_monitor

            self._monitor = get_error_monitor()
        return self._monitor


Headers = Callable[[], list[tuple[str, str]]]


class RequestScope(WorkScope):
    """One request: a :class:`WorkScope` with the HTTP details (route, headers, id).

    ``headers`` is a call that lists them: only an error report reads them, so a request
    that never fails never copies its headers (``traceparent`` is passed on its own). The
    request's breadcrumb is built only if its session starts; its route is found when first
    read (:meth:`find_route`, for a middleware that knows where the framework keeps it).
    """

    path: str
    query: str
    _route: str | None = None
    _clean_path: str | None = None
    body: bytes | None = None
    content_type = ""
    # the same for every request: class attributes, not set on each one
    category = "http"
    mechanism = "scope"
    breadcrumb: str | None = None  # add_first_breadcrumb builds the request's own
    breadcrumb_data: dict[str, Any] | None = None
    _operation = ""  # the operation property says it, from the method and route

    def __init__(
        self,
        monitor: Hub,
        options: WebOptions,
        method: str,
        path: str | None,
        query: str | None,
        headers: Headers | None,
        request_id: str,
        traceparent: str | None = None,
    ) -> None:
        # WorkScope's attributes that vary, set here directly: this runs for every request
        self.monitor = monitor
        self.component = options.component
        self.plugin = options.plugin
        self.sessions = options.sessions
        self.traceparent = traceparent
        upper = method.upper()  # method_name(), inline: this runs for every request
        self.method = upper if upper in KNOWN_METHODS else "OTHER"
        if path is not None:  # None: a subclass finds it when first read (see WSGI's)
            self.path = path
        self.options = options
        if query is not None:  # None: as the path
            self.query = query
        self.headers = headers
        self.request_id = request_id

    @property
    def route(self) -> str | None:
        route = self._route
        if route is None:
            try:
                route = self._route = self.find_route()
            except Exception:
                self.monitor.note_internal_error()
        return route

    @route.setter
    def route(self, value: str | None) -> None:
        self._route = value

    def find_route(self) -> str | None:
        """The route template, when the framework has matched one (None: not yet / none)."""
        return None

    def header_pairs(self) -> list[tuple[str, str]]:
        return self.headers() if self.headers is not None else []

    def clean_path(self) -> str:
        """The path, scrubbed once for the breadcrumb and every report of the request."""
        path = self._clean_path
        if path is None:
            path = self._clean_path = self.monitor.scrubber.text(self.path, MAX_PATH_CHARS)
        return path

    def add_first_breadcrumb(self, session_id: str, began: float) -> None:
        """``GET /path`` with the method, path and request id: what ``add_breadcrumb`` would
        keep, built from values already scrubbed (the method is a known token)."""
        monitor = self.monitor
        if not self.options.breadcrumbs or not monitor.config.enable_breadcrumbs:
            return
        path = self.clean_path()
        data = {
            "method": self.method,
            "path": path,
            "request_id": monitor.scrubber.text(self.request_id),
        }
        action = f"{self.method} {path}"
        crumb = Breadcrumb(began, action, self._component_label(), data, "info", self.category)
        monitor.sessions.add_breadcrumb(crumb, session_id)

    def _component_label(self) -> str:
        component = fix_surrogates(self.component)
        return component[:MAX_LABEL_CHARS]

    @property
    def operation(self) -> str:
        route = self.route
        return f"{self.method} {route}" if route else self.method  # operation_name()

    def finish(self, status: int | None = None) -> None:
        """Time the request (a 5xx status is a failure) and end its session; called once."""
        self.end(status is None or status < 500)

    def describe(self) -> dict[str, Any]:
        """The request for an error report, scrubbed (``context["request"]``)."""
        return {"request": self._request()}

    def brief(self) -> dict[str, Any]:
        """What an error recorded or logged during the request carries: which request (the
        request's own failure: all of it, :meth:`describe`)."""
        if self._own_failure:
            return self.describe()
        return {"request": self._which()}

    def _which(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "route": self.route,
            "path": self.clean_path(),
            "request_id": self.request_id,
        }

    def _request(self) -> dict[str, Any]:
        scrubber = self.monitor.scrubber
        out: dict[str, Any] = {
            **self._which(),
            "headers": scrub_headers(self.header_pairs(), self.monitor),
        }
        if self.query:
            pairs = parse_qsl(self.query, keep_blank_values=True)[:MAX_QUERY_ITEMS]
            out["query"] = scrubber.clean(_pairs_to_dict(pairs))
        if self.body is not None:
            out["body"] = scrub_body(
                self.body, self.content_type, self.monitor, self.options.max_body_bytes
            )
        return out


def scrub_headers(headers: Iterable[tuple[str, str]], monitor: Hub) -> dict[str, Any]:
    scrubber = monitor.scrubber
    out: dict[str, Any] = {}
    for count, (name, value) in enumerate(headers):
        if count >= MAX_HEADERS:
            out["[truncated]"] = "more headers"
            break
        key = name.lower()
        if key in SENSITIVE_HEADERS or scrubber.is_sensitive(key.replace("-", "_")):
            out[key] = FILTERED
        else:
            out[key] = scrubber.text(value, 512)
    return out


def wants_body(options: WebOptions, method: str, content_type: str, length: int | None) -> bool:
    """Capture this body? Only when asked, for small JSON / form / text bodies."""
    return (
        options.capture_body
        and method in ("POST", "PUT", "PATCH", "DELETE")
        and content_type.lower().startswith(_BODY_TYPES)
        and length is not None
        and 0 < length <= options.max_body_bytes
    )


def scrub_body(body: bytes, content_type: str, monitor: Hub, limit: int) -> Any:
    scrubber = monitor.scrubber
    kind = content_type.lower()
    text = body[:limit].decode("utf-8", "replace")
    if kind.startswith("application/json"):
        try:
            return scrubber.clean(json.loads(text))
        except ValueError:
            pass
    elif kind.startswith("application/x-www-form-urlencoded"):
        pairs = parse_qsl(text, keep_blank_values=True)[:MAX_QUERY_ITEMS]
        return scrubber.clean(_pairs_to_dict(pairs))
    return scrubber.text(text, limit)


def _pairs_to_dict(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            existing = out[key]
            out[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[key] = value
    return out


def int_or_none(value: Any) -> int | None:
    """A header or environ number (Content-Length), or None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
