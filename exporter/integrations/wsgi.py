"""WSGI middleware, and the Flask and Django integrations built on the same request scope.

Plain WSGI::

    from exporter.integrations.wsgi import WsgiMiddleware
    app = WsgiMiddleware(app, monitor, route=lambda environ: ...)   # route: optional

Flask (frameworks turn a view's exception into a 500 themselves, so the integration also
listens to Flask's ``got_request_exception``)::

    from exporter.integrations.wsgi import instrument_flask
    instrument_flask(app, monitor)

Django: add ``"exporter.integrations.wsgi.DjangoMiddleware"`` first in ``MIDDLEWARE``;
options go in ``settings.ERROR_EXPORTER`` (a dict of :class:`~.web.WebOptions` fields plus
an optional ``"monitor"``).

See :mod:`exporter.integrations.web` for what is recorded for each request.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import Hub, is_not_an_error
from .web import (
    MonitoredApp,
    RequestScope,
    WebOptions,
    clean_request_id,
    current_request_id,
    method_name,
    wants_body,
)

SCOPE_KEY = "error_exporter.request"
ROUTE_KEY = "error_exporter.route"  # a framework adapter may put the route template here
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
RouteResolver = Callable[[dict[str, Any]], "str | None"]

__all__ = ["DjangoMiddleware", "WsgiMiddleware", "current_request_id", "instrument_flask",
           "mount"]


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
        self.options = WebOptions(component, plugin, sessions, capture_body, max_body_bytes,
                                  request_id_header)
        self._header_key = "HTTP_" + request_id_header.upper().replace("-", "_")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        scope = RequestScope(
            self.monitor, self.options, str(environ.get("REQUEST_METHOD") or "GET"),
            _path(environ), str(environ.get("QUERY_STRING") or ""), _headers(environ),
            clean_request_id(environ.get(self._header_key)),
        )
        environ[SCOPE_KEY] = scope
        self._capture_body(scope, environ)
        status: list[int | None] = [None]
        header = self.options.request_id_header

        def wrapped_start_response(status_line: str, headers: list[tuple[str, str]],
                                   exc_info: Any = None) -> Any:
            try:
                status[0] = int(status_line.split(" ", 1)[0])
            except ValueError:
                status[0] = None
            if not any(name.lower() == header.lower() for name, _ in headers):
                headers = [*headers, (header, scope.request_id)]
            if exc_info is not None:
                return start_response(status_line, headers, exc_info)
            return start_response(status_line, headers)

        scope.begin()
        try:
            result = self.app(environ, wrapped_start_response)
        except BaseException as exc:
            self._resolve_route(scope, environ)
            if not is_not_an_error(exc):
                scope.fail(exc, "wsgi")
            scope.finish(status[0])
            raise
        if isinstance(result, (list, tuple)):  # already complete: nothing left to time
            self._resolve_route(scope, environ)
            scope.finish(status[0])
            return result
        return _Response(result, self, scope, environ, status)

    def _resolve_route(self, scope: RequestScope, environ: dict[str, Any]) -> None:
        if scope.route is not None:
            return
        try:
            route = self.route(environ) if self.route is not None else None
            scope.route = route or environ.get(ROUTE_KEY) or _werkzeug_route(environ)
        except Exception:
            self.monitor.note_internal_error()

    def _capture_body(self, scope: RequestScope, environ: dict[str, Any]) -> None:
        content_type = str(environ.get("CONTENT_TYPE") or "")
        if not wants_body(self.options, scope.method, content_type,
                          _int(environ.get("CONTENT_LENGTH"))):
            return
        try:
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        except Exception:
            self.monitor.note_internal_error()
            return
        environ["wsgi.input"] = io.BytesIO(body)  # the app reads what we read
        scope.body, scope.content_type = body, content_type


class _Response:
    """The app's response iterable: errors while streaming count; timing ends when the body is
    out (or at close(), if that comes first)."""

    def __init__(self, result: Iterable[bytes], middleware: WsgiMiddleware, scope: RequestScope,
                 environ: dict[str, Any], status: list[int | None]) -> None:
        self.result = result
        self.middleware = middleware
        self.scope = scope
        self.environ = environ
        self.status = status
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.result
        except BaseException as exc:
            if not is_not_an_error(exc):
                self.middleware._resolve_route(self.scope, self.environ)
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
            self._finish()

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self.middleware._resolve_route(self.scope, self.environ)
            self.scope.finish(self.status[0])


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
            environ["PATH_INFO"] = path[len(prefix):] or "/"
            return routes(environ, start_response)
        return app(environ, start_response)

    return dispatch


# -- Flask -------------------------------------------------------------------------------------
def instrument_flask(app: Any, monitor: Hub | None = None, **options: Any
                     ) -> WsgiMiddleware:
    """Wrap ``app.wsgi_app`` and record view errors with ``request.url_rule.rule``."""
    from flask import got_request_exception, request, request_started

    middleware = WsgiMiddleware(app.wsgi_app, monitor, **options)
    app.wsgi_app = middleware

    def on_started(sender: Any, **extra: Any) -> None:
        # Flask has matched the URL; it clears environ["werkzeug.request"] when it is done
        scope = request.environ.get(SCOPE_KEY)
        rule = request.url_rule
        if scope is not None and rule is not None:
            scope.route = rule.rule

    def on_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
        scope = request.environ.get(SCOPE_KEY)
        if scope is None or is_not_an_error(exception):
            return
        rule = request.url_rule
        scope.route = rule.rule if rule is not None else None
        scope.fail(exception, "flask")

    request_started.connect(on_started, app, weak=False)
    got_request_exception.connect(on_exception, app, weak=False)
    app.extensions["error_exporter"] = middleware
    return middleware


def _werkzeug_route(environ: dict[str, Any]) -> str | None:
    """The matched rule of a Werkzeug / Flask request, if the app made one."""
    request = environ.get("werkzeug.request")
    rule = getattr(request, "url_rule", None)
    text = getattr(rule, "rule", None)
    return text if isinstance(text, str) else None


# -- Django ------------------------------------------------------------------------------------
class DjangoMiddleware(MonitoredApp):
    """Django middleware: put it first in ``MIDDLEWARE``."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings

        options = dict(getattr(settings, "ERROR_EXPORTER", None) or {})
        self._monitor: Hub | None = options.pop("monitor", None)
        self.options = WebOptions(**options)
        self.get_response = get_response
        self._meta_key = "HTTP_" + self.options.request_id_header.upper().replace("-", "_")

    def __call__(self, request: Any) -> Any:
        meta = request.META
        scope = RequestScope(
            self.monitor, self.options, str(request.method or "GET"), str(request.path),
            str(meta.get("QUERY_STRING") or ""), list(request.headers.items()),
            clean_request_id(meta.get(self._meta_key)),
        )
        request.error_exporter = scope
        content_type = str(meta.get("CONTENT_TYPE") or "")
        if wants_body(self.options, method_name(request.method or ""), content_type,
                      _int(meta.get("CONTENT_LENGTH"))):
            try:
                scope.body, scope.content_type = bytes(request.body), content_type
            except Exception:
                self.monitor.note_internal_error()
        scope.begin()
        try:
            response = self.get_response(request)
        except BaseException as exc:
            scope.route = scope.route or _django_route(request)
            if not is_not_an_error(exc):
                scope.fail(exc, "django")
            scope.finish(None)
            raise
        scope.route = scope.route or _django_route(request)
        scope.finish(int(response.status_code))
        header = self.options.request_id_header
        if not response.has_header(header):
            response[header] = scope.request_id
        return response

    def process_exception(self, request: Any, exception: BaseException) -> None:
        scope = getattr(request, "error_exporter", None)
        if scope is not None and not is_not_an_error(exception):
            scope.route = _django_route(request)
            scope.fail(exception, "django")
        return None  # Django goes on turning it into its 500 response


def _django_route(request: Any) -> str | None:
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if not isinstance(route, str) or not route:
        return None
    return route if route.startswith("/") else "/" + route


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


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
