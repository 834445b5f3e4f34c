"""The WSGI application: path sanity, routing, method, auth, then the handler.

Every answer, including every error, is JSON with a status the client can act on (404 for
unknown or traversing paths, 405 with ``Allow``, 401 with ``WWW-Authenticate``, 400 naming the
parameter); a bug in a handler becomes a logged, counted 500, never a traceback on stderr.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from exporter.http.access import AUTHENTICATED
from exporter.http.params import ParamError, Query
from exporter.http.responses import (
    GZIP_MIN_BYTES,
    JSON_TYPE,
    Response,
    accepts_gzip,
    error_response,
    gzip_body,
    gzip_stream,
)
from exporter.http.routes import Request, Route, match
from exporter.store.read_protocol import ErrorReader, NotSupported

log = logging.getLogger("exporter.http")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_wsgi_app(monitor: ErrorReader) -> WsgiApp:
    """The monitor's routes as one WSGI app, mountable anywhere (SCRIPT_NAME aware)."""
    return MonitorApp(monitor)


class MonitorApp:
    """Callable WSGI app bound to one monitor."""

    def __init__(self, monitor: ErrorReader) -> None:
        self.monitor = monitor
        self._warned = False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        try:
            response = self.dispatch(environ, method)
        except ParamError as exc:
            response = error_response(400, str(exc), **exc.details())
        except NotSupported as exc:
            response = error_response(501, str(exc))
        except Exception as exc:
            response = self._internal_error(exc)
        return self._finish(response, environ, method, start_response)

    def dispatch(self, environ: dict[str, Any], method: str) -> Response:
        path = _clean_path(str(environ.get("PATH_INFO") or ""))
        if path is None:
            return error_response(400, "the request path is not valid UTF-8 (bad percent-encoding)")
        found = match(path) if _is_safe(path) else None
        if found is None:
            return error_response(404, f"no route for {_short(path)}; see / for the routes")
        route, path_params = found
        if method not in route.methods:
            allow = ", ".join(route.methods)
            return error_response(
                405,
                f"method {_short(method)} is not allowed on {path}; use {allow}",
                [("Allow", allow)],
                allowed=list(route.methods),
            )
        denied = self._check_token(route, environ)
        if denied is not None:
            return denied
        request = Request(
            environ,
            method,
            path,
            Query(str(environ.get("QUERY_STRING") or "")),
            str(environ.get("SCRIPT_NAME") or ""),
            path_params,
        )
        return route.handler(self.monitor, request)

    def _check_token(self, route: Route, environ: dict[str, Any]) -> Response | None:
        config = self.monitor.config
        token = config.api_token
        if route.access == "write" and not token:
            return error_response(
                403,
                "this route changes the monitor's state, so it is "
                "closed while no api_token is configured; set api_token "
                "(ERROR_EXPORTER_API_TOKEN) and send it as a bearer token",
            )
        if not token or route.access == "public":
            return None
        if environ.get(AUTHENTICATED) is True:  # admitted by the server's basic auth gate
            return None
        if route.access == "metrics" and not config.protect_metrics:
            return None
        header = str(environ.get("HTTP_AUTHORIZATION") or "")
        scheme, _, supplied = header.strip().partition(" ")
        given = supplied.strip().encode("latin-1", "replace")
        ok = hmac.compare_digest(given, str(token).encode("utf-8"))
        if ok and scheme.lower() == "bearer":
            return None
        challenge = 'Bearer realm="error-exporter"'
        if header:
            challenge += ', error="invalid_token"'
            message = "the bearer token is wrong"
        else:
            message = "this route needs an Authorization: Bearer <token> header"
        return error_response(401, message, [("WWW-Authenticate", challenge)])

    def _internal_error(self, exc: Exception) -> Response:
        # WARNING once (it may reach stderr through logging's last resort), then DEBUG
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "error-exporter HTTP handler failed: %r", exc, exc_info=True)
        note = getattr(self.monitor, "note_internal_error", None)
        if note is not None:
            note(exc)
        return error_response(
            500,
            f"internal error ({type(exc).__name__}); "
            "counted in the monitor's internal error metric",
        )

    def _finish(
        self,
        response: Response,
        environ: dict[str, Any],
        method: str,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        headers = [("Content-Type", response.content_type), *response.headers]
        body = response.body
        names = {name.lower() for name, _ in response.headers}
        if response.content_type == JSON_TYPE and "content-encoding" not in names:
            headers.append(("Vary", "Accept-Encoding"))
            if accepts_gzip(str(environ.get("HTTP_ACCEPT_ENCODING") or "")):
                if isinstance(body, bytes) and len(body) >= GZIP_MIN_BYTES:
                    body = gzip_body(body)
                    headers.append(("Content-Encoding", "gzip"))
                elif not isinstance(body, bytes):
                    body = gzip_stream(body)
                    headers.append(("Content-Encoding", "gzip"))
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
        log.debug("%s %s -> %d", method, environ.get("PATH_INFO", ""), response.status)
        start_response(_status_line(response.status), headers)
        if method == "HEAD":
            _close(body)
            return [b""]
        if isinstance(body, bytes):
            return [body]
        return _guarded(body)


def _guarded(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Stream chunks; a failure after the headers went out can only end the body early."""
    try:
        yield from chunks
    except GeneratorExit:
        raise
    except Exception as exc:
        log.debug("error-exporter: streamed response failed midway: %r", exc, exc_info=True)
    finally:
        _close(chunks)


def _close(body: object) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _short(text: str, limit: int = 200) -> str:
    """repr() of client input, cut so an error body never echoes a huge request back."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _clean_path(raw: str) -> str | None:
    """PATH_INFO (latin-1 per PEP 3333) as text; None if its bytes are not UTF-8."""
    try:
        path = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    return path if path.startswith("/") else "/" + path


def _is_safe(path: str) -> bool:
    """No dot segments, no empty inner segments, no NUL: such paths never match a route."""
    segments = path.split("/")[1:]
    return "\x00" not in path and not any(
        seg in (".", "..") or (seg == "" and i < len(segments) - 1)
        for i, seg in enumerate(segments)
    )


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    501: "Not Implemented",
}


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Unknown')}"
