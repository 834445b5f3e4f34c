"""The Reports dashboard, proven without a Grafana server: every panel's SQL on a real
PostgreSQL that the demo workload filled, as Grafana's read-only role.

The database and roles come from deploy/postgres/roles.sql (run with psql, as docker-compose
and deploy/stack.sh run it; the roles named for this test); two instances of the demo app
write it as the app's role (version 1.0.0, then the workload's deploy of 1.1.0: a new
group, a regression; then a group is resolved and not seen again, as a fix would be); then
each panel's and each variable's query runs as Grafana's read-only role after Grafana's macros
(``$__unixEpochFilter``, ``$__timeFilter``, ``$__timeFrom()``…) and the board's variables
are substituted as Grafana would, and must return rows. Also: the board's data links, the
exemplar destination and the metric panels' links lead to the Reports board by error id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.postgres import PASSWORD, SUPERUSER

from exporter import ErrorMonitor
from exporter.capture.trace_context import incoming_trace
from exporter.demo.workload import Workload

ROOT = Path(__file__).resolve().parents[3]
BOARD = json.loads((ROOT / "dashboards" / "error-exporter-reports.json").read_text())
ROLES_SQL = ROOT / "deploy" / "postgres" / "roles.sql"
APP_PASSWORD, GRAFANA_PASSWORD = "app-pw-9Xq", "grafana-pw-4Lm"
DATABASE = f"reports_{os.getpid()}"
APP_ROLE, GRAFANA_ROLE = f"reports_app_{os.getpid()}", f"reports_grafana_{os.getpid()}"
APP = "demo"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------- Grafana's SQL


def grafana_sql(sql: str, variables: Mapping[str, str], start: float, end: float) -> str:
    """``sql`` as Grafana's PostgreSQL data source sends it: the time macros for the range
    [start, end] and the board's variables (single values, inserted as they are) replaced.
    Anything left that looks like a macro or variable is a failure."""

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("'%Y-%m-%dT%H:%M:%SZ'")

    macros = {
        r"\$__unixEpochFilter\(([^)]*)\)": lambda m: (
            f"{m[1]} >= {int(start)} AND {m[1]} <= {int(end) + 1}"
        ),
        r"\$__timeFilter\(([^)]*)\)": lambda m: f"{m[1]} BETWEEN {iso(start)} AND {iso(end)}",
        r"\$__timeFrom\(\)": lambda m: iso(start),
        r"\$__timeTo\(\)": lambda m: iso(end),
        r"\$__unixEpochFrom\(\)": lambda m: str(int(start)),
        r"\$__unixEpochTo\(\)": lambda m: str(int(end) + 1),
    }
    for pattern, replace in macros.items():
        sql = re.sub(pattern, replace, sql)
    sql = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), sql)
    assert "$" not in sql, f"unsubstituted macro or variable in: {sql}"
    return sql


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


SQL_PANELS = [p for p in panels(BOARD) if p.get("targets")]
VARIABLES = {v["name"]: v for v in BOARD["templating"]["list"]}

# ---------------------------------------------------------------------------- the database


def psql(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("psql") or "/usr/bin/psql"
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    return subprocess.run(
        [
            binary,
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_store(postgres_server) -> Iterator[dict[str, Any]]:
    """deploy/postgres/roles.sql run on the test server; the demo workload written to it by
    two instances as the app's role; what Grafana's role connects with."""
    if shutil.which("psql") is None and not Path("/usr/bin/psql").exists():
        pytest.skip("psql (postgresql-client) is not installed")
    # roles of this module's own (roles are the server's, shared by the session's tests)
    done = psql(
        postgres_server,
        "-v",
        f"app_password={APP_PASSWORD}",
        "-v",
        f"grafana_password={GRAFANA_PASSWORD}",
        "-v",
        f"database={DATABASE}",
        "-v",
        f"app_role={APP_ROLE}",
        "-v",
        f"grafana_role={GRAFANA_ROLE}",
        "-f",
        str(ROLES_SQL),
    )
    assert done.returncode == 0, done.stderr
    app_url = postgres_server.url(DATABASE, APP_ROLE, APP_PASSWORD)
    started = datetime.now(timezone.utc).timestamp() - 1
    options = dict(
        store_url=app_url,
        app_name=APP,
        app_version="1.0.0",
        trace_url_template="https://traces.example/trace/{trace_id}",
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    monitors = []
    for name in ("web-1", "web-2"):
        os.environ["ERROR_EXPORTER_INSTANCE"] = name
        try:
            monitor = ErrorMonitor(**options)  # type: ignore[arg-type]
        finally:
            os.environ.pop("ERROR_EXPORTER_INSTANCE", None)
        monitor.start()
        monitors.append(monitor)
    token = incoming_trace.set((TRACE_ID, 0x00F067AA0BA902B7))  # as a request's traceparent
    try:
        first, second = (
            Workload(m, rate=50.0, seed=n, storm_every=0) for n, m in enumerate(monitors)
        )
        for _ in range(40):
            first.step()
            second.step()
        first.storm()
        first.deploy()  # 1.1.0: launch control is new, the ECU map error comes back
        for _ in range(20):
            first.step()
        assert all(m.flush(30) for m in monitors)
        # a group that 1.1.0 fixed: resolved now, and seen by nobody after that
        fixed = next(
            g
            for g in first.monitor.list_groups()
            if g["error_type"] == "MemoryError" or g["occurrence_count"] == 1
        )
        assert first.monitor.resolve_group(fixed["error_id"]) is not None
        assert all(m.flush(30) for m in monitors)
    finally:
        incoming_trace.reset(token)
        for monitor in monitors:
            monitor.stop(10)
    yield {
        "grafana_url": postgres_server.url(DATABASE, GRAFANA_ROLE, GRAFANA_PASSWORD),
        "start": started,
        "end": datetime.now(timezone.utc).timestamp() + 1,
        "regressed": first.deployed.resolved_error_id if first.deployed else None,
        "fixed": fixed["error_id"],
    }
    psql(postgres_server, "-c", f'DROP DATABASE "{DATABASE}" WITH (FORCE)')
    for role in (APP_ROLE, GRAFANA_ROLE):
        psql(postgres_server, "-c", f'DROP ROLE "{role}"')


def run(store: Mapping[str, Any], sql: str, variables: Mapping[str, str]) -> list[tuple]:
    import psycopg

    text = grafana_sql(sql, variables, store["start"], store["end"])
    with psycopg.connect(store["grafana_url"], autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(text)  # type: ignore[arg-type]
        return list(cur.fetchall())


def variable_values(store: Mapping[str, Any]) -> dict[str, str]:
    """Each variable as Grafana resolves it on load: a query variable's first value."""
    values: dict[str, str] = {"reports_ds": "error-exporter-reports", "error_type": ""}
    for name in ("app", "version", "error_id"):  # in board order: later ones use earlier
        rows = run(store, VARIABLES[name]["query"], values)
        assert rows, f"variable {name} has no values"
        values[name] = str(rows[0][0])
    return values


