"""wsgi_app and asgi_app mounted inside real Flask, Django, Starlette and FastAPI apps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from exporter import ErrorMonitor, asgi_app, wsgi_app

TOKEN = "mount-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def monitor(make_monitor: Any) -> ErrorMonitor:
    monitor = make_monitor(api_token=TOKEN)
    for i in range(3):
        try:
            raise ValueError(f"mounted {i}")
        except ValueError as exc:
            monitor.record_error(exc, component="web", plugin="shop")
    assert monitor.flush(5.0)
    return monitor


def check_mounted_answers(get: Any) -> None:
    """The same checks for every framework; ``get(path, headers) -> (status, headers, body)``."""
    status, headers, body = get("/monitor/api/v1/statistics", AUTH)
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["total_errors"] == 3
    status, _, body = get("/monitor/api/v1/statistics", {})
    assert status == 401 and json.loads(body)["status"] == 401
    status, _, body = get("/monitor/api/v1/export?limit=2", AUTH)
    export = json.loads(body)
    assert status == 200 and len(export["all_records"]) == 2 and export["next_cursor"] == 2
    status, _, body = get("/monitor/api/v1/nope", AUTH)
    assert status == 404 and json.loads(body)["status"] == 404
    status, headers, body = get("/monitor/metrics", {})
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b'app_errors_total{component="web"' in body
    status, _, body = get("/monitor/", {})
    assert status == 200 and b'href="/monitor/metrics"' in body
    status, _, body = get("/monitor/api/v1/openapi.json", AUTH)
    assert json.loads(body)["servers"] == [{"url": "/monitor"}]


def test_flask_with_dispatcher_middleware(monitor: ErrorMonitor) -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    app = Flask("host_app")

    @app.get("/")
    def index() -> str:
        return "host app"

    app.wsgi_app = DispatcherMiddleware(
        app.wsgi_app,  # type: ignore[method-assign]
        {"/monitor": wsgi_app(monitor)},
    )
    client = app.test_client()

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        response = client.get(path, headers=headers)
        return (
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.get_data(),
        )

    check_mounted_answers(get)
    assert client.get("/").get_data() == b"host app"


# -- Django: a catch-all view hands the request to the WSGI app -----------------------------


def monitor_view(request: Any, rest: str = "") -> Any:
    """What a Django project writes to serve the monitor under /monitor/."""
    from django.http import HttpResponse

    environ = dict(request.META)
    environ["SCRIPT_NAME"] = request.META.get("SCRIPT_NAME", "") + "/monitor"
    environ["PATH_INFO"] = ("/" + rest).encode("utf-8").decode("latin-1")
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = int(status[:3]), headers

    body = b"".join(DJANGO_APP["app"](environ, start_response))
    response = HttpResponse(body, status=started["status"])
    for name, value in started["headers"]:
        response[name] = value
    return response


DJANGO_APP: dict[str, Any] = {}


def _urlpatterns() -> list[Any]:
    from django.urls import re_path

    return [re_path(r"^monitor/(?P<rest>.*)$", monitor_view)]


urlpatterns: list[Any] = []


@pytest.fixture
def django_client(monitor: ErrorMonitor) -> Iterator[Any]:
    import django
    from django.conf import settings
    from django.test import Client
    from django.test.utils import override_settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    urlpatterns[:] = _urlpatterns()
    DJANGO_APP["app"] = wsgi_app(monitor)
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
        yield Client()
    DJANGO_APP.clear()


def test_django_catch_all_view(django_client: Any) -> None:
    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        response = django_client.get(path, headers=headers)
        return (
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    check_mounted_answers(get)


# -- ASGI: Starlette and FastAPI ------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient")
def test_starlette_mount_with_testclient(monitor: ErrorMonitor) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    app = Starlette(routes=[Route("/", home), Mount("/monitor", app=asgi_app(monitor))])
    with TestClient(app) as client:

        def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            response = client.get(path, headers=headers)
            return response.status_code, dict(response.headers), response.content

        check_mounted_answers(get)
        assert client.get("/").text == "host app"


def test_fastapi_mount_with_httpx_asgi_transport(monitor: ErrorMonitor) -> None:
    import httpx
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    app.mount("/monitor", asgi_app(monitor))

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers: dict[tuple[str, bool], tuple[int, dict[str, str], bytes]] = {}
            for path in (
                "/monitor/api/v1/statistics",
                "/monitor/api/v1/export?limit=2",
                "/monitor/api/v1/nope",
                "/monitor/metrics",
                "/monitor/",
                "/monitor/api/v1/openapi.json",
            ):
                for with_auth in (True, False):
                    response = await client.get(path, headers=AUTH if with_auth else {})
                    answers[(path, with_auth)] = (
                        response.status_code,
                        dict(response.headers),
                        response.content,
                    )
            # the event loop keeps serving while the monitor is read in worker threads
            results = await asyncio.gather(
                *(client.get("/ping") for _ in range(5)),
                client.get("/monitor/api/v1/export", headers=AUTH),
            )
            assert all(r.status_code == 200 for r in results)
            assert len(results[-1].json()["all_records"]) == 3

        def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            return answers[(path, bool(headers))]

        check_mounted_answers(get)

    asyncio.run(run())


def test_asgi_app_alone_handles_lifespan_and_methods(monitor: ErrorMonitor) -> None:
    app = asgi_app(monitor)
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "lifespan"}, receive, send)
        scope = {
            "type": "http",
            "method": "DELETE",
            "path": "/metrics",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "http_version": "1.1",
        }
        await app(scope, receive, send)

    asyncio.run(run())
    assert [m["type"] for m in sent[:2]] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert sent[2]["status"] == 405
    assert (b"allow", b"GET, HEAD") in sent[2]["headers"]
    assert json.loads(b"".join(m.get("body", b"") for m in sent[3:]))["status"] == 405
