"""WSGI middleware and the Flask integration: route templates as operation, timing, request id,
breadcrumbs, sessions and scrubbing, with a plain WSGI app and real Flask apps."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from exporter import ErrorMonitor
from exporter.integrations.wsgi import WsgiMiddleware, current_request_id, instrument_flask

REPO = Path(__file__).resolve().parents[3]
SECRET = "s3cr3t-value-123"


def samples(monitor: ErrorMonitor, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value) for m in monitor.registry.collect() for s in m.samples if s.name == name
    ]


def op_counts(monitor: ErrorMonitor) -> dict[tuple[str, str], float]:
    """(operation, outcome) -> requests timed, for component http."""
    out: dict[tuple[str, str], float] = {}
    for labels, value in samples(monitor, "app_operation_duration_seconds_count"):
        if labels["component"] == "http":
            out[(labels["operation"], labels["outcome"])] = value
    return out


def error_total(monitor: ErrorMonitor) -> float:
    return sum(v for _, v in samples(monitor, "app_errors_total"))


def only_group(monitor: ErrorMonitor) -> dict[str, Any]:
    monitor.flush()
    groups = monitor.list_groups()
    assert len(groups) == 1, groups
    found = monitor.get_group(groups[0]["error_id"])
    assert found is not None
    return found


# -- a plain WSGI app ------------------------------------------------------------------------
def plain_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path.startswith("/users/"):
        raise LookupError(f"no user {path.rsplit('/', 1)[-1]}")
    if path == "/stream":
        return _stream(start_response)
    if path == "/whoami":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(current_request_id()).encode()]
    if path == "/fail-softly":
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"down"]
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        raise ValueError(f"rejected {len(body)} bytes")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _stream(start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk"
    raise RuntimeError("stream broke")


def route_of(environ: dict[str, Any]) -> str | None:
    path = environ["PATH_INFO"]
    if path.startswith("/users/"):
        return "/users/<id>"
    return path if path in ("/", "/stream", "/whoami", "/fail-softly", "/echo") else None


@pytest.fixture
def plain(monitor: ErrorMonitor) -> Client:
    return Client(WsgiMiddleware(plain_app, monitor, route=route_of))


def test_unhandled_error_is_recorded_with_the_route_template(
    plain: Client, monitor: ErrorMonitor
) -> None:
    for user in ("1", "2", "3"):
        with pytest.raises(LookupError):
            plain.get(f"/users/{user}")
    group = only_group(monitor)
    assert group["group"]["operation"] == "GET /users/<id>"
    assert group["group"]["component"] == "http"
    assert group["group"]["occurrence_count"] == 3
    assert group["report"]["mechanism"] == "wsgi"
    assert error_total(monitor) == 3
    assert op_counts(monitor) == {("GET /users/<id>", "error"): 3}
    # raw paths never become label values
    operations = [
        labels["operation"]
        for labels, _ in samples(monitor, "app_operation_duration_seconds_count")
    ]
    assert operations == ["GET /users/<id>"]


def test_unmatched_routes_fall_back_to_the_method(plain: Client, monitor: ErrorMonitor) -> None:
    assert plain.get("/no/such/page/4711").status_code == 200  # the app says ok
    plain.open("/no/such/page", method="BREW")
    assert op_counts(monitor) == {("GET", "ok"): 1, ("OTHER", "ok"): 1}


def test_every_request_is_timed_and_5xx_is_an_error_outcome(
    plain: Client, monitor: ErrorMonitor
) -> None:
    plain.get("/")
    plain.get("/")
    assert plain.get("/fail-softly").status_code == 503
    assert op_counts(monitor) == {("GET /", "ok"): 2, ("GET /fail-softly", "error"): 1}
    assert error_total(monitor) == 0  # a 503 the app chose is timed, not an exception


def test_errors_while_streaming_are_recorded(plain: Client, monitor: ErrorMonitor) -> None:
    with pytest.raises(RuntimeError):
        response = plain.get("/stream")
        response.get_data()
    group = only_group(monitor)
    assert group["group"]["operation"] == "GET /stream"
    assert op_counts(monitor) == {("GET /stream", "error"): 1}


def test_request_id_is_kept_echoed_and_in_the_report(plain: Client, monitor: ErrorMonitor) -> None:
    response = plain.get("/whoami", headers={"X-Request-ID": "req-42.abc"})
    assert response.headers["X-Request-ID"] == "req-42.abc"
    assert response.get_data(as_text=True) == "req-42.abc"
    generated = plain.get("/whoami")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    assert generated.get_data(as_text=True) == generated.headers["X-Request-ID"]
    hostile = plain.get("/whoami", headers={"X-Request-ID": "x" * 500})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])
    with pytest.raises(LookupError):
        plain.get("/users/9", headers={"X-Request-ID": "trace-9"})
    assert current_request_id() is None  # nothing leaks out of the request
    report = only_group(monitor)["report"]
    assert report["context"]["request"]["request_id"] == "trace-9"
    crumbs = [b for b in report["breadcrumbs"] if b["category"] == "http"]
    assert crumbs and crumbs[-1]["data"]["request_id"] == "trace-9"
    assert crumbs[-1]["action"] == "GET /users/9"


def test_headers_query_and_body_are_scrubbed(monitor: ErrorMonitor) -> None:
    client = Client(WsgiMiddleware(plain_app, monitor, route=route_of, capture_body=True))
    body = json.dumps({"user": "ann", "password": SECRET, "card": {"token": SECRET}})
    client.set_cookie("sid", SECRET)
    with pytest.raises(ValueError):
        client.post(
            f"/echo?page=2&api_key={SECRET}",
            data=body,
            content_type="application/json",
            headers={
                "Authorization": f"Bearer {SECRET}",
                "X-Api-Key": SECRET,
                "User-Agent": "pytest",
            },
        )
    report = only_group(monitor)["report"]
    request = report["context"]["request"]
    assert request["headers"]["authorization"] == "[Filtered]"
    assert request["headers"]["cookie"] == "[Filtered]"
    assert request["headers"]["x-api-key"] == "[Filtered]"
    assert request["headers"]["user-agent"] == "pytest"
    assert request["query"] == {"page": "2", "api_key": "[Filtered]"}
    assert request["body"] == {
        "user": "ann",
        "password": "[Filtered]",
        "card": {"token": "[Filtered]"},
    }
    assert report["error_message"] == f"rejected {len(body)} bytes"  # the app read it all
    assert SECRET not in json.dumps(monitor.export_data())


def test_bodies_are_not_captured_unless_asked(plain: Client, monitor: ErrorMonitor) -> None:
    with pytest.raises(ValueError):
        plain.post("/echo", data='{"a": 1}', content_type="application/json")
    assert "body" not in only_group(monitor)["report"]["context"]["request"]


def test_each_request_is_a_session(plain: Client, monitor: ErrorMonitor) -> None:
    plain.get("/")
    with pytest.raises(LookupError):
        plain.get("/users/1")
    ended = monitor.sessions.ended
    assert (ended["exited"], ended["crashed"]) == (1, 1)
    assert monitor.sessions.active_count == 1  # only the process session is left


def test_sessions_can_be_switched_off(monitor: ErrorMonitor) -> None:
    client = Client(WsgiMiddleware(plain_app, monitor, route=route_of, sessions=False))
    with pytest.raises(LookupError):
        client.get("/users/1")
    assert sum(monitor.sessions.ended.values()) == 0
    assert only_group(monitor)["report"]["handled"] is True


# -- Flask -------------------------------------------------------------------------------------
def make_flask(monitor: ErrorMonitor, **options: Any) -> Any:
    from flask import Flask, jsonify, request

    app = Flask("flask_under_test")
    items = {1: "apple"}

    @app.get("/items/<int:item_id>")
    def get_item(item_id: int) -> Any:
        return jsonify(item=items[item_id], request_id=current_request_id())

    @app.post("/orders")
    def create_order() -> Any:
        order = request.get_json()
        raise ValueError(f"cannot order {order.get('sku')}")

    instrument_flask(app, monitor, **options)
    return app


def test_flask_view_error_recorded_with_url_rule(monitor: ErrorMonitor) -> None:
    client = make_flask(monitor).test_client()
    assert client.get("/items/1").json["item"] == "apple"
    for item in (7, 8):
        response = client.get(f"/items/{item}", headers={"X-Request-ID": f"r{item}"})
        response.get_data()  # as a server would: the request ends when its body is out
        assert response.status_code == 500
        assert response.headers["X-Request-ID"] == f"r{item}"
    group = only_group(monitor)
    assert group["group"]["operation"] == "GET /items/<int:item_id>"
    assert group["group"]["error_type"] == "KeyError"
    assert group["group"]["occurrence_count"] == 2
    assert group["report"]["mechanism"] == "flask"
    assert error_total(monitor) == 2
    assert op_counts(monitor) == {
        ("GET /items/<int:item_id>", "ok"): 1,
        ("GET /items/<int:item_id>", "error"): 2,
    }


def test_flask_error_recorded_in_a_view_carries_the_route(monitor: ErrorMonitor) -> None:
    from flask import request_started

    app = make_flask(monitor)

    @app.get("/orders/<int:order_id>/check")
    def check(order_id: int) -> str:
        try:
            raise ValueError(f"order {order_id} is odd")
        except ValueError as exc:
            monitor.record_error(exc)
        return "checked"

    # the route is read where Flask keeps it, when needed: no handler for every request
    assert not request_started.receivers
    client = app.test_client()
    assert client.get("/orders/3/check").get_data() == b"checked"
    group = only_group(monitor)
    assert group["group"]["operation"] == "GET /orders/<int:order_id>/check"
    assert group["report"]["context"]["request"]["route"] == "/orders/<int:order_id>/check"
    assert op_counts(monitor) == {("GET /orders/<int:order_id>/check", "ok"): 1}


def test_flask_propagating_exceptions_are_counted_once(monitor: ErrorMonitor) -> None:
    app = make_flask(monitor)
    app.testing = True  # Flask re-raises: both the signal and the middleware see it
    with pytest.raises(KeyError):
        app.test_client().get("/items/5")
    assert error_total(monitor) == 1
    assert only_group(monitor)["group"]["operation"] == "GET /items/<int:item_id>"


def test_flask_404_is_the_method_only(monitor: ErrorMonitor) -> None:
    client = make_flask(monitor).test_client()
    response = client.get("/nothing/here")
    response.get_data()
    assert response.status_code == 404
    assert op_counts(monitor) == {("GET", "ok"): 1}


def test_flask_body_scrubbed(monitor: ErrorMonitor) -> None:
    client = make_flask(monitor, capture_body=True).test_client()
    response = client.post(
        "/orders",
        json={"sku": "A1", "password": SECRET},
        headers={"Authorization": f"Basic {SECRET}"},
    )
    response.get_data()
    assert response.status_code == 500
    request = only_group(monitor)["report"]["context"]["request"]
    assert request["route"] == "/orders"
    assert request["body"] == {"sku": "A1", "password": "[Filtered]"}
    assert request["headers"]["authorization"] == "[Filtered]"


def run_example(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter next to the examples; it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO / "examples",
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_flask_example_app() -> None:
    result = run_example(
        "import json\n"
        "from flask_app import app, monitor\n"
        "c = app.test_client()\n"
        "ok = c.get('/items/1').status_code\n"
        "bad = c.get('/items/42')\n"
        "metrics = c.get('/monitor/metrics').get_data(as_text=True)\n"
        "monitor.flush()\n"
        "print(json.dumps({'ok': ok, 'bad': bad.status_code,\n"
        "  'rid': bad.headers.get('X-Request-ID'), 'groups': monitor.list_groups(),\n"
        "  'metrics': [l for l in metrics.splitlines() if l.startswith('app_errors_total')]}))\n"
    )
    assert (result["ok"], result["bad"]) == (200, 500)
    assert result["rid"]
    [group] = result["groups"]
    assert group["operation"] == "GET /items/<int:item_id>"
    assert result["metrics"] == [
        'app_errors_total{component="http",error_type="KeyError",plugin="",severity="medium"} 1.0'
    ]


def test_plain_wsgi_example_app() -> None:
    result = run_example(
        "import json\n"
        "from werkzeug.test import Client\n"
        "from wsgi_app import app, monitor\n"
        "c = Client(app)\n"
        "hello = c.get('/')\n"
        "for kind in ('value', 'key', 'zero'):\n"
        "    try:\n"
        "        c.get('/boom/' + kind)\n"
        "    except Exception:\n"
        "        pass\n"
        "monitor.flush()\n"
        "export = c.get('/monitor/api/v1/export').json\n"
        "print(json.dumps({'hello': hello.status_code, 'pid': hello.headers.get('X-Worker-Pid'),\n"
        "  'ops': sorted({r['operation'] for r in export['all_records']}),\n"
        "  'types': sorted(r['error_type'] for r in export['all_records'])}))\n"
    )
    assert result["hello"] == 200 and result["pid"]
    assert result["ops"] == ["GET /boom/<kind>"]
    assert result["types"] == ["KeyError", "ValueError", "ZeroDivisionError"]