# ---------------------------------------------------------------------------- the tests


def test_the_board_reads_the_provisioned_postgres_source() -> None:
    source = VARIABLES["reports_ds"]
    assert source["type"] == "datasource" and source["query"] == "grafana-postgresql-datasource"
    provisioned = yaml.safe_load(
        (ROOT / "dashboards" / "provisioning" / "datasources" / "reports.yml").read_text()
    )["datasources"][0]
    assert provisioned["type"] == source["query"]
    assert provisioned["uid"] == source["current"]["value"]
    assert provisioned["user"] == "${REPORTS_DB_USER}"  # grafana_errors in docker-compose
    for panel in SQL_PANELS:
        assert panel["datasource"]["uid"] == "${reports_ds}", panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        for target in panel["targets"]:
            assert target["rawQuery"] and target["format"] == "table"


def test_variables_resolve_on_the_demo_store(demo_store) -> None:
    values = variable_values(demo_store)
    assert values["app"] == APP
    assert values["version"] == "1.1.0"  # the latest deploy first


@pytest.mark.parametrize("panel", SQL_PANELS, ids=lambda p: p["title"])
def test_every_panel_returns_rows_on_the_demo_store(demo_store, panel) -> None:
    values = variable_values(demo_store)
    title = panel["title"]
    if "Fixed" in title:
        values["version"] = "1.1.0"
    if "occurrences" in title or "Breadcrumbs" in title or "Instances" in title:
        values["error_id"] = str(demo_store["regressed"])
    for target in panel["targets"]:
        rows = run(demo_store, target["rawSql"], values)
        assert rows, f"{title}: no rows"


