"""A plain WSGI app (no framework) monitored by error-exporter: the gunicorn example.

    PROMETHEUS_MULTIPROC_DIR=/tmp/error-exporter-mp \
        gunicorn -c examples/gunicorn_conf.py --chdir examples wsgi_app:app

Routes (every response says which worker answered in ``X-Worker-Pid``):

    GET /                   hello
    GET /boom/<kind>        raises: kind = value | key | zero; ?delay=SECONDS (<= 1) first
    GET /monitor/metrics    the monitor: metrics of every worker (multiprocess mode)
    GET /monitor/api/v1/... the monitor's JSON API (export, errors, ...)

``WsgiMiddleware`` records the unhandled errors with the route template (``GET /boom/<kind>``)
as operation, times every request and keeps the request id; ``route_of`` tells it the
template, because a plain WSGI app has no router it could ask.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from exporter import get_error_monitor, wsgi_app
from exporter.integrations.wsgi import WsgiMiddleware, mount

monitor = get_error_monitor(app_version="wsgi-example-1.0").start()

StartResponse = Callable[..., Any]


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _text(start_response, "200 OK", "hello\n")


def boom(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    kind = environ["PATH_INFO"].rsplit("/", 1)[-1]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    delay = min(float(query.get("delay", ["0"])[0] or 0), 1.0)
    if delay > 0:
        time.sleep(delay)
    if kind == "value":
        raise ValueError("bad value from the example app")
    if kind == "key":
        settings: dict[str, str] = {}
        return [settings["missing"].encode()]  # KeyError
    if kind == "zero":
        return [str(1 / 0).encode()]
    return _text(start_response, "404 Not Found", f"no such kind {kind!r}\n")


def route_of(environ: dict[str, Any]) -> str | None:
    """The route template of a request (a bounded set), for the ``operation`` label."""
    path = environ.get("PATH_INFO", "")
    if path == "/":
        return "/"
    if path.startswith("/boom/"):
        return "/boom/<kind>"
    return None


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    def with_pid(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("X-Worker-Pid", str(os.getpid()))], exc_info)

    route = route_of(environ)
    if route == "/":
        return hello(environ, with_pid)
    if route == "/boom/<kind>":
        return boom(environ, with_pid)
    return _text(with_pid, "404 Not Found", "not found\n")


def _text(start_response: StartResponse, status: str, body: str) -> Iterable[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def _monitor_routes(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    def with_pid(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("X-Worker-Pid", str(os.getpid()))], exc_info)

    return wsgi_app(monitor)(environ, with_pid)


app = mount(WsgiMiddleware(application, monitor, route=route_of), _monitor_routes, "/monitor")

if __name__ == "__main__":  # single process: python examples/wsgi_app.py
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", 8000, app) as server:
        print("serving on http://127.0.0.1:8000 (try /boom/value, /monitor/metrics)")
        server.serve_forever()
