"""Every route of the WSGI app, in process: status, content type, shape and the numbers.

Errors are recorded through a real monitor first, so the counts in the answers are known.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from datetime import datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client, TestResponse

from exporter import ErrorMonitor, wsgi_app
from exporter.http.openapi import build_openapi
from exporter.http.routes import FIXED

GROUP_KEYS = {
    "error_id",
    "error_type",
    "error_message",
    "severity",
    "priority",
    "component",
    "plugin",
    "operation",
    "file_path",
    "line_number",
    "function_name",
    "occurrence_count",
    "first_occurrence",
    "last_occurrence",
    "frequency_per_hour",
    "affected_users",
}
RECORD_KEYS = {
    "error_type",
    "message",
    "timestamp",
    "context",
    "plugin_id",
    "operation",
    "stack_trace",
    "error_id",
    "severity",
    "component",
    "user_id",
    "session_id",
}


def raise_and_record(monitor: ErrorMonitor, exc: BaseException, **kwargs: Any) -> str:
    try:
        raise exc
    except BaseException as caught:
        error_id = monitor.record_error(caught, **kwargs)
    assert error_id is not None
    return error_id


def strict_json(response: TestResponse) -> Any:
    """Parse a body as strict JSON (no NaN / Infinity)."""

    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(response.get_data(), parse_constant=reject)


@pytest.fixture
def populated(make_monitor: Any) -> tuple[ErrorMonitor, dict[str, str]]:
    """3 ValueErrors (db/p1, high), 2 KeyErrors (api/p2, medium), 1 OSError (low, bare)."""
    monitor = make_monitor(pattern_threshold=3)
    monitor.add_breadcrumb("clicked save", component="ui", data={"button": "save"})
    ids = {}
    for i in range(3):
        ids["value"] = raise_and_record(
            monitor,
            ValueError(f"bad value {i}"),
            component="db",
            plugin="p1",
            severity="high",
            user_id=f"u{i}",
        )
        time.sleep(0.002)
    for i in range(2):
        ids["key"] = raise_and_record(
            monitor, KeyError(f"k{i}"), component="api", plugin="p2", severity="medium"
        )
        time.sleep(0.002)
    ids["os"] = raise_and_record(monitor, OSError("disk"), severity="low")
    assert monitor.flush(5.0)
    return monitor, ids


@pytest.fixture
def client(populated: tuple[ErrorMonitor, dict[str, str]]) -> Client:
    return Client(wsgi_app(populated[0]))


def test_landing_page_links_every_route(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.get_data(as_text=True)
    for path in FIXED:
        if path != "/":
            assert f'href="{path}"' in page


def test_landing_page_links_are_relative_to_the_mount(client: Client) -> None:
    response = client.get("/", environ_overrides={"SCRIPT_NAME": "/monitor"})
    assert 'href="/monitor/metrics"' in response.get_data(as_text=True)


def test_healthz(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert strict_json(response) == {"status": "ok", "running": True, "queue_depth": 0}


def test_statistics_counts_what_was_recorded(client: Client) -> None:
    response = client.get("/api/v1/statistics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    stats = strict_json(response)
    assert stats["total_errors"] == 6
    assert stats["errors_by_severity"] == {"critical": 0, "high": 3, "medium": 2, "low": 1}
    assert stats["errors_by_component"] == {"db": 3, "api": 2, "": 1}
    assert stats["errors_by_type"] == {"ValueError": 3, "KeyError": 2, "OSError": 1}
    assert stats["unique_errors"] == 3
    for key in ("recovery_success_rate", "average_errors_per_hour", "queue_depth", "sessions"):
        assert key in stats


def test_analysis(client: Client, populated: tuple[ErrorMonitor, dict[str, str]]) -> None:
    _, ids = populated
    analysis = strict_json(client.get("/api/v1/analysis"))
    assert analysis["total_unique_errors"] == 3
    assert analysis["statistics"]["total_errors"] == 6
    top = analysis["top_errors"]
    assert [t["occurrence_count"] for t in top] == [3, 2, 1]
    assert top[0]["error_id"] == ids["value"]
    assert top[0]["report"]["error_type"] == "ValueError"
    for key in ("session_count", "patterns", "sessions", "recovery"):
        assert key in analysis


def test_errors_sorted_by_count_and_by_last_seen(
    client: Client, populated: tuple[ErrorMonitor, dict[str, str]]
) -> None:
    _, ids = populated
    by_count = strict_json(client.get("/api/v1/errors"))
    assert by_count["total"] == 3
    assert [g["occurrence_count"] for g in by_count["errors"]] == [3, 2, 1]
    assert set(by_count["errors"][0]) >= GROUP_KEYS
    assert by_count["errors"][0]["affected_users"] == 3
    by_time = strict_json(client.get("/api/v1/errors?sort=last_seen"))
    assert [g["error_id"] for g in by_time["errors"]] == [ids["os"], ids["key"], ids["value"]]
    limited = strict_json(client.get("/api/v1/errors?sort=count&limit=1"))
    assert limited["total"] == 3
    assert [g["error_id"] for g in limited["errors"]] == [ids["value"]]


def test_error_detail(client: Client, populated: tuple[ErrorMonitor, dict[str, str]]) -> None:
    _, ids = populated
    response = client.get(f"/api/v1/errors/{ids['value']}")
    assert response.status_code == 200
    detail = strict_json(response)
    assert set(detail) == {"group", "report", "occurrences"}
    assert detail["group"]["occurrence_count"] == 3
    assert len(detail["occurrences"]) == 3
    assert set(detail["occurrences"][0]) >= RECORD_KEYS
    report = detail["report"]
    assert report["breadcrumbs"][0]["action"] == "clicked save"
    assert "resource_snapshot" in report
    assert report["severity"] == "high"


def test_unknown_error_id_is_a_json_404(client: Client) -> None:
    response = client.get("/api/v1/errors/doesnotexist")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    body = strict_json(response)
    assert body["status"] == 404
    assert "doesnotexist" in body["error"]


def test_patterns(client: Client) -> None:
    patterns = strict_json(client.get("/api/v1/patterns"))["patterns"]
    by_key = {(p["kind"], p["error_type"]) for p in patterns}
    assert ("type", "ValueError") in by_key
    assert ("type", "KeyError") not in by_key  # 2 < threshold 3
    assert all({"key", "kind", "count", "severity"} <= set(p) for p in patterns)


def test_plugin_health(client: Client) -> None:
    health = strict_json(client.get("/api/v1/plugins/p1/health"))
    assert health["plugin_id"] == "p1"
    assert health["total_errors"] == 3
    assert health["error_types"] == {"ValueError": 3}
    assert health["status"] in ("degraded", "unhealthy")
    assert health["last_error"]["error_type"] == "ValueError"


def test_a_plugin_never_seen_is_a_json_404_not_healthy(
    client: Client, populated: tuple[ErrorMonitor, dict[str, str]]
) -> None:
    response = client.get("/api/v1/plugins/never-seen/health")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    body = strict_json(response)
    assert body["status"] == 404 and body["plugin"] == "never-seen"
    assert "never-seen" in body["error"] and "no error was ever recorded" in body["error"]
    # the Python API keeps the aggregator's answer (seed 003): healthy, no errors
    monitor, _ = populated
    assert monitor.get_plugin_health("never-seen") == {
        "plugin_id": "never-seen",
        "status": "healthy",
        "total_errors": 0,
        "error_types": {},
        "recent_error_count": 0,
        "last_error": None,
    }
    doc = strict_json(client.get("/api/v1/openapi.json"))
    answers = doc["paths"]["/api/v1/plugins/{plugin}/health"]["get"]["responses"]
    assert "404" in answers and "never seen is a 404" in answers["200"]["description"]


def test_plugin_names_may_contain_encoded_slashes(make_monitor: Any) -> None:
    monitor = make_monitor()
    raise_and_record(monitor, ValueError("x"), plugin="vendor/tool")
    client = Client(wsgi_app(monitor))
    health = strict_json(client.get("/api/v1/plugins/vendor%2Ftool/health"))
    assert health["total_errors"] == 1


def test_export_shape_and_counts(client: Client) -> None:
    response = client.get("/api/v1/export")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    export = strict_json(response)
    assert set(export) == {
        "exported_at",
        "global",
        "summary",
        "all_records",
        "statistics",
        "analysis",
        "next_cursor",
    }
    assert len(export["all_records"]) == 6
    assert export["next_cursor"] is None
    assert export["summary"]["total_errors"] == 6
    assert export["statistics"]["total_errors"] == 6
    assert export["analysis"]["total_unique_errors"] == 3
    assert set(export["all_records"][0]) >= RECORD_KEYS


def test_export_matches_export_data(populated: tuple[ErrorMonitor, dict[str, str]]) -> None:
    monitor, _ = populated
    client = Client(wsgi_app(monitor))
    for query, filters in (
        ("", {}),
        ("limit=2&cursor=1", {"limit": 2, "cursor": 1}),
        ("severity=medium", {"severity": "medium"}),
    ):
        streamed = strict_json(client.get(f"/api/v1/export?{query}"))
        direct = json.loads(json.dumps(monitor.export_data(**filters), default=str))
        assert streamed["all_records"] == direct["all_records"]
        assert streamed["next_cursor"] == direct["next_cursor"]
        assert streamed["summary"]["total_errors"] == direct["summary"]["total_errors"]
        assert set(streamed) == set(direct)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("severity=high", 3),
        ("severity=medium", 2),
        ("severity=low", 1),
        ("severity=critical", 0),
        ("component=db", 3),
        ("component=", 1),
        ("plugin=p2", 2),
        ("plugin=", 1),
        ("error_type=KeyError", 2),
        ("error_type=KeyError&component=db", 0),
        ("limit=4", 4),
    ],
)
def test_export_filters(client: Client, query: str, expected: int) -> None:
    export = strict_json(client.get(f"/api/v1/export?{query}"))
    assert len(export["all_records"]) == expected


def test_export_time_filters_accept_epoch_and_iso(make_monitor: Any) -> None:
    monitor = make_monitor()
    raise_and_record(monitor, ValueError("early"))
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    raise_and_record(monitor, ValueError("late"))
    client = Client(wsgi_app(monitor))
    iso_local = datetime.fromtimestamp(middle).isoformat()
    iso_utc = datetime.utcfromtimestamp(middle).isoformat() + "Z"
    for value in (f"{middle:.6f}", iso_local, iso_utc):
        since = strict_json(client.get("/api/v1/export", query_string={"since": value}))
        until = strict_json(client.get("/api/v1/export", query_string={"until": value}))
        assert [r["message"] for r in since["all_records"]] == ["late"], value
        assert [r["message"] for r in until["all_records"]] == ["early"], value


def test_cursor_walks_every_record_exactly_once(make_monitor: Any) -> None:
    monitor = make_monitor()
    for i in range(23):
        raise_and_record(monitor, ValueError(f"v{i}"), component=f"c{i % 3}")
    client = Client(wsgi_app(monitor))
    seen: list[str] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        page = strict_json(client.get(f"/api/v1/export?limit=5&cursor={cursor}"))
        seen.extend(r["message"] for r in page["all_records"])
        cursor = page["next_cursor"]
        pages += 1
        assert pages < 10
    assert seen == [f"v{i}" for i in range(23)]
    assert pages == 5
    # paging under a filter walks only the matching records
    filtered: list[str] = []
    cursor = 0
    while cursor is not None:
        page = strict_json(client.get(f"/api/v1/export?limit=3&cursor={cursor}&component=c1"))
        filtered.extend(r["message"] for r in page["all_records"])
        cursor = page["next_cursor"]
    assert filtered == [f"v{i}" for i in range(23) if i % 3 == 1]


def test_openapi_document_describes_every_route(client: Client) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = strict_json(response)
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    assert set(FIXED) <= paths
    assert {"/api/v1/errors/{error_id}", "/api/v1/plugins/{plugin}/health"} <= paths
    export = doc["paths"]["/api/v1/export"]["get"]
    names = {p["name"] for p in export["parameters"]}
    assert names == {
        "since",
        "until",
        "severity",
        "component",
        "plugin",
        "error_type",
        "limit",
        "cursor",
        "sort",
    }
    assert {"200", "400"} <= set(export["responses"])
    assert "404" in doc["paths"]["/api/v1/errors/{error_id}"]["get"]["responses"]


def test_openapi_marks_auth_only_when_a_token_is_set(make_monitor: Any) -> None:
    open_doc = build_openapi(make_monitor())
    assert "securitySchemes" not in open_doc["components"]
    assert "401" not in open_doc["paths"]["/api/v1/statistics"]["get"]["responses"]
    secured = build_openapi(make_monitor(api_token="s3cret"))
    assert secured["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    stats = secured["paths"]["/api/v1/statistics"]["get"]
    assert stats["security"] == [{"bearerAuth": []}] and "401" in stats["responses"]
    assert secured["paths"]["/metrics"]["get"]["security"] == []
    assert secured["paths"]["/healthz"]["get"]["security"] == []
    both = build_openapi(make_monitor(api_token="s3cret", protect_metrics=True))
    assert both["paths"]["/metrics"]["get"]["security"] == [{"bearerAuth": []}]


# -- errors: 404, 405, 400 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api/v2/statistics",
        "/metrics/",
        "/api//v1/statistics",
        "/api/v1/errors/",
        "/api/v1/plugins//health",
        "/api/v1/errors/../../etc/passwd",
        "/api/v1/errors/..",
        "/api/v1/plugins/../health",
        "/api/v1/errors/%zz",
        "/api/v1/errors/a%00b",
    ],
)
def test_unknown_or_traversing_paths_are_json_404(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, path
    assert response.headers["Content-Type"] == "application/json"
    body = strict_json(response)
    assert body["status"] == 404 and body["error"]


def test_path_that_is_not_utf8_is_a_json_400(client: Client) -> None:
    response = client.get(
        "/api/v1/errors/x", environ_overrides={"PATH_INFO": "/api/v1/errors/\xff\xfe"}
    )
    assert response.status_code == 400
    assert "UTF-8" in strict_json(response)["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", ["/metrics", "/api/v1/statistics", "/api/v1/errors/abc"])
def test_other_methods_are_json_405_with_allow(client: Client, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    body = strict_json(response)
    assert body["status"] == 405 and method in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/metrics",
        "/healthz",
        "/api/v1/statistics",
        "/api/v1/errors",
        "/api/v1/export",
        "/api/v1/openapi.json",
    ],
)
def test_head_has_the_headers_of_get_and_no_body(client: Client, path: str) -> None:
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.get_data() == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    if "Content-Length" in head.headers:
        assert int(head.headers["Content-Length"]) > 0


@pytest.mark.parametrize(
    ("path", "param", "allowed"),
    [
        ("/api/v1/errors?sort=newest", "sort", ["count", "last_seen"]),
        ("/api/v1/export?sort=count", "sort", ["time"]),
        ("/api/v1/export?sort=", "sort", ["time"]),
        ("/api/v1/errors?limit=0", "limit", {"minimum": 1, "maximum": 10000}),
        ("/api/v1/errors?limit=ten", "limit", {"minimum": 1, "maximum": 10000}),
        ("/api/v1/export?limit=10001", "limit", {"minimum": 1, "maximum": 10000}),
        ("/api/v1/export?limit=1.5", "limit", {"minimum": 1, "maximum": 10000}),
        ("/api/v1/export?limit=", "limit", {"minimum": 1, "maximum": 10000}),
        ("/api/v1/export?cursor=-1", "cursor", None),
        ("/api/v1/export?cursor=abc", "cursor", None),
        ("/api/v1/export?severity=urgent", "severity", ["low", "medium", "high", "critical"]),
        ("/api/v1/export?severity=HIGH", "severity", ["low", "medium", "high", "critical"]),
        ("/api/v1/export?since=yesterday", "since", None),
        ("/api/v1/export?until=nan", "until", None),
        ("/api/v1/export?since=2024-13-01T00:00:00Z", "since", None),
        ("/api/v1/export?limit=1&limit=2", "limit", None),
        ("/api/v1/export?component=%ff", "component", None),
    ],
)
def test_bad_query_values_are_json_400_naming_the_parameter(
    client: Client, path: str, param: str, allowed: Any
) -> None:
    response = client.get(path)
    assert response.status_code == 400, path
    assert response.headers["Content-Type"] == "application/json"
    body = strict_json(response)
    assert body["status"] == 400
    assert body["parameter"] == param
    assert param in body["error"]
    if allowed is not None:
        assert body["allowed"] == allowed


def test_unknown_query_parameters_are_ignored(client: Client) -> None:
    assert client.get("/api/v1/statistics?_=123").status_code == 200


# -- encodings and formats -----------------------------------------------------------------


def test_metrics_text_format_by_default(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    assert "# EOF" not in text and "error_id=" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    total = sum(s.value for s in families["app_errors"].samples if s.name == "app_errors_total")
    assert total == 6


def test_metrics_openmetrics_by_negotiation_carries_exemplars(
    client: Client, populated: tuple[ErrorMonitor, dict[str, str]]
) -> None:
    _, ids = populated
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = client.get("/metrics", headers={"Accept": accept})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    text = response.get_data(as_text=True)
    assert text.endswith("# EOF\n")
    assert f'# {{error_id="{ids["key"]}"}}' in text
    assert "Accept" in response.headers["Vary"]


def test_metrics_gzip_only_when_accepted(client: Client) -> None:
    plain = client.get("/metrics").get_data()
    zipped = client.get("/metrics", headers={"Accept-Encoding": "br, gzip;q=0.8"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.get_data()).startswith(b"# HELP")
    assert len(gzip.decompress(zipped.get_data())) == pytest.approx(len(plain), rel=0.05)
    refused = client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers
    assert refused.get_data().startswith(b"# HELP")


def test_json_is_gzipped_when_large_and_accepted(client: Client) -> None:
    response = client.get("/api/v1/analysis", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(response.get_data()))["total_unique_errors"] == 3
    streamed = client.get("/api/v1/export", headers={"Accept-Encoding": "gzip"})
    assert streamed.headers["Content-Encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(streamed.get_data()))["all_records"]) == 6
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


def test_odd_values_in_context_never_break_a_response(make_monitor: Any) -> None:
    monitor = make_monitor()
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    context = {
        "nan": math.nan,
        "inf": math.inf,
        "obj": object(),
        "bytes": b"\xff\x00",
        "set": {1, 2},
        "cyclic": cyclic,
        "bad": Unprintable(),
        "text": "\ud800 lone",
    }
    error_id = raise_and_record(
        monitor, ValueError("odd"), context=context, metadata={"when": datetime.now()}
    )
    client = Client(wsgi_app(monitor))
    for path in (
        "/api/v1/statistics",
        "/api/v1/analysis",
        "/api/v1/errors",
        f"/api/v1/errors/{error_id}",
        "/api/v1/export",
        "/api/v1/patterns",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        strict_json(response)


def test_a_failing_handler_is_a_counted_json_500(
    make_monitor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = make_monitor()
    client = Client(wsgi_app(monitor))

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(monitor, "get_statistics", broken)
    response = client.get("/api/v1/statistics")
    assert response.status_code == 500
    body = strict_json(response)
    assert body["status"] == 500 and "RuntimeError" in body["error"]
    monkeypatch.undo()
    text = client.get("/metrics").get_data(as_text=True)
    assert "app_monitor_internal_errors_total 1.0" in text


def test_the_app_works_mounted_under_a_prefix(client: Client) -> None:
    root = client.get("/", environ_overrides={"SCRIPT_NAME": "/monitor", "PATH_INFO": ""})
    assert root.status_code == 200
    doc = strict_json(
        client.get("/api/v1/openapi.json", environ_overrides={"SCRIPT_NAME": "/monitor"})
    )
    assert doc["servers"] == [{"url": "/monitor"}]


# -- one JSON convention: times, missing plugins, filtered exports (issue 15) ---------------

TIME_KEYS = {
    "timestamp",
    "first_occurrence",
    "last_occurrence",
    "first_seen",
    "last_seen",
    "exported_at",
    "session_start",
    "started_at",
}
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"


def _times(value: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, value, epoch twin or None) of every time key anywhere in a JSON document."""
    found: list[tuple[str, Any, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in TIME_KEYS:
                found.append((f"{path}.{key}", item, value.get(f"{key}_epoch")))
            found.extend(_times(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_times(item, f"{path}[{index}]"))
    return found


def test_every_time_is_iso_8601_utc_with_the_epoch_beside(make_monitor: Any) -> None:
    import re

    monitor = make_monitor(
        pattern_threshold=2, enable_resource_monitoring=True, resource_check_interval=0.05
    )
    time.sleep(0.2)  # one resource sample
    monitor.add_breadcrumb("clicked save", component="ui")
    for _ in range(2):
        error_id = raise_and_record(monitor, ValueError("v"), plugin="p1", component="db")
    client = Client(wsgi_app(monitor))
    documents = {
        path: strict_json(client.get(path))
        for path in (
            "/api/v1/statistics",
            "/api/v1/analysis",
            "/api/v1/errors",
            f"/api/v1/errors/{error_id}",
            "/api/v1/patterns",
            "/api/v1/plugins/p1/health",
            "/api/v1/export",
            "/api/v1/export?severity=medium",
        )
    }
    seen: set[str] = set()
    for route, document in documents.items():
        for path, value, epoch in _times(document):
            key = path.rsplit(".", 1)[1]
            seen.add(key)
            assert isinstance(value, str) and re.fullmatch(ISO_UTC, value), (route, path, value)
            if epoch is not None:
                assert datetime.fromisoformat(value).timestamp() == pytest.approx(epoch, abs=1e-6)
    assert seen == TIME_KEYS
    group = documents["/api/v1/errors"]["errors"][0]
    assert isinstance(group["first_occurrence_epoch"], float)
    assert group["first_occurrence_epoch"] <= group["last_occurrence_epoch"] <= time.time()
    report = documents[f"/api/v1/errors/{error_id}"]["report"]
    assert {"timestamp_epoch", "first_occurrence_epoch", "last_occurrence_epoch"} <= set(report)
    assert "timestamp_epoch" in report["breadcrumbs"][0]
    assert "timestamp_epoch" in report["resource_snapshot"]
    doc = strict_json(client.get("/api/v1/openapi.json"))
    assert "ISO-8601 string in UTC" in doc["info"]["description"]
    assert "_epoch" in doc["info"]["description"]
    schemas = doc["components"]["schemas"]
    assert schemas["GroupSummary"]["properties"]["first_occurrence"]["format"] == "date-time"
    assert schemas["GroupSummary"]["properties"]["first_occurrence_epoch"]["type"] == "number"


def test_a_missing_plugin_is_null_in_every_json_shape(
    client: Client, populated: tuple[ErrorMonitor, dict[str, str]]
) -> None:
    _, ids = populated  # the OSError has no plugin
    [group] = [
        g for g in strict_json(client.get("/api/v1/errors"))["errors"] if g["error_id"] == ids["os"]
    ]
    detail = strict_json(client.get(f"/api/v1/errors/{ids['os']}"))
    export = strict_json(client.get("/api/v1/export?error_type=OSError"))
    assert group["plugin"] is None and group["plugins"] == []
    assert detail["group"]["plugin"] is None and detail["report"]["plugin"] is None
    assert detail["occurrences"][0]["plugin_id"] is None
    assert export["all_records"][0]["plugin_id"] is None
    stats = strict_json(client.get("/api/v1/statistics"))
    assert stats["errors_by_plugin"] == {"p1": 3, "p2": 2}  # no "" key: JSON keys are not null
    # the metric label stays "" (Prometheus has no null)
    assert 'plugin=""' in client.get("/metrics").get_data(as_text=True)
    with_plugin = strict_json(client.get(f"/api/v1/errors/{ids['value']}"))
    assert with_plugin["group"]["plugin"] == "p1"
    assert with_plugin["occurrences"][0]["plugin_id"] == "p1"


def test_a_filtered_export_names_the_parts_that_describe_every_error(client: Client) -> None:
    export = strict_json(client.get("/api/v1/export?severity=high"))
    assert {r["severity"] for r in export["all_records"]} == {"high"}
    assert len(export["all_records"]) == 3
    assert export["global"] == ["summary", "statistics", "analysis"]
    assert export["summary"]["total_errors"] == 6  # every error, and the document says so
    assert export["statistics"]["total_errors"] == 6
    doc = strict_json(client.get("/api/v1/openapi.json"))
    described = doc["components"]["schemas"]["Export"]["properties"]["global"]["description"]
    assert "only all_records is filtered" in described


def test_export_sort_is_validated_like_the_errors_sort(client: Client) -> None:
    assert client.get("/api/v1/export?sort=time").status_code == 200
    body = strict_json(client.get("/api/v1/export?sort=last_seen"))
    assert body["status"] == 400 and body["parameter"] == "sort"
    assert body["allowed"] == ["time"] and "time" in body["error"]
