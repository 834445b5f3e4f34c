"""The OpenAPI document against the live server: schemathesis finds nothing, and real answers
validate against the document's own schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

import jsonschema_rs
import pytest

from exporter import ErrorMonitor

TOKEN = "fuzz-token"


def populate(monitor: ErrorMonitor) -> None:
    monitor.add_breadcrumb("opened cart", component="ui", data={"items": 2})
    session = monitor.start_session(user_id="u1")
    for i in range(4):
        for exc, plugin in ((ValueError(f"v{i}"), "p1"), (KeyError(f"k{i}"), "p/2"),
                            (RuntimeError("r\n\"quoted\""), "")):
            try:
                raise exc
            except Exception as caught:
                monitor.record_error(caught, component="api", plugin=plugin,
                                     context={"i": i, "nan": float("nan")}, session_id=session)
    monitor.end_session(session)
    monitor.record_recovery(True, 0.1, component="api", plugin="p1")
    assert monitor.flush(5.0)


def fetch(url: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_schemathesis_finds_no_failure(make_monitor: Any, token: str | None) -> None:
    monitor = make_monitor(serve=True, port=0, api_token=token, protect_metrics=bool(token),
                           pattern_threshold=3)
    populate(monitor)
    url = monitor.server.url
    argv = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/api/v1/openapi.json",
            "--checks", "all", "--max-examples", "25", "--workers", "1", "--seed", "3",
            "--max-failures", "5"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "No issues found" in done.stdout, report
    # every operation but the document itself; the resolve route exists only with a token
    assert f"{12 if token else 11} selected" in done.stdout, report


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_real_answers_match_the_documented_schemas(make_monitor: Any, token: str | None) -> None:
    monitor = make_monitor(serve=True, port=0, api_token=token, pattern_threshold=3)
    populate(monitor)
    url = monitor.server.url
    doc = fetch(url + "/api/v1/openapi.json", token)
    error_id = monitor.list_groups()[0]["error_id"]

    def validator(name: str) -> Any:
        return jsonschema_rs.validator_for(
            {"$ref": f"#/components/schemas/{name}", "components": doc["components"]})

    cases = {
        "/healthz": "Health", "/api/v1/": "ApiIndex", "/api/v1/statistics": "Statistics",
        "/api/v1/analysis": "Analysis", "/api/v1/errors?sort=last_seen": "ErrorList",
        f"/api/v1/errors/{error_id}": "ErrorDetail", "/api/v1/patterns": "PatternList",
        "/api/v1/plugins/p1/health": "PluginHealth", "/api/v1/export?limit=5": "Export",
    }
    for path, schema in cases.items():
        answer = fetch(url + path, token if path.startswith("/api") else None)
        errors = [str(e) for e in validator(schema).iter_errors(answer)]
        assert errors == [], (path, errors[:3])
    assert fetch(url + "/api/v1/patterns", token)["patterns"], "patterns were exercised"
    assert validator("Error").is_valid({"error": "x", "status": 404})
    assert not validator("Error").is_valid({"status": 404})  # the validator is not vacuous
    assert not validator("Health").is_valid({"status": "ok", "running": "yes", "queue_depth": 0})
