"""ASGI adapter: the same WSGI routes, run in worker threads, for Starlette/FastAPI mounts.

Reading the monitor takes locks and may wait briefly for the worker to settle, so the WSGI
call runs through ``asyncio.to_thread`` and never blocks the event loop; streamed bodies are
pulled chunk by chunk the same way. No web framework is imported.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from exporter.http.app import WsgiApp, make_wsgi_app
from exporter.store.read_protocol import ErrorReader

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_END = object()


def asgi_app(monitor: ErrorReader, wsgi: WsgiApp | None = None) -> AsgiApp:
    """An ASGI 3 app serving the monitor's routes (``app.mount("/monitor", asgi_app(m))``)."""
    app = wsgi if wsgi is not None else make_wsgi_app(monitor)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "http":
            await _http(app, scope, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    return application


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _http(app: WsgiApp, scope: Scope, send: Send) -> None:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
        ]
        return _no_write

    body = await asyncio.to_thread(app, environ_from_scope(scope), start_response)
    try:
        await send(
            {
                "type": "http.response.start",
                "status": started["status"],
                "headers": started["headers"],
            }
        )
        if isinstance(body, list):  # a plain body: no thread hops needed
            for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            iterator: Iterator[bytes] = iter(body)
            while True:
                chunk = await asyncio.to_thread(next, iterator, _END)
                if chunk is _END:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def _no_write(data: bytes) -> None:
    raise NotImplementedError("this app returns its body; write() is not supported")


def environ_from_scope(scope: Scope) -> dict[str, Any]:
    """A PEP 3333 environ for an ASGI HTTP scope (paths re-encoded as latin-1 strings)."""
    root = str(scope.get("root_path") or "")
    path = str(scope.get("path") or "/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": str(scope.get("method", "GET")).upper(),
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": bytes(scope.get("query_string") or b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": str(scope.get("scheme", "http")),
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    _add_headers(environ, scope.get("headers") or ())
    return environ


def _add_headers(environ: dict[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> None:
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
