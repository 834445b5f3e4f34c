"""The fleet's reports from any instance, or from none: a real PostgreSQL, real processes.

Two app processes write one shared store. Each one's ``/api/v1/errors`` shows the
fleet's groups (counts summed over both, each group's per-instance counts), not its own
share; then, with no app running, ``error-exporter serve --store URL`` serves the very
same groups, detail and export. Every answer validates against the OpenAPI document, and
the DSN's password appears in none of them (nor in the server's output).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from support.postgres import PASSWORD

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD = 120.0  # seconds: only to end a test that would otherwise hang

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=HANG_GUARD) as answer:
        return json.loads(answer.read())


def fleet_view(base: str) -> dict[str, tuple[int, list[int], str | None]]:
    """error_id -> (count, per-instance counts, first seen version), as ``base`` serves it."""
    errors = fetch(base + "/api/v1/errors")["errors"]
    return {
        g["error_id"]: (
            g["occurrence_count"],
            [i["occurrence_count"] for i in g["instances"]],
            g["first_seen_version"],
        )
        for g in errors
    }


def validate(base: str, error_id: str) -> None:
    """The answers a fleet read gives match the documented schemas (instances included)."""
    doc = fetch(base + "/api/v1/openapi.json")
    cases = {
        "/api/v1/errors": "ErrorList",
        f"/api/v1/errors/{error_id}": "ErrorDetail",
        "/api/v1/statistics": "Statistics",
        "/api/v1/analysis": "Analysis",
        "/api/v1/export": "Export",
    }
    for path, schema in cases.items():
        validator = jsonschema_rs.validator_for(
            {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
        )
        errors = [str(e) for e in validator.iter_errors(fetch(base + path))]
        assert errors == [], (path, errors[:3])


def test_any_instance_and_serve_store_show_the_same_fleet(postgres_server, apps):
    url = postgres_server.new_database()
    first, second = apps(url, "1.0"), apps(url, "1.1")
    alpha = first.ask("raise alpha 3")["ids"][0]
    assert second.ask("raise alpha 2")["ids"] == [alpha]
    beta = second.ask("raise beta")["ids"][0]
    assert first.ask("flush") and second.ask("flush")

    views = [fleet_view(app.ask("serve")) for app in (first, second)]
    expected = {alpha: (5, [3, 2], "1.0"), beta: (1, [1], "1.1")}
    assert views == [expected, expected]  # each instance shows the other's share too
    base = first.ask("serve")
    detail = fetch(f"{base}/api/v1/errors/{alpha}")
    assert len(detail["occurrences"]) == 5  # both instances' occurrences
    assert len(fetch(base + "/api/v1/export")["all_records"]) == 6
    assert fetch(base + "/api/v1/statistics")["total_errors"] == 6
    validate(base, alpha)
    for app in (first, second):
        app.stop()

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--store", url, "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert " on http://" in line, line + (server.stderr.read() if server.stderr else "")
        alone = line.split(" on ", 1)[1].split()[0]
        assert fleet_view(alone) == expected  # no app running: the same groups
        served = fetch(f"{alone}/api/v1/errors/{alpha}")
        assert served["group"]["instances"] == detail["group"]["instances"]
        assert [o["error_id"] for o in served["occurrences"]] == [alpha] * 5
        export = fetch(alone + "/api/v1/export")
        assert len(export["all_records"]) == 6
        assert export["analysis"]["total_unique_errors"] == 2
        validate(alone, alpha)
        assert fetch(alone + "/api/v1/errors?new_in=1.1")["errors"][0]["error_id"] == beta
        request = urllib.request.Request(f"{alone}/api/v1/errors/{alpha}/resolve", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:  # read-only: resolve --store
            urllib.request.urlopen(request, timeout=HANG_GUARD)
        assert refused.value.code in (403, 501)
    finally:
        server.terminate()
        out, err = server.communicate(timeout=HANG_GUARD)
    assert server.returncode == 0, err
    assert PASSWORD not in line + out + err


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_schema_4_files_earlier_counts_under_an_unknown_instance(dialect, pg_url) -> None:
    """Counts written before version 4 knew no instance: filed under ``unknown``, so a
    group's per-instance counts still add up to its count after the migration."""
    import sqlite3

    from exporter.store.durable.tables import SQLITE, UNKNOWN_INSTANCE, steps

    group = (
        "INSERT INTO groups (app, error_id, occurrence_count, first_occurrence, "
        "last_occurrence, report, state) VALUES ('shop', 'e1', 7, 1.0, 2.0, '{}', '{}')"
    )
    if dialect == SQLITE:
        conn: Any = sqlite3.connect(":memory:")
        execute = conn.execute
    else:
        import psycopg

        conn = psycopg.connect(pg_url, autocommit=True)
        execute = conn.execute
    try:
        for statement in [*steps(dialect, 0, "shop", target=3), group, *steps(dialect, 3, "shop")]:
            execute(statement)
        rows = execute(
            "SELECT app, error_id, instance, occurrence_count, last_seen FROM group_instances"
        ).fetchall()
        assert [tuple(r) for r in rows] == [("shop", "e1", UNKNOWN_INSTANCE, 7, 2.0)]
        execute(
            "INSERT INTO records (app, ts, error_id, data, instance) "
            "VALUES ('shop', 3.0, 'e1', '{}', 'web-1')"
        )
    finally:
        conn.close()
