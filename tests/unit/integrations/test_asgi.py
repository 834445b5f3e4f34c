"""ASGI middleware with real Starlette and FastAPI apps (starlette TestClient): the route
template from ``scope["route"].path`` as operation, timing, request id and scrubbing."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from exporter import ErrorMonitor
from exporter.integrations.asgi import AsgiMiddleware
from exporter.integrations.web import current_request_id

REPO = Path(__file__).resolve().parents[3]
SECRET = "s3cr3t-value-789"


def op_counts(monitor: ErrorMonitor) -> dict[tuple[str, str], float]:
    return {
        (s.labels["operation"], s.labels["outcome"]): s.value
        for m in monitor.registry.collect()
        for s in m.samples
        if s.name == "app_operation_duration_seconds_count"
    }


def groups(monitor: ErrorMonitor) -> list[dict[str, Any]]:
    monitor.flush()
    return monitor.list_groups()


def detail(monitor: ErrorMonitor, operation: str) -> dict[str, Any]:
    [group] = [g for g in groups(monitor) if g["operation"] == operation]
    found = monitor.get_group(group["error_id"])
    assert found is not None
    return found


def starlette_app(monitor: ErrorMonitor, **options: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Mount, Route

    async def item(request: Any) -> Any:
        item_id = int(request.path_params["item_id"])
        return JSONResponse({"item": {1: "apple"}[item_id], "rid": current_request_id()})

    def sync_item(request: Any) -> Any:  # runs in a thread: the request id follows it
        if request.path_params["item_id"] != "1":
            raise LookupError("no such item")
        return PlainTextResponse(str(current_request_id()))

    async def order(request: Any) -> Any:
        body = await request.json()
        raise ValueError(f"cannot order {body.get('sku')}")

    async def busy(request: Any) -> Any:
        return PlainTextResponse("later", status_code=503)

    async def user(request: Any) -> Any:
        return PlainTextResponse(request.path_params["name"])

    app = Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/sync/{item_id}", sync_item),
            Route("/orders", order, methods=["POST"]),
            Route("/busy", busy),
            Mount("/admin", routes=[Route("/users/{name}", user)]),
        ]
    )
    app.add_middleware(AsgiMiddleware, monitor=monitor, **options)
    return app


def test_starlette_route_template_timing_and_request_id(monitor: ErrorMonitor) -> None:
    client = TestClient(starlette_app(monitor), raise_server_exceptions=False)
    ok = client.get("/items/1", headers={"X-Request-ID": "st-1"})
    assert ok.json() == {"item": "apple", "rid": "st-1"}
    assert ok.headers["X-Request-ID"] == "st-1"
    for item_id in (5, 6, 7):
        assert client.get(f"/items/{item_id}").status_code == 500
    assert client.get("/sync/1", headers={"X-Request-ID": "th-1"}).text == "th-1"
    assert client.get("/sync/2").status_code == 500
    found = detail(monitor, "GET /items/{item_id}")
    assert found["group"]["occurrence_count"] == 3
    assert found["group"]["component"] == "http"
    assert found["report"]["mechanism"] == "asgi"
    assert detail(monitor, "GET /sync/{item_id}")["group"]["error_type"] == "LookupError"
    assert op_counts(monitor) == {
        ("GET /items/{item_id}", "ok"): 1,
        ("GET /items/{item_id}", "error"): 3,
        ("GET /sync/{item_id}", "ok"): 1,
        ("GET /sync/{item_id}", "error"): 1,
    }
    ended = monitor.sessions.ended
    assert (ended["exited"], ended["crashed"]) == (2, 4)


def test_starlette_404_mount_and_5xx(monitor: ErrorMonitor) -> None:
    client = TestClient(starlette_app(monitor), raise_server_exceptions=False)
    assert client.get("/nothing/42").status_code == 404
    assert client.get("/admin/users/1").status_code == 200
    assert client.get("/busy").status_code == 503
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/busy").headers["X-Request-ID"])
    assert op_counts(monitor) == {
        ("GET", "ok"): 1,
        ("GET /users/{name}", "ok"): 1,
        ("GET /busy", "error"): 2,
    }
    assert groups(monitor) == []


def test_starlette_body_and_headers_scrubbed(monitor: ErrorMonitor) -> None:
    client = TestClient(starlette_app(monitor, capture_body=True), raise_server_exceptions=False)
    response = client.post(
        f"/orders?api_key={SECRET}",
        json={"sku": "B2", "password": SECRET},
        headers={"Authorization": f"Bearer {SECRET}", "Cookie": f"session={SECRET}"},
    )
    assert response.status_code == 500
    request = detail(monitor, "POST /orders")["report"]["context"]["request"]
    assert request["body"] == {"sku": "B2", "password": "[Filtered]"}
    assert request["query"] == {"api_key": "[Filtered]"}
    assert request["headers"]["authorization"] == "[Filtered]"
    assert request["headers"]["cookie"] == "[Filtered]"
    assert SECRET not in json.dumps(monitor.export_data())


def test_wrapping_the_whole_app_puts_the_request_id_on_500(monitor: ErrorMonitor) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def boom(request: Any) -> Any:
        raise RuntimeError("boom")

    app = AsgiMiddleware(Starlette(routes=[Route("/boom/{n}", boom)]), monitor)
    response = TestClient(app, raise_server_exceptions=False).get(
        "/boom/1", headers={"X-Request-ID": "outer-1"}
    )
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "outer-1"
    assert [g["operation"] for g in groups(monitor)] == ["GET /boom/{n}"]
    assert op_counts(monitor) == {("GET /boom/{n}", "error"): 1}


@pytest.mark.parametrize("kind", ["default", "sync handler", "async handler", "debug", "fastapi"])
def test_add_middleware_puts_the_request_id_on_500_too(monitor: ErrorMonitor, kind: str) -> None:
    """As the WSGI middleware (and Flask, Django) do: every answer carries X-Request-ID,
    including the 500 Starlette renders outside the middlewares added with add_middleware."""
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    calls: list[str] = []

    async def boom(request: Any) -> Any:
        raise RuntimeError("boom")

    def sync_handler(request: Any, exc: Exception) -> Any:
        calls.append("sync")
        return PlainTextResponse("our own 500 page", status_code=500)

    async def async_handler(request: Any, exc: Exception) -> Any:
        calls.append("async")
        return PlainTextResponse("our own 500 page", status_code=500)

    handlers = {"sync handler": {500: sync_handler}, "async handler": {Exception: async_handler}}
    if kind == "fastapi":
        app: Any = FastAPI()

        @app.get("/boom/{n}")
        async def boom_api(n: int) -> None:
            raise RuntimeError(f"boom {n}")
    else:
        app = Starlette(
            routes=[Route("/boom/{n}", boom)],
            debug=kind == "debug",
            exception_handlers=handlers.get(kind, {}),
        )
    app.add_middleware(AsgiMiddleware, monitor=monitor)
    client = TestClient(app, raise_server_exceptions=False)
    for n in (1, 2):
        response = client.get(f"/boom/{n}", headers={"X-Request-ID": f"boom-{n}"})
        assert response.status_code == 500
        assert response.headers["X-Request-ID"] == f"boom-{n}"
        if "handler" in kind:
            assert response.text == "our own 500 page"
        elif kind == "debug":
            assert "RuntimeError" in response.text
        else:
            assert response.text == "Internal Server Error"
    generated = client.get("/boom/3")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    assert calls == ([kind.split()[0]] * 3 if "handler" in kind else [])  # once per error
    assert op_counts(monitor) == {("GET /boom/{n}", "error"): 3}
    [group] = groups(monitor)
    assert group["occurrence_count"] == 3


def test_other_scope_types_pass_through(monitor: ErrorMonitor) -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = AsgiMiddleware(app, monitor)
    for kind in ("lifespan", "websocket"):
        asyncio.run(middleware({"type": kind}, None, None))
    assert seen == ["lifespan", "websocket"]
    assert op_counts(monitor) == {}


def fastapi_app(monitor: ErrorMonitor) -> Any:
    from fastapi import APIRouter, FastAPI

    app = FastAPI()
    router = APIRouter(prefix="/v2")

    @router.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        raise ZeroDivisionError(f"order {order_id} divided by zero")

    @app.get("/items/{item_id}")
    def get_item(item_id: int) -> dict[str, str]:
        return {"item": {1: "apple"}[item_id]}

    app.include_router(router)
    app.add_middleware(AsgiMiddleware, monitor=monitor, component="api")
    return app


def test_fastapi_route_templates(monitor: ErrorMonitor) -> None:
    client = TestClient(fastapi_app(monitor), raise_server_exceptions=False)
    assert client.get("/items/1").json() == {"item": "apple"}
    assert client.get("/items/9").status_code == 500
    assert client.get("/v2/orders/12").status_code == 500
    assert client.get("/items/not-a-number").status_code == 422
    assert sorted((g["operation"], g["component"]) for g in groups(monitor)) == [
        ("GET /items/{item_id}", "api"),
        ("GET /v2/orders/{order_id}", "api"),
    ]
    assert op_counts(monitor) == {
        ("GET /items/{item_id}", "ok"): 2,
        ("GET /items/{item_id}", "error"): 1,
        ("GET /v2/orders/{order_id}", "error"): 1,
    }


def test_fastapi_example_app() -> None:
    code = (
        "import json\n"
        "from starlette.testclient import TestClient\n"
        "from fastapi_app import app, monitor\n"
        "c = TestClient(app, raise_server_exceptions=False)\n"
        "codes = [c.get('/items/1').status_code, c.get('/items/42').status_code,\n"
        "         c.post('/orders', json={'quantity': 0, 'password': 1}).status_code]\n"
        "monitor.flush()\n"
        "metrics = c.get('/monitor/metrics').text\n"
        "report = monitor.get_group([g for g in monitor.list_groups()\n"
        "                            if g['operation'] == 'POST /orders'][0]['error_id'])\n"
        "print(json.dumps({'codes': codes, 'groups': monitor.list_groups(),\n"
        "  'body': report['report']['context']['request']['body'],\n"
        "  'ops': [l for l in metrics.splitlines()\n"
        "          if l.startswith('app_operation_duration_seconds_count')]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO / "examples",
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [200, 500, 500]
    assert sorted(g["operation"] for g in result["groups"]) == [
        "GET /items/{item_id}",
        "POST /orders",
    ]
    assert result["body"] == {"quantity": 0, "password": "[Filtered]"}
    assert not any("/monitor" in line for line in result["ops"])  # scrapes are not timed


@pytest.mark.parametrize("bad", ["", "has space", "<script>", "x" * 129])
def test_unusable_request_ids_are_replaced(monitor: ErrorMonitor, bad: str) -> None:
    client = TestClient(starlette_app(monitor), raise_server_exceptions=False)
    response = client.get("/items/1", headers={"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
