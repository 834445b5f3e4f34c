"""ASGI middleware (Starlette, FastAPI, any ASGI 3 app).

::

    from exporter.integrations.asgi import AsgiMiddleware
    app.add_middleware(AsgiMiddleware, monitor=monitor)     # Starlette / FastAPI
    app = AsgiMiddleware(app, monitor)                      # any ASGI app

The route template is Starlette's ``scope["route"].path`` (``/items/{item_id}``), which the
router stores in the scope it shares with the middleware (inside a ``Mount``, the inner
route's path, relative to the mount); an app can also set ``scope["error_exporter.route"]``
itself. Added with ``add_middleware`` the middleware sits
inside Starlette's error middleware: it sees the exception, and Starlette still answers 500
(its default page, the app's own 500 handler, or the debug page), with ``X-Request-ID`` as
every other answer: the middleware wraps that error middleware's handler once so the 500 it
renders carries the request's id. Wrapping the whole app (``AsgiMiddleware(app, monitor)``)
works too.

See :mod:`exporter.integrations.web` for what is recorded for each request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

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

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
SCOPE_KEY = "error_exporter.request"
ROUTE_KEY = "error_exporter.route"

__all__ = ["AsgiMiddleware", "current_request_id", "route_template"]


class AsgiMiddleware(MonitoredApp):
    """Records a request's unhandled error and times every HTTP request."""

    def __init__(
        self,
        app: AsgiApp,
        monitor: Hub | None = None,
        *,
        component: str = "http",
        plugin: str = "",
        sessions: bool = True,
        capture_body: bool = False,
        max_body_bytes: int = 4096,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self._monitor = monitor
        self.options = WebOptions(
            component, plugin, sessions, capture_body, max_body_bytes, request_id_header
        )
        self._header = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = scope.get("headers") or ()
        given = traceparent = length = None
        content_type = ""
        wanted = self._header
        for raw_name, raw_value in raw_headers:  # one pass; the rest are decoded on error
            name = bytes(raw_name).lower()
            if name == wanted:
                given = bytes(raw_value).decode("latin-1")
            elif name == b"traceparent":
                traceparent = bytes(raw_value).decode("latin-1")
            elif name == b"content-type":
                content_type = bytes(raw_value).decode("latin-1")
            elif name == b"content-length":
                length = bytes(raw_value).decode("latin-1")
        request = RequestScope(
            self.monitor,
            self.options,
            str(scope.get("method") or "GET"),
            str(scope.get("path") or "/"),
            bytes(scope.get("query_string") or b"").decode("latin-1"),
            lambda: [
                (bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in raw_headers
            ],
            clean_request_id(given),
            traceparent,
        )
        scope[SCOPE_KEY] = request
        if wants_body(self.options, request.method, content_type, int_or_none(length)):
            request.content_type = content_type
            receive = _teeing(receive, request, self.options.max_body_bytes)
        status: list[int | None] = [None]
        header_name = self._header
        request_id = request.request_id.encode("latin-1")

        async def wrapped_send(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status") or 0) or None
                sent = list(message.get("headers") or ())
                if not any(bytes(k).lower() == header_name for k, _ in sent):
                    message = {**message, "headers": [*sent, (header_name, request_id)]}
            await send(message)

        _label_server_errors(scope.get("app"), self.options.request_id_header)
        request.begin()
        try:
            await self.app(scope, receive, wrapped_send)
        except BaseException as exc:
            request.route = request.route or route_template(scope)
            if not is_not_an_error(exc) and not isinstance(exc, asyncio.CancelledError):
                request.fail(exc, "asgi")
            request.finish(status[0])
            raise
        request.route = request.route or route_template(scope)
        request.finish(status[0])


def _label_server_errors(app: Any, header: str) -> None:
    """Put the request id on the 500 answer of Starlette's ``ServerErrorMiddleware``.

    Starlette renders that answer outside every middleware added with ``add_middleware``, so
    our ``send`` never sees it. Its renderers (the app's 500 handler or the default page, and
    the debug page) are wrapped once, on the app's own error middleware instance; each is still
    called once, as before, and the id comes from the request's scope.
    """
    errors = getattr(app, "middleware_stack", None)
    if (
        errors is None
        or getattr(errors, "_error_exporter_ids", False)
        or not all(hasattr(errors, a) for a in ("handler", "debug_response", "error_response"))
    ):
        return
    handler = errors.handler
    is_async = handler is not None and (
        asyncio.iscoroutinefunction(handler) or asyncio.iscoroutinefunction(type(handler).__call__)
    )

    async def render(request: Any, exc: Exception) -> Any:
        if handler is None:
            response = errors.error_response(request, exc)
        elif is_async:
            response = await handler(request, exc)
        else:
            from starlette.concurrency import run_in_threadpool

            response = await run_in_threadpool(handler, request, exc)
        return _with_request_id(response, request, header)

    debug_response = errors.debug_response

    def debug(request: Any, exc: Exception) -> Any:
        return _with_request_id(debug_response(request, exc), request, header)

    errors.handler, errors.debug_response = render, debug
    errors._error_exporter_ids = True


def _with_request_id(response: Any, request: Any, header: str) -> Any:
    scope = getattr(request, "scope", None) or {}
    monitored = scope.get(SCOPE_KEY)
    headers = getattr(response, "headers", None)
    if monitored is not None and headers is not None and header not in headers:
        headers[header] = monitored.request_id
    return response


def route_template(scope: Scope) -> str | None:
    """The matched route's path template (Starlette / FastAPI), never the raw path."""
    explicit = scope.get(ROUTE_KEY)
    if isinstance(explicit, str) and explicit:
        return explicit
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else None


def _teeing(receive: Receive, request: RequestScope, limit: int) -> Receive:
    """``receive`` that keeps the first ``limit`` bytes of the body for the error report."""
    chunks: list[bytes] = []
    size = [0]

    async def wrapped() -> Message:
        message = await receive()
        if message.get("type") == "http.request" and size[0] < limit:
            body = bytes(message.get("body") or b"")[: limit - size[0]]
            chunks.append(body)
            size[0] += len(body)
            request.body = b"".join(chunks)
        return message

    return wrapped