def test_the_deploy_story_names_what_it_brought_back_and_fixed(demo_store) -> None:
    values = {**variable_values(demo_store), "version": "1.1.0"}
    by_title = {p["title"]: p["targets"][0]["rawSql"] for p in SQL_PANELS}
    new = run(demo_store, by_title["New in ${version}"], values)
    assert {row[1] for row in new} == {"LaunchControlError"}
    regressed = run(demo_store, by_title["Regressed in ${version}"], values)
    assert [row[0] for row in regressed] == [demo_store["regressed"]]
    fixed = run(demo_store, by_title["Fixed in ${version}"], values)
    assert [row[0] for row in fixed] == [demo_store["fixed"]]
    top = run(demo_store, by_title["Top error groups"], values)
    trace_urls = {row[11] for row in top}
    assert f"https://traces.example/trace/{TRACE_ID:032x}" in trace_urls
    instances = run(demo_store, by_title["Instances"], {**values, "error_id": top[0][0]})
    assert {row[0] for row in instances} <= {"web-1", "web-2"} and instances


def test_grafana_role_cannot_write(demo_store) -> None:
    import psycopg

    with (
        psycopg.connect(demo_store["grafana_url"], autocommit=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("DELETE FROM groups")


def test_rows_link_to_occurrences_and_traces() -> None:
    by_title = {p["title"]: p for p in SQL_PANELS}
    for title in (
        "Top error groups",
        "New in ${version}",
        "Regressed in ${version}",
        "Fixed in ${version}",
    ):
        overrides = {
            o["matcher"]["options"]: o["properties"][0]["value"]
            for o in by_title[title]["fieldConfig"]["overrides"]
        }
        assert "var-error_id=${__data.fields.error_id}" in overrides["error_id"][0]["url"]
        assert overrides["trace_url"][0]["url"] == "${__data.fields.trace_url}"


def test_metric_panels_and_exemplars_link_to_the_reports() -> None:
    drilldown = json.loads((ROOT / "dashboards" / "error-exporter-drilldown.json").read_text())
    with_exemplars = [
        p for p in panels(drilldown) if any(t.get("exemplar") for t in p.get("targets", []))
    ]
    assert with_exemplars
    for panel in with_exemplars:
        urls = [link["url"] for link in panel["fieldConfig"]["defaults"]["links"]]
        assert any(u.startswith("/d/error-exporter-reports/") for u in urls), panel["title"]
    prometheus = yaml.safe_load(
        (ROOT / "dashboards" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    urls = [
        d.get("url", "")
        for d in prometheus["jsonData"]["exemplarTraceIdDestinations"]
        if d["name"] == "error_id"
    ]
    assert "/d/error-exporter-reports/reports?var-error_id=$${__value.raw}" in urls


def test_the_demo_command_writes_the_shared_store(postgres_server, tmp_path) -> None:
    """``error-exporter demo --store-url URL`` (what docker-compose and make stack run, there
    through ERROR_EXPORTER_STORE_URL) fills the tables the board reads."""
    import socket
    import sys

    url = postgres_server.new_database()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "demo",
            "--store-url",
            url,
            "--duration",
            "3",
            "--rate",
            "20",
            "--no-live",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert PASSWORD not in done.stdout + done.stderr
    groups = postgres_server.sql(url, "SELECT count(*) FROM groups WHERE app = 'app'")[0][0]
    counted = postgres_server.sql(url, "SELECT sum(occurrence_count) FROM group_instances")[0][0]
    assert groups > 0 and counted > 0
