"""What every request and every start pays (issue 23), checked as behaviour, never as time.

- a request that never errors builds no session and lists no header; its session is still
  counted (``exited``) and its breadcrumb appears first in any session that an error or a
  breadcrumb of the request starts;
- request ids are unique without a random read per request, in a forked child too;
- a plain start imports none of what an unused feature needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support.fresh_python import run_python
from werkzeug.test import Client

from exporter.integrations.web import clean_request_id
from exporter.integrations.wsgi import WsgiMiddleware

REPO = Path(__file__).resolve().parents[3]


class CountedEnviron(dict):  # type: ignore[type-arg]
    """A WSGI environ that counts how often its headers are listed (``items()``)."""

    listed = 0

    def items(self):  # type: ignore[no-untyped-def]
        CountedEnviron.listed += 1
        return super().items()


def watch_starts(monitor: Any) -> list[str]:
    """The ids of the sessions the monitor's tracker starts from now on (the real start
    still runs: this only notes each call)."""
    started: list[str] = []
    tracker = monitor.sessions
    real = tracker.start

    def start(*args: Any, **kwargs: Any) -> str:
        session_id = real(*args, **kwargs)
        started.append(session_id)
        return session_id

    tracker.start = start
    return started


def app_that(action: Any) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        action()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def call(middleware: WsgiMiddleware, path: str = "/orders") -> list[bytes]:
    environ = CountedEnviron(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "SERVER_NAME": "test",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "HTTP_HOST": "test",
            "HTTP_USER_AGENT": "test",
            "HTTP_AUTHORIZATION": "Bearer secret-token",
        }
    )
    return list(middleware(environ, lambda status, headers, exc_info=None: None))


def test_a_request_that_never_errors_builds_no_session_and_lists_no_header(make_monitor):
    monitor = make_monitor()
    middleware = WsgiMiddleware(app_that(lambda: None), monitor)
    started = watch_starts(monitor)
    CountedEnviron.listed = 0
    for _ in range(50):
        assert call(middleware) == [b"ok"]
    assert started == []  # no session object was made
    assert monitor.sessions.ended["exited"] == 50  # and each was counted
    assert CountedEnviron.listed == 0  # the headers were never copied


def test_an_error_starts_the_requests_session_with_its_breadcrumb_first(make_monitor):
    monitor = make_monitor()
    began: list[float] = []

    def fail() -> None:
        began.append(time.time())
        time.sleep(0.01)
        monitor.add_breadcrumb("charged the card")
        try:
            raise ValueError("declined")
        except ValueError as exc:
            monitor.record_error(exc)

    middleware = WsgiMiddleware(app_that(fail), monitor)
    CountedEnviron.listed = 0
    call(middleware, "/checkout")
    assert monitor.flush(10)
    (group,) = monitor.list_groups()
    report = monitor.get_group(group["error_id"])["report"]
    crumbs = report["breadcrumbs"]
    assert [c["action"] for c in crumbs][:2] == ["GET /checkout", "charged the card"]
    assert crumbs[0]["timestamp_epoch"] <= began[0]  # stamped when the request began
    # a handled error says which request it happened in; the headers (and their scrubbing)
    # are for the request's own failure
    assert report["context"]["request"] == {
        "method": "GET",
        "route": None,
        "path": "/checkout",
        "request_id": report["context"]["request"]["request_id"],
    }
    assert CountedEnviron.listed == 0
    assert monitor.sessions.ended["errored"] == 1


def test_request_ids_are_unique_and_a_forked_child_draws_its_own():
    ids = {clean_request_id(None) for _ in range(20000)}
    assert len(ids) == 20000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, clean_request_id(None).encode())
        os._exit(0)
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    ours = clean_request_id(None)
    assert theirs[:16] != ours[:16]  # another prefix: two workers never share an id


def test_a_plain_start_imports_none_of_the_unused_features():
    """Nor psutil before its first reading (one interval after the start, or the first
    report's), nor the package metadata before a scrape, nor a subprocess run for the
    platform's name before the first report, nor OpenTelemetry before the app imports it (an
    error without it imports nothing)."""
    code = (
        "import sys, json\n"
        # a subprocess started at all (the audit event), not the module: on Python 3.10
        # prometheus_client's own import loads it (wsgiref -> platform -> subprocess)
        "spawned = []\n"
        "sys.addaudithook(lambda event, args: spawned.append(event) "
        "if event in ('subprocess.Popen', 'os.posix_spawn', 'os.fork') else None)\n"
        "import exporter\n"
        "UNUSED = ('yaml', 'psutil', 'sqlite3', 'asyncio', 'psycopg', 'opentelemetry')\n"
        "def loaded():\n"
        "    return sorted(m for m in sys.modules if m.split('.')[0] in UNUSED or "
        "m == 'importlib.metadata' or "
        "m.startswith(('exporter.store.durable', 'exporter.multiprocess', 'exporter.http')))\n"
        "monitor = exporter.ErrorMonitor(resource_check_interval=600).start(serve=False)\n"
        "started = loaded() + spawned\n"
        "monitor.config.enable_resource_monitoring = False\n"
        "monitor.record_error(ValueError('an error'))\n"
        "monitor.flush()\n"
        "print(json.dumps([started, loaded()]))\n"
        "monitor.stop()\n"
    )
    assert run_python(code) == [[], []]


def test_the_server_starts_without_yaml_or_asyncio():
    """YAML is read only for a web config file, asyncio only for the ASGI adapter."""
    code = (
        "import sys, json\n"
        "import exporter\n"
        "monitor = exporter.ErrorMonitor(port=0, enable_resource_monitoring=False).start()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('yaml', 'asyncio'))))\n"
        "monitor.stop()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_an_asgi_request_that_never_errors_builds_no_session(make_monitor):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from exporter.integrations.asgi import AsgiMiddleware

    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    monitor = make_monitor()
    app = AsgiMiddleware(Starlette(routes=[Route("/ok", ok)]), monitor)
    started = watch_starts(monitor)
    with TestClient(app) as client:
        for _ in range(10):
            response = client.get("/ok")
            assert response.status_code == 200 and response.headers["x-request-id"]
    assert started == []
    assert monitor.sessions.ended["exited"] == 10


def test_flask_request_ids_are_echoed(make_monitor):
    from flask import Flask

    from exporter.integrations.flask import instrument_flask

    flask_app = Flask("t")

    @flask_app.route("/ok")
    def ok() -> str:
        return "ok"

    monitor = make_monitor()
    instrument_flask(flask_app, monitor)
    client = Client(flask_app.wsgi_app)
    first = client.get("/ok").headers["X-Request-ID"]
    second = client.get("/ok").headers["X-Request-ID"]
    assert first and second and first != second
    assert client.get("/ok", headers={"X-Request-ID": "mine-1"}).headers["X-Request-ID"] == (
        "mine-1"
    )


def test_operation_timings_land_in_the_buckets_prometheus_would_choose(make_monitor):
    from prometheus_client import CollectorRegistry, Histogram

    from exporter.metrics.capture_path import OPERATION_BUCKETS

    monitor = make_monitor()
    reference = Histogram("ref", "ref", buckets=OPERATION_BUCKETS, registry=CollectorRegistry())
    values = [-1.0, 0.0, *OPERATION_BUCKETS, *(b * 1.5 for b in OPERATION_BUCKETS), 1e9]
    for value in values:
        monitor.observe_operation("http", "", "GET /x", True, value)
        reference.observe(max(value, 0.0))
    ours = {
        s.labels["le"]: s.value
        for m in monitor.registry.collect()
        for s in m.samples
        if s.name == "app_operation_duration_seconds_bucket" and s.labels["operation"] == "GET /x"
    }
    theirs = {
        s.labels["le"]: s.value for s in reference.collect()[0].samples if s.name == "ref_bucket"
    }
    assert ours == theirs
