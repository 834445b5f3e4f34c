"""Django middleware with a real Django app (django.test.Client): the route template from
``request.resolver_match.route`` as operation, timing, request id and scrubbing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter import ErrorMonitor

REPO = Path(__file__).resolve().parents[3]
SECRET = "s3cr3t-value-456"
MIDDLEWARE = "exporter.integrations.django.DjangoMiddleware"


def get_item(request: Any, item_id: int) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"item": {1: "apple"}[item_id]})


def create_order(request: Any) -> Any:
    raise ValueError(f"orders are closed ({len(request.body)} bytes)")


def unavailable(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("later", status=503)


def _urlpatterns() -> list[Any]:
    from django.urls import include, path

    api = [path("items/<int:item_id>/", get_item), path("orders/", create_order)]
    return [path("api/v1/", include(api)), path("busy/", unavailable)]


urlpatterns: list[Any] = []


@pytest.fixture
def client_for(monitor: ErrorMonitor) -> Iterator[Any]:
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
    overrides: list[Any] = []

    def make(**options: Any) -> Any:
        override = override_settings(
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["testserver"],
            MIDDLEWARE=[MIDDLEWARE],
            ERROR_EXPORTER={"monitor": monitor, **options},
        )
        override.enable()
        overrides.append(override)
        return Client(raise_request_exception=False)

    yield make
    for override in reversed(overrides):
        override.disable()


def op_counts(monitor: ErrorMonitor) -> dict[tuple[str, str], float]:
    return {
        (s.labels["operation"], s.labels["outcome"]): s.value
        for m in monitor.registry.collect()
        for s in m.samples
        if s.name == "app_operation_duration_seconds_count"
    }


def only_group(monitor: ErrorMonitor) -> dict[str, Any]:
    monitor.flush()
    [summary] = monitor.list_groups()
    found = monitor.get_group(summary["error_id"])
    assert found is not None
    return found


def test_view_error_recorded_with_the_route_template(
    client_for: Any, monitor: ErrorMonitor
) -> None:
    client = client_for()
    assert client.get("/api/v1/items/1/").json() == {"item": "apple"}
    for item in (2, 3):
        response = client.get(f"/api/v1/items/{item}/", headers={"X-Request-ID": f"dj-{item}"})
        assert response.status_code == 500
        assert response["X-Request-ID"] == f"dj-{item}"
    group = only_group(monitor)
    assert group["group"]["operation"] == "GET /api/v1/items/<int:item_id>/"
    assert group["group"]["error_type"] == "KeyError"
    assert group["group"]["occurrence_count"] == 2
    assert group["report"]["mechanism"] == "django"
    assert [o["context"]["request"]["request_id"] for o in group["occurrences"]] == ["dj-2", "dj-3"]
    assert op_counts(monitor) == {
        ("GET /api/v1/items/<int:item_id>/", "ok"): 1,
        ("GET /api/v1/items/<int:item_id>/", "error"): 2,
    }
    ended = monitor.sessions.ended
    assert (ended["exited"], ended["crashed"]) == (1, 2)


def test_unresolved_paths_and_5xx(client_for: Any, monitor: ErrorMonitor) -> None:
    client = client_for()
    assert client.get("/no/such/9/").status_code == 404
    assert client.get("/busy/").status_code == 503
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/busy/")["X-Request-ID"])
    assert op_counts(monitor) == {("GET", "ok"): 1, ("GET /busy/", "error"): 2}
    monitor.flush()
    assert monitor.list_groups() == []


def test_headers_and_body_scrubbed(client_for: Any, monitor: ErrorMonitor) -> None:
    client = client_for(capture_body=True)
    client.cookies["sessionid"] = SECRET
    body = json.dumps({"sku": "A1", "password": SECRET})
    response = client.post(
        f"/api/v1/orders/?token={SECRET}&page=1",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET},
    )
    assert response.status_code == 500
    report = only_group(monitor)["report"]
    request = report["context"]["request"]
    assert request["route"] == "/api/v1/orders/"
    assert request["headers"]["authorization"] == "[Filtered]"
    assert request["headers"]["cookie"] == "[Filtered]"
    assert request["headers"]["x-api-key"] == "[Filtered]"
    assert request["query"] == {"token": "[Filtered]", "page": "1"}
    assert request["body"] == {"sku": "A1", "password": "[Filtered]"}
    assert report["error_message"] == f"orders are closed ({len(body)} bytes)"
    assert SECRET not in json.dumps(monitor.export_data())


def test_django_example_app() -> None:
    code = (
        "import json\n"
        "from django_app import application, monitor\n"
        "from django.test import Client\n"
        "monitor.start()\n"
        "c = Client(raise_request_exception=False)\n"
        "codes = [c.get('/items/1/').status_code, c.get('/items/42/').status_code,\n"
        "         c.post('/orders/').status_code]\n"
        "monitor.flush()\n"
        "print(json.dumps({'codes': codes, 'groups': monitor.list_groups()}))\n"
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
        "GET /items/<int:item_id>/",
        "POST /orders/",
    ]
