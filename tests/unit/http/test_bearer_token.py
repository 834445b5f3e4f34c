"""Bearer-token protection: every /api route, /metrics only with protect_metrics."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import pytest
from werkzeug.test import Client

from exporter import ErrorMonitor, wsgi_app

TOKEN = "s3cret-tok\u00e9n"  # non-ASCII on purpose: compared as UTF-8 bytes
RIGHT = {"Authorization": "Bearer " + TOKEN.encode("utf-8").decode("latin-1")}


def api_paths(monitor: ErrorMonitor) -> list[str]:
    try:
        raise ValueError("x")
    except ValueError as exc:
        error_id = monitor.record_error(exc, plugin="p1")
    return [
        "/api/v1/statistics",
        "/api/v1/analysis",
        "/api/v1/errors",
        f"/api/v1/errors/{error_id}",
        "/api/v1/patterns",
        "/api/v1/plugins/p1/health",
        "/api/v1/export",
        "/api/v1/openapi.json",
    ]


@pytest.fixture
def secured(make_monitor: Any) -> tuple[ErrorMonitor, Client]:
    monitor = make_monitor(api_token=TOKEN)
    return monitor, Client(wsgi_app(monitor))


def assert_401(response: Any) -> dict[str, Any]:
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body: dict[str, Any] = json.loads(response.get_data())
    assert body["status"] == 401 and body["error"]
    return body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic " + TOKEN},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer " + TOKEN[:-1]},
        {"Authorization": "Bearer \u00ff\u00fe"},
    ],
)
def test_every_api_route_rejects_missing_or_wrong_tokens(
    secured: tuple[ErrorMonitor, Client], headers: dict[str, str]
) -> None:
    monitor, client = secured
    for path in api_paths(monitor):
        body = assert_401(client.get(path, headers=headers))
        assert TOKEN not in json.dumps(body)


def test_every_api_route_accepts_the_right_token(secured: tuple[ErrorMonitor, Client]) -> None:
    monitor, client = secured
    for path in api_paths(monitor):
        response = client.get(path, headers=RIGHT)
        assert response.status_code == 200, path
        json.loads(response.get_data())
    lower = {"Authorization": "bearer " + RIGHT["Authorization"].split(" ", 1)[1]}
    assert client.get("/api/v1/statistics", headers=lower).status_code == 200


def test_auth_is_checked_before_query_validation(secured: tuple[ErrorMonitor, Client]) -> None:
    _, client = secured
    assert_401(client.get("/api/v1/export?limit=0"))
    assert client.get("/api/v1/export?limit=0", headers=RIGHT).status_code == 400


def test_public_routes_stay_public(secured: tuple[ErrorMonitor, Client]) -> None:
    _, client = secured
    for path in ("/", "/healthz", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_metrics_protected_only_with_protect_metrics(make_monitor: Any) -> None:
    client = Client(wsgi_app(make_monitor(api_token=TOKEN, protect_metrics=True)))
    assert_401(client.get("/metrics"))
    assert_401(client.get("/metrics", headers={"Authorization": "Bearer nope"}))
    assert client.get("/metrics", headers=RIGHT).status_code == 200
    assert client.get("/healthz").status_code == 200
    # protect_metrics without a token protects nothing (there is nothing to compare with)
    open_client = Client(wsgi_app(make_monitor(protect_metrics=True)))
    assert open_client.get("/metrics").status_code == 200


def test_no_token_configured_means_no_auth(make_monitor: Any) -> None:
    monitor = make_monitor()
    client = Client(wsgi_app(monitor))
    for path in api_paths(monitor):
        assert client.get(path).status_code == 200, path


def test_token_from_the_environment(monkeypatch: pytest.MonkeyPatch, make_monitor: Any) -> None:
    monkeypatch.setenv("ERROR_EXPORTER_API_TOKEN", "from-env")
    client = Client(wsgi_app(make_monitor()))
    assert_401(client.get("/api/v1/statistics"))
    ok = client.get("/api/v1/statistics", headers={"Authorization": "Bearer from-env"})
    assert ok.status_code == 200


def test_tokens_are_compared_in_constant_time(
    secured: tuple[ErrorMonitor, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = secured
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    client.get("/api/v1/statistics", headers={"Authorization": "Bearer wrong"})
    client.get("/api/v1/statistics", headers=RIGHT)
    assert len(calls) == 2
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_tokens_never_reach_the_logs(
    secured: tuple[ErrorMonitor, Client], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = secured
    with caplog.at_level(logging.DEBUG):
        client.get("/api/v1/statistics", headers=RIGHT)
        client.get("/api/v1/statistics", headers={"Authorization": "Bearer guess-123"})
        client.get("/metrics", headers=RIGHT)
    assert any(r.name == "exporter.http" for r in caplog.records)
    assert TOKEN not in caplog.text and "guess-123" not in caplog.text
