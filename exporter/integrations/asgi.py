"""ASGI middleware (Starlette, FastAPI, any ASGI 3 app).

::

    from exporter.integrations.asgi import AsgiMiddleware
    app.add_middleware(AsgiMiddleware, monitor=monitor)     # Starlette / FastAPI
    app = AsgiMiddleware(app, monitor)                      # any ASGI app

The route template is Starlette's ``scope["route"].path`` (``/items/{item_id}``), which the
router stores in the scope it shares with the middleware (inside a ``Mount``, the inner
route's path, relative to the mount); an app can also set ``scope["error_exporter.route"]``
itself. Added with ``add_middleware`` the middleware sits
inside Starlette's error middleware: it sees the exception, and Starlette still answers 500.
Wrapping the whole app instead also puts ``X-Request-ID`` on those 500 answers.

See :mod:`exporter.integrations.web` for what is recorded for each request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from . import is_not_an_error
from .web import (
    MonitoredApp,
    RequestScope,
    WebOptions,
    clean_request_id,
    current_request_id,
    wants_body,
)

if TYPE_CHECKING:
    from ..monitor import ErrorMonitor

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
        monitor: ErrorMonitor | None = None,
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
        self.options = WebOptions(component, plugin, sessions, capture_body, max_body_bytes,
                                  request_id_header)
        self._header = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = list(scope.get("headers") or ())
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]
        given = next((v for k, v in headers if k.lower().encode("latin-1") == self._header), None)
        request = RequestScope(
            self.monitor, self.options, str(scope.get("method") or "GET"),
            str(scope.get("path") or "/"),
            bytes(scope.get("query_string") or b"").decode("latin-1"), headers,
            clean_request_id(given),
        )
        scope[SCOPE_KEY] = request
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        if wants_body(self.options, request.method, content_type, _int(length)):
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


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
