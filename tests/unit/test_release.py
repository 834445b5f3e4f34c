"""Release health (issue 13, section 2): versions on groups, new in a release, resolve and
regress through the real HTTP server, the CLI, ``watch`` and ``analyze``."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.monitoring import sample, settle

from exporter import ErrorMonitor, ErrorReport
from exporter.cli.client import ApiClient
from exporter.cli.watch import run_watch
from exporter.config import MonitorConfig
from exporter.http import MonitorServer
from exporter.model import ErrorPriority, ErrorRecord, ErrorSeverity
from exporter.multiprocess.view import SharedView
from exporter.store.memory import ErrorStore

TOKEN = "release-token"
REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "error-exporter"
NEW = "app_error_groups_new_total"
REGRESSED = "app_error_groups_regressed_total"


# -- helpers ------------------------------------------------------------------------------


def checkout_failed(monitor: ErrorMonitor, message: str) -> str:
    """Always the same raise site: one group, however many times it is called."""
    try:
        raise ConnectionError(message)
    except ConnectionError as exc:
        error_id = monitor.record_error(exc, component="checkout")
    assert error_id is not None
    return error_id


def cart_broken(monitor: ErrorMonitor, message: str) -> str:
    try:
        raise KeyError(message)
    except KeyError as exc:
        error_id = monitor.record_error(exc, component="cart")
    assert error_id is not None
    return error_id


def call(
    url: str, method: str = "GET", token: str | None = TOKEN
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers of one request to the live server."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def metric_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        return response.read().decode("utf-8")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k not in ("COLUMNS", "LINES")
    }
    env.update(extra)
    return env


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=clean_env(**env),
    )


# -- resolve -> regress through the HTTP API ----------------------------------------------


def test_resolve_then_regress_through_the_http_api(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0, api_token=TOKEN, app_version="1.0")
    regressions: list[ErrorReport] = []
    came_back = threading.Event()

    def on_regression(report: ErrorReport) -> None:
        regressions.append(report)
        came_back.set()

    monitor.register_regression_callback(on_regression)
    url = monitor.server.url
    error_id = checkout_failed(monitor, "gateway timeout")
    resolve = f"{url}/api/v1/errors/{error_id}/resolve"

    status, body, headers = call(resolve, "POST", token=None)
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"], body
    status, body, _ = call(resolve, "POST", token="wrong")
    assert (status, body["error"]) == (401, "the bearer token is wrong")
    status, body, _ = call(f"{url}/api/v1/errors/no-such-group/resolve", "POST")
    assert status == 404 and "no-such-group" in body["error"], body
    status, body, headers = call(resolve, "GET")
    assert (status, headers["Allow"], body["allowed"]) == (405, "POST", ["POST"])
    group = monitor.get_group(error_id)
    assert group is not None and group["group"]["resolved"] is False  # nothing changed yet

    status, body, _ = call(resolve, "POST")
    assert status == 200, body
    assert body["error_id"] == error_id
    assert (body["resolved"], body["resolved_version"], body["regressed"]) == (True, "1.0", False)
    assert datetime.fromisoformat(body["resolved_at"]).timestamp() == pytest.approx(
        body["resolved_at_epoch"]
    )
    again = call(resolve, "POST")
    assert again[0] == 200 and again[1]["resolved_at"] == body["resolved_at"]  # idempotent

    monitor.set_app_version("2.0")
    checkout_failed(monitor, "gateway timeout again")
    settle(monitor)
    status, detail, _ = call(f"{url}/api/v1/errors/{error_id}")
    group = detail["group"]
    assert status == 200
    assert (group["regressed"], group["resolved"], group["resolved_at"]) == (True, False, None)
    assert group["resolved_version"] == "1.0"  # the release that was thought to fix it
    assert (group["first_seen_version"], group["last_seen_version"]) == ("1.0", "2.0")
    assert group["regressed_at_epoch"] > body["resolved_at_epoch"]
    listed = {g["error_id"]: g for g in call(f"{url}/api/v1/errors")[1]["errors"]}
    assert listed[error_id]["regressed"] is True

    text = scrape(url)
    assert metric_value(text, REGRESSED, {"app_version": "2.0"}) == 1.0
    assert metric_value(text, REGRESSED, {"app_version": "1.0"}) == 0.0
    assert came_back.wait(30)
    assert [r.error_message for r in regressions] == ["gateway timeout again"]
    assert regressions[0].error_id == error_id
    assert regressions[0].environment["app_version"] == "2.0"

    checkout_failed(monitor, "still regressed")  # the same regression: counted once
    settle(monitor)
    assert sample(monitor, REGRESSED, {"app_version": "2.0"}) == 1.0
    assert len(regressions) == 1

    status, body, _ = call(resolve, "POST")  # resolved again: the regression is over
    assert (status, body["regressed"], body["resolved"], body["resolved_version"]) == (
        200,
        False,
        True,
        "2.0",
    )
    checkout_failed(monitor, "third time")
    settle(monitor)
    assert sample(monitor, REGRESSED, {"app_version": "2.0"}) == 2.0
    assert len(regressions) == 2


def test_resolve_is_closed_without_an_api_token(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0)
    error_id = checkout_failed(monitor, "boom")
    status, body, _ = call(
        f"{monitor.server.url}/api/v1/errors/{error_id}/resolve", "POST", token=None
    )
    assert status == 403
    assert "api_token" in body["error"] and "closed" in body["error"], body
    group = monitor.get_group(error_id)
    assert group is not None and group["group"]["resolved"] is False
    assert monitor.resolve_group(error_id) is not None  # Python callers may, of course
    assert monitor.resolve_group("unknown") is None


def test_a_regression_callback_that_fails_never_reaches_the_app(make_monitor: Any) -> None:
    monitor = make_monitor(app_version="1.0")

    def broken(report: ErrorReport) -> None:
        raise RuntimeError("callback bug")

    monitor.register_regression_callback(broken)
    error_id = checkout_failed(monitor, "first")
    assert monitor.resolve_group(error_id) is not None
    checkout_failed(monitor, "back")
    settle(monitor)
    assert sample(monitor, "app_monitor_internal_errors_total") == 1.0
    assert monitor.list_groups()[0]["regressed"] is True


# -- new in a release ---------------------------------------------------------------------


def test_new_in_a_release_lists_and_counts_groups_first_seen_there(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0, api_token=TOKEN, app_version="1.0")
    url = monitor.server.url
    old = checkout_failed(monitor, "old")
    settle(monitor)
    assert sample(monitor, NEW, {"app_version": "1.0"}) == 1.0

    monitor.set_app_version("2.0")
    assert sample(monitor, NEW, {"app_version": "2.0"}) == 0.0  # the series exists at 0
    new = cart_broken(monitor, "new")
    checkout_failed(monitor, "old again")  # seen in 2.0 too, but not new there
    settle(monitor)

    status, body, _ = call(f"{url}/api/v1/errors?new_in=2.0")
    assert status == 200
    assert [g["error_id"] for g in body["errors"]] == [new] and body["total"] == 1
    assert body["errors"][0]["first_seen_version"] == "2.0"
    status, body, _ = call(f"{url}/api/v1/errors?new_in=1.0&limit=1")
    assert [g["error_id"] for g in body["errors"]] == [old] and body["total"] == 1
    assert body["errors"][0]["last_seen_version"] == "2.0"
    assert call(f"{url}/api/v1/errors?new_in=3.0")[1] == {"errors": [], "total": 0}
    status, body, _ = call(f"{url}/api/v1/errors?new_in=")
    assert (status, body["parameter"]) == (400, "new_in") and "empty" in body["error"]

    text = scrape(url)
    assert metric_value(text, NEW, {"app_version": "1.0"}) == 1.0
    assert metric_value(text, NEW, {"app_version": "2.0"}) == 1.0
    assert [g["error_id"] for g in monitor.list_groups(new_in="2.0")] == [new]
    # the analysis (and so the export) carries the release fields on its reports
    tops = {t["error_id"]: t["report"] for t in monitor.get_error_analysis()["top_errors"]}
    assert tops[new]["first_seen_version"] == "2.0" and tops[old]["regressed"] is False
    assert tops[new]["environment"]["app_version"] == "2.0"


def test_without_an_app_version_the_label_is_unknown(make_monitor: Any) -> None:
    monitor = make_monitor()
    checkout_failed(monitor, "x")
    settle(monitor)
    assert sample(monitor, NEW, {"app_version": "unknown"}) == 1.0
    group = monitor.list_groups()[0]
    assert (group["first_seen_version"], group["last_seen_version"]) == (None, None)


def test_an_error_captured_before_the_deploy_stays_with_the_old_version() -> None:
    monitor = ErrorMonitor(
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
        app_version="1.0",
    )
    try:
        checkout_failed(monitor, "queued before the deploy")  # no worker yet: it waits
        assert monitor.queue_depth == 1
        monitor.set_app_version("2.0")
        cart_broken(monitor, "after the deploy")
        monitor.start_worker()
        assert monitor.flush(30)
        versions = {g["error_type"]: g["first_seen_version"] for g in monitor.list_groups()}
        assert versions == {"ConnectionError": "1.0", "KeyError": "2.0"}
        assert sample(monitor, NEW, {"app_version": "1.0"}) == 1.0
        assert sample(monitor, NEW, {"app_version": "2.0"}) == 1.0
        assert monitor.config.app_version == "2.0"
    finally:
        monitor.stop(timeout=2.0)


@pytest.mark.parametrize("bad", ["", "   ", None, 3, "x" * 201])
def test_set_app_version_refuses_a_bad_version_naming_it(monitor: ErrorMonitor, bad: Any) -> None:
    with pytest.raises(ValueError, match="app_version"):
        monitor.set_app_version(bad)


# -- the store's rules --------------------------------------------------------------------


def _report_and_record(
    error_id: str, when: float, version: str | None
) -> tuple[ErrorReport, ErrorRecord]:
    report = ErrorReport(
        error_id=error_id,
        error_type="ValueError",
        error_message="m",
        severity=ErrorSeverity.MEDIUM,
        priority=ErrorPriority.MEDIUM,
        timestamp=when,
        first_occurrence=when,
        occurrence_count=1,
        component="",
        file_path=None,
        line_number=None,
        function_name=None,
        stack_trace="",
        traceback_lines=[],
        environment={"app_version": version},
        last_occurrence=when,
    )
    record = ErrorRecord("ValueError", "m", datetime.fromtimestamp(when), error_id=error_id)
    return report, record


def test_only_an_occurrence_after_the_resolve_regresses_and_coalesced_counts_do() -> None:
    store = ErrorStore(10, 100)
    regressed: list[tuple[str, str]] = []
    changed: list[str] = []
    store.on_regress = lambda group, report: regressed.append(
        (report.error_id, report.error_message)
    )
    store.on_change = changed.append
    store.version_at = lambda moment: "3.0" if moment >= 400 else "1.0"  # as the builder
    store.add(*_report_and_record("g", 100.0, "1.0"))
    resolved = store.resolve("g", "1.0", when=200.0)
    assert resolved is not None and resolved.resolved_at == 200.0 and changed == ["g"]
    assert store.resolve("missing", "1.0") is None

    store.add(*_report_and_record("g", 150.0, "1.0"))  # captured before the resolve
    group = store.groups["g"]
    assert (group.regressed, group.resolved_at) == (False, 200.0) and regressed == []

    assert store.add_to_group("g", "", 5, 450.0)  # a storm's repeats, after the resolve
    assert (group.regressed, group.regressed_at, group.resolved_at) == (True, 450.0, None)
    assert group.last_seen_version == "3.0" and group.first_seen_version == "1.0"
    assert regressed == [("g", "m")]  # the group's latest report: the repeats have none
    summary = group.summary()
    assert (summary["regressed"], summary["regressed_at_epoch"], summary["resolved"]) == (
        True,
        450.0,
        False,
    )
    assert [g.report.error_id for g in store.group_list(new_in="1.0")] == ["g"]
    assert store.group_list(new_in="3.0") == []


# -- multiprocess mode: the directory's file keeps release state -------------------------


def test_the_multiprocess_view_resolves_and_filters_by_release(
    make_monitor: Any, tmp_path: Path
) -> None:
    """The directory's file has the durable schema: what a single-process monitor wrote
    there (the same tables) is what the sidecar's view resolves and filters."""
    from exporter.multiprocess.sqlite_store import DB_NAME

    writer = make_monitor(store_path=str(tmp_path / DB_NAME), app_version="1.0")
    error_id = checkout_failed(writer, "down")
    settle(writer)
    writer.stop()
    view = SharedView(tmp_path, MonitorConfig(api_token=TOKEN, app_version="2.0"))
    server = MonitorServer(view, "127.0.0.1", 0).start()
    try:
        status, body, _ = call(f"{server.url}/api/v1/errors?new_in=1.0")
        assert status == 200 and [g["error_id"] for g in body["errors"]] == [error_id]
        assert call(f"{server.url}/api/v1/errors?new_in=2.0")[1]["errors"] == []
        status, body, _ = call(f"{server.url}/api/v1/errors/{error_id}/resolve", "POST")
        assert status == 200, body
        assert (body["resolved"], body["resolved_version"]) == (True, "2.0")
        assert call(f"{server.url}/api/v1/errors/{error_id}")[1]["group"]["resolved"] is True
        assert call(f"{server.url}/api/v1/errors/abc/resolve", "POST")[0] == 404
    finally:
        server.stop()
        view.shared.close()


