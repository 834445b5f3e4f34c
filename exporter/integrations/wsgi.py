"""WSGI middleware (Flask's and Django's integrations, in ``flask.py`` and ``django.py``,
build on the same request scope).

Plain WSGI::

    from exporter.integrations.wsgi import WsgiMiddleware
    app = WsgiMiddleware(app, monitor, route=lambda environ: ...)   # route: optional

Flask (frameworks turn a view's exception into a 500 themselves, so the integration also
listens to Flask's ``got_request_exception``)::

    from exporter.integrations.flask import instrument_flask
    instrument_flask(app, monitor)

Django: add ``"exporter.integrations.django.DjangoMiddleware"`` first in ``MIDDLEWARE``;
options go in ``settings.ERROR_EXPORTER`` (a dict of :class:`~.web.WebOptions` fields plus
an optional ``"monitor"``).

See :mod:`exporter.integrations.web` for what is recorded for each request.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from exporter.capture.ids import new_id
from exporter.integrations import Hub, is_not_an_error
from exporter.integrations.web import (
    MonitoredApp,
    RequestScope,
    WebOptions,
    clean_request_id,
    current_request_id,
    int_or_none,
    wants_body,
)

SCOPE_KEY = "error_exporter.request"
ROUTE_KEY = "error_exporter.route"  # a framework adapter may put the route template here
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
RouteResolver = Callable[[dict[str, Any]], "str | None"]

__all__ = ["WsgiMiddleware", "current_request_id", "mount"]


def __getattr__(name: str) -> Any:
    """``DjangoMiddleware`` and ``instrument_flask`` live in their own modules now; the old
    paths (``exporter.integrations.wsgi.DjangoMiddleware``) keep working."""
    if name == "DjangoMiddleware":
        from exporter.integrations.django import DjangoMiddleware

        return DjangoMiddleware
    if name == "instrument_flask":
        from exporter.integrations.flask import instrument_flask

        return instrument_flask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WsgiMiddleware(MonitoredApp):
    """Records a request's unhandled error and times every request (see module doc)."""

    def __init__(
        self,
        app: WsgiApp,
        monitor: Hub | None = None,
        *,
        route: RouteResolver | None = None,
        component: str = "http",
        plugin: str = "",
        sessions: bool = True,
        capture_body: bool = False,
        max_body_bytes: int = 4096,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self._monitor = monitor
        self.route = route
        self.options = WebOptions(
            component, plugin, sessions, capture_body, max_body_bytes, request_id_header
        )
        self._header_key = "HTTP_" + request_id_header.upper().replace("-", "_")
        self._header_lower = request_id_header.lower()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        scope = _WsgiRequest(self, environ, start_response)
        environ[SCOPE_KEY] = scope
        if self.options.capture_body:
            self._capture_body(scope, environ)
        scope.begin()
        try:
            result = self.app(environ, scope.start_response)
        except BaseException as exc:
            if not is_not_an_error(exc):
                scope.fail(exc, "wsgi")
            scope.finish(scope.status)
            raise
        if isinstance(result, (list, tuple)):  # already complete: nothing left to time
            scope.finish(scope.status)
            return result
        return _Response(result, scope)

    def _route_of(self, environ: dict[str, Any]) -> str | None:
        route = self.route(environ) if self.route is not None else None
        if route:
            return route
        route = environ.get(ROUTE_KEY)
        if route:
            return str(route)
        # else the matched rule of a Werkzeug / Flask request, if the app made one
        rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
        text = getattr(rule, "rule", None)
        return text if isinstance(text, str) else None

    def _capture_body(self, scope: RequestScope, environ: dict[str, Any]) -> None:
        content_type = str(environ.get("CONTENT_TYPE") or "")
        if not wants_body(
            self.options, scope.method, content_type, int_or_none(environ.get("CONTENT_LENGTH"))
        ):
            return
        try:
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        except Exception:
            self.monitor.note_internal_error()
            return
        environ["wsgi.input"] = io.BytesIO(body)  # the app reads what we read
        scope.body, scope.content_type = body, content_type


class _WsgiRequest(RequestScope):
    """A WSGI request: its route and headers read from the environ when first needed (the
    route at the latest when the response starts: a framework such as Flask clears its
    request object once the app returns)."""

    status: int | None = None

    def __init__(
        self, middleware: WsgiMiddleware, environ: dict[str, Any], start_response: StartResponse
    ) -> None:
        request_id = environ.get(middleware._header_key)
        super().__init__(
            middleware._monitor or middleware.monitor,
            middleware.options,
            str(environ.get("REQUEST_METHOD") or "GET"),
            None,  # path and query: read when first needed (only a report or a breadcrumb)
            None,
            None,
            clean_request_id(request_id) if request_id else new_id(),
            environ.get("HTTP_TRACEPARENT"),
        )
        self.middleware = middleware
        self.environ = environ
        self._start_response = start_response

    @functools.cached_property
    def path(self) -> str:  # type: ignore[override]  # set once, by this, never written
        return _path(self.environ)

    @functools.cached_property
    def query(self) -> str:  # type: ignore[override]  # as the path
        return str(self.environ.get("QUERY_STRING") or "")

    def find_route(self) -> str | None:
        return self.middleware._route_of(self.environ)

    def header_pairs(self) -> list[tuple[str, str]]:
        return _headers(self.environ)

    def start_response(
        self, status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        try:
            self.status = int(status_line[:3])
        except ValueError:
            self.status = None
        if self._route is None:  # read now, while the framework still has its request
            try:
                self._route = self.middleware._route_of(self.environ)
            except Exception:
                self.monitor.note_internal_error()
        lowered = self.middleware._header_lower
        for name, _ in headers:
            if name.lower() == lowered:
                break
        else:
            headers = [*headers, (self.options.request_id_header, self.request_id)]
        if exc_info is not None:
            return self._start_response(status_line, headers, exc_info)
        return self._start_response(status_line, headers)


class _Response:
    """The app's response iterable: errors while streaming count; timing ends when the body is
    out (or at close(), if that comes first)."""

    def __init__(self, result: Iterable[bytes], scope: _WsgiRequest) -> None:
        self.result = result
        self.scope = scope
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.result
        except BaseException as exc:
            if not is_not_an_error(exc):
                self.scope.fail(exc, "wsgi")
            self._finish()  # not every server closes a response that failed midway
            raise
        self._finish()  # the body is out; test clients may never call close()

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            if not self.done:
                self._finish()

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self.scope.finish(self.scope.status)


def mount(app: WsgiApp, routes: WsgiApp, prefix: str = "/monitor") -> WsgiApp:
    """``app`` with ``routes`` (e.g. ``exporter.wsgi_app(monitor)``) answering under ``prefix``.

    Requests under the prefix bypass ``app`` and its middleware: scrapes are not timed as
    application requests.
    """
    prefix = "/" + prefix.strip("/")

    def dispatch(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        if path == prefix or path.startswith(prefix + "/"):
            environ["SCRIPT_NAME"] = str(environ.get("SCRIPT_NAME") or "") + prefix
            environ["PATH_INFO"] = path[len(prefix) :] or "/"
            return routes(environ, start_response)
        return app(environ, start_response)

    return dispatch


# -- helpers -----------------------------------------------------------------------------------
def _path(environ: dict[str, Any]) -> str:
    raw = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "")
    try:
        return raw.encode("latin-1").decode("utf-8") or "/"
    except UnicodeError:
        return raw or "/"


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").title(), str(value)))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            out.append((key.replace("_", "-").title(), str(value)))
    return out