# -- OpenAPI ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_openapi_documents_the_resolve_route_and_new_in(
    make_monitor: Any, token: str | None
) -> None:
    monitor = make_monitor(serve=True, port=0, api_token=token, app_version="1.0")
    url = monitor.server.url
    doc = call(url + "/api/v1/openapi.json", token=token)[1]
    path = doc["paths"].get("/api/v1/errors/{error_id}/resolve")
    assert (path is not None) == bool(token)  # without a token the route is closed: 403
    names = [p["name"] for p in doc["paths"]["/api/v1/errors"]["get"]["parameters"]]
    assert "new_in" in names
    summary = doc["components"]["schemas"]["GroupSummary"]
    for key in ("first_seen_version", "last_seen_version", "resolved", "regressed"):
        assert key in summary["required"], key
    error_id = checkout_failed(monitor, "x")
    status, body, _ = call(f"{url}/api/v1/errors/{error_id}/resolve", "POST", token=token)
    if path is not None:
        assert str(status) in path["post"]["responses"], status
    schema = "GroupSummary" if status == 200 else "Error"
    validator = jsonschema_rs.validator_for(
        {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    )
    assert [str(e) for e in validator.iter_errors(body)] == []
    assert status == (200 if token else 403)


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def regressed_app(make_monitor: Any) -> Iterator[tuple[ErrorMonitor, str, str]]:
    """A live app on 2.0 with one regressed group (resolved in 1.0) and one new group."""
    monitor = make_monitor(serve=True, port=0, api_token=TOKEN, app_version="1.0")
    back = checkout_failed(monitor, "gateway timeout")
    settle(monitor)
    assert monitor.resolve_group(back) is not None
    monitor.set_app_version("2.0")
    checkout_failed(monitor, "gateway timeout again")
    new = cart_broken(monitor, "sku-42")
    settle(monitor)
    yield monitor, back, new


def test_cli_resolve_against_a_live_server(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0, api_token=TOKEN, app_version="1.0")
    url = monitor.server.url
    error_id = checkout_failed(monitor, "gateway timeout")
    settle(monitor)

    done = cli("resolve", error_id, "--url", url, ERROR_EXPORTER_API_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"resolved {error_id} ConnectionError"), lines
    assert "in version 1.0" in lines[0]
    group = monitor.get_group(error_id)
    assert group is not None and group["group"]["resolved"] is True

    unknown = cli("resolve", "nope", "--url", url, "--token", TOKEN)
    assert unknown.returncode == 1
    assert "no error group with id 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    wrong = cli("resolve", error_id, "--url", url, "--token", "wrong")
    assert (
        wrong.returncode == 1 and "401" in wrong.stderr and "rejected the token" in wrong.stderr
    ), wrong.stderr
    missing = cli("resolve", error_id, "--url", url)
    assert missing.returncode == 1 and "needs a token" in missing.stderr, missing.stderr


def test_cli_resolve_says_why_a_server_without_a_token_refuses(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0)
    error_id = checkout_failed(monitor, "x")
    done = cli("resolve", error_id, "--url", monitor.server.url, "--token", "anything")
    assert done.returncode == 1
    assert "403" in done.stderr and "api_token" in done.stderr, done.stderr


def test_watch_shows_new_and_regressed(regressed_app: tuple[ErrorMonitor, str, str]) -> None:
    monitor = regressed_app[0]
    plain = cli(
        "watch", "--url", monitor.server.url, "--no-rich", "--iterations", "1", "--token", TOKEN
    )
    assert plain.returncode == 0, plain.stderr
    assert "regressed=1[ConnectionError@2.0]" in plain.stdout, plain.stdout

    out = io.StringIO()
    assert (
        run_watch(
            ApiClient(monitor.server.url, token=TOKEN),
            refresh=0.1,
            use_rich=True,
            iterations=1,
            out=out,
        )
        == 0
    )
    screen = out.getvalue()
    lines = [line for line in screen.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 80, screen
    assert re.search(r"ConnectionError .*REGRESSED", screen), screen
    assert re.search(r"KeyError .*NEW", screen), screen


def test_analyze_shows_the_marker_and_the_regressed_list(
    regressed_app: tuple[ErrorMonitor, str, str], tmp_path: Path
) -> None:
    monitor, back, new = regressed_app
    url = monitor.server.url
    tables = cli("analyze", "--url", url, "--token", TOKEN)
    assert tables.returncode == 0, tables.stderr
    lines = tables.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, tables.stdout
    assert "REGRESSED" in tables.stdout and "NEW" in tables.stdout, tables.stdout
    assert "Regressed (resolved, then seen again)" in tables.stdout
    assert re.search(r"ConnectionError +│ +2 │ 2\.0 +│ \d+s ago │ 1\.0 ", tables.stdout), (
        tables.stdout
    )

    as_json = json.loads(cli("analyze", "--url", url, "--token", TOKEN, "--json").stdout)
    assert [r["error_id"] for r in as_json["regressed"]] == [back]
    assert as_json["release"] == "2.0"
    states = {t["error_id"]: t["state"] for t in as_json["top_errors"]}
    assert states == {back: "REGRESSED", new: "NEW"}

    export = tmp_path / "export.json"
    export.write_text(json.dumps(monitor.export_data(), default=str))
    from_file = json.loads(cli("analyze", "--file", str(export), "--json").stdout)
    assert [r["error_id"] for r in from_file["regressed"]] == [back]
    assert {t["error_id"]: t["state"] for t in from_file["top_errors"]} == states


# -- across a restart, with the durable store -------------------------------------------


def test_a_restart_on_the_durable_store_keeps_release_health(
    make_monitor: Any, tmp_path: Path
) -> None:
    """Groups of the earlier run are not new in the next release; one resolved there and
    seen again after the restart is a regression."""
    path = str(tmp_path / "errors.sqlite")
    first = make_monitor(store_path=path, app_version="1.0")
    fixed = checkout_failed(first, "before the fix")
    kept = cart_broken(first, "still there")
    settle(first)
    assert first.resolve_group(fixed) is not None
    first.stop(timeout=5.0)

    second = make_monitor(store_path=path, app_version="2.0", serve=True, port=0, api_token=TOKEN)
    checkout_failed(second, "the fix did not hold")
    cart_broken(second, "still there")
    settle(second)
    groups = {g["error_id"]: g for g in second.list_groups()}
    assert (groups[fixed]["regressed"], groups[fixed]["resolved_version"]) == (True, "1.0")
    assert (groups[kept]["first_seen_version"], groups[kept]["last_seen_version"]) == ("1.0", "2.0")
    assert call(f"{second.server.url}/api/v1/errors?new_in=2.0")[1] == {"errors": [], "total": 0}
    assert sample(second, NEW, {"app_version": "2.0"}) == 0.0
    assert sample(second, REGRESSED, {"app_version": "2.0"}) == 1.0
