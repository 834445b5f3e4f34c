"""One contract for every durable backend: the SQLite file, PostgreSQL and the
multiprocess directory, real ones.

Each test runs once per backend (``store``: the options that select it, and a way to
query what it holds). Multiprocess mode is decided when prometheus_client is first
imported, so its run of each test is a child pytest process started with
``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory): there, every monitor a test makes is a
worker of that one directory, as a recycled or second gunicorn worker would be.

What a restarted monitor serves, release state (first seen version, resolve,
regression) kept across processes, two apps in one database never
mixing, the schema version (older migrated, newer refused with one WARNING), retention
counted, and ``app_monitor_store_info`` naming the backend.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.monitoring import dropped, sample, settle

from exporter import ErrorMonitor, multiprocess
from exporter.multiprocess.sqlite_store import DB_NAME
from exporter.store.durable.tables import POSTGRESQL, SCHEMA_VERSION, SQLITE, steps

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Store:
    """A backend under test: the monitor options that select it, and SQL against it."""

    kind: str
    options: dict[str, Any]
    query: Callable[[str], list[tuple[Any, ...]]]
    backend_label: str
    scope: str
    url: str = ""  # what the CLI's --store takes
    file: Path | None = None  # the SQLite file (SQLITE kinds)
    metrics_shared: bool = False  # every monitor of the test reads the same counters
    ran_in_child: bool = False  # the test ran in a child process (see tests/conftest.py)


def sqlite_query(path: Path) -> Callable[[str], list[tuple[Any, ...]]]:
    def query_file(sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    return query_file


@pytest.fixture(params=["file", "postgresql", "multiprocess"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "multiprocess":
        if not multiprocess.enabled():
            return run_in_multiprocess_mode(request.node.nodeid, tmp_path)
        path = Path(str(multiprocess.multiproc_dir())) / DB_NAME
        return Store(
            SQLITE,
            {},
            sqlite_query(path),
            "multiprocess",
            "host",
            url=f"sqlite:///{path}",
            file=path,
            metrics_shared=True,
        )
    if request.param == "file":
        path = tmp_path / "errors.sqlite"
        return Store(
            SQLITE,
            {"store_url": f"sqlite:///{path}"},
            sqlite_query(path),
            "file",
            "host",
            url=f"sqlite:///{path}",
            file=path,
        )
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    return Store(
        POSTGRESQL,
        {"store_url": url},
        lambda sql: server.sql(url, sql),
        "postgresql",
        "fleet",
        url=url,
    )


def without_multiproc_dir() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}


def run_in_multiprocess_mode(nodeid: str, tmp_path: Path) -> Store:
    """Run this very test in a child pytest in multiprocess mode (a fresh directory);
    its failure is this test's."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", nodeid],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={
            **without_multiproc_dir(),
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "PYTHONPATH": str(REPO),
        },
    )
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-6000:] + done.stderr
    return Store(SQLITE, {}, lambda sql: [], "multiprocess", "host", ran_in_child=True)


def fail(message: str) -> None:
    raise ValueError(message)


def record(monitor: ErrorMonitor, message: str) -> str:
    try:
        fail(message)
    except ValueError as exc:
        error_id = monitor.record_error(exc)
    assert error_id is not None
    return error_id


def new_total(monitor: ErrorMonitor, version: str) -> float:
    return sample(monitor, "app_error_groups_new_total", {"app_version": version})


def regressed_total(monitor: ErrorMonitor, version: str) -> float:
    return sample(monitor, "app_error_groups_regressed_total", {"app_version": version})


def test_a_restarted_monitor_serves_what_was_written(make_monitor, store):
    first = make_monitor(**store.options, app_version="1.0")
    error_id = record(first, "kept")
    record(first, "kept")
    settle(first)
    first.stop()
    second = make_monitor(**store.options, app_version="1.0")
    group = second.get_group(error_id)
    assert group is not None
    assert group["group"]["occurrence_count"] == 2
    assert group["group"]["first_seen_version"] == "1.0"
    assert len(group["occurrences"]) == 2
    assert store.query("SELECT count(*) FROM records") == [(2,)]


def test_a_group_is_new_once_and_new_in_holds_across_processes(make_monitor, store):
    old = make_monitor(**store.options, app_version="1.0")
    error_id = record(old, "known since 1.0")
    settle(old)
    assert new_total(old, "1.0") == 1
    old.stop()
    new = make_monitor(**store.options, app_version="1.1")
    assert record(new, "known since 1.0") == error_id
    settle(new)
    assert new_total(new, "1.1") == 0  # seen before, by another process of the app
    assert [g["error_id"] for g in new.list_groups(new_in="1.0")] == [error_id]
    assert new.list_groups(new_in="1.1") == []
    assert store.query(
        "SELECT occurrence_count, first_seen_version, last_seen_version FROM groups"
    ) == [(2, "1.0", "1.1")]


def test_a_resolve_holds_and_the_next_occurrence_regresses_once(make_monitor, store):
    first = make_monitor(**store.options, app_version="1.0")
    error_id = record(first, "fixed in 1.0")
    settle(first)
    assert first.resolve_group(error_id)["resolved"] is True
    settle(first)
    first.stop()
    assert store.query("SELECT resolved_version, regressed FROM groups") == [("1.0", 0)]
    second = make_monitor(**store.options, app_version="1.1")
    assert second.get_group(error_id)["group"]["resolved"] is True
    seen: list[str] = []
    second.register_regression_callback(lambda report: seen.append(report.error_id))
    record(second, "fixed in 1.0")
    record(second, "fixed in 1.0")
    settle(second)
    assert seen == [error_id]
    assert regressed_total(second, "1.1") == 1
    summary = second.get_group(error_id)["group"]
    assert summary["regressed"] is True and summary["resolved"] is False
    assert store.query("SELECT regressed, resolved_at FROM groups") == [(1, None)]


def test_two_apps_in_one_store_never_mix(make_monitor, store):
    billing = make_monitor(**store.options, app_name="billing", app_version="1.0")
    same_error = record(billing, "the same code, two apps")
    settle(billing)
    billing.stop()
    search = make_monitor(**store.options, app_name="search", app_version="7.0")
    assert search.list_groups() == []
    assert record(search, "the same code, two apps") == same_error
    settle(search)
    assert new_total(search, "7.0") == 1  # new for this app, whatever the other saw
    assert sorted(store.query("SELECT app, occurrence_count FROM groups")) == [
        ("billing", 1),
        ("search", 1),
    ]


def test_an_older_schema_is_migrated(make_monitor, store):
    conn_rows = steps(store.kind, 0, "app", target=2)
    if store.kind == SQLITE:
        assert store.file is not None
        conn = sqlite3.connect(store.file)
        for statement in conn_rows:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
        conn.close()
    else:
        store.query("; ".join([*conn_rows, "INSERT INTO meta VALUES ('schema_version', '2')"]))
    monitor = make_monitor(**store.options, app_version="2.0")
    record(monitor, "after the migration")
    settle(monitor)
    assert store.query("SELECT app, occurrence_count FROM groups") == [("app", 1)]
    if store.kind == POSTGRESQL:
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [
            (str(SCHEMA_VERSION),)
        ]


def test_a_newer_schema_is_refused_with_one_warning(make_monitor, store, caplog):
    if store.kind == SQLITE:
        assert store.file is not None
        conn = sqlite3.connect(store.file)
        conn.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE groups (x); CREATE TABLE records (y);"
            "PRAGMA user_version = 9;"
        )
        conn.close()
    else:
        store.query(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); "
            "INSERT INTO meta VALUES ('schema_version', '9')"
        )
    caplog.set_level(logging.WARNING, logger="exporter")
    monitor = make_monitor(**store.options)
    record(monitor, "kept in memory")
    settle(monitor)
    warnings = [r.getMessage() for r in caplog.records if "version 9" in r.getMessage()]
    assert len(warnings) == 1 and "newer" in warnings[0]
    assert (
        sample(monitor, "app_monitor_store_info", {"backend": "memory", "release_scope": "process"})
        == 1
    )
    assert len(monitor.list_groups()) == 1


def test_retention_by_size_is_enforced_and_counted(make_monitor, store):
    monitor = make_monitor(**store.options, store_max_records=3, store_retention_seconds=0.5)
    for n in range(8):
        record(monitor, f"one of many {n}")
    settle(monitor)
    monitor.stop()  # the last write and (due every 0.25 s here) a retention pass
    again = make_monitor(**store.options, store_max_records=3, store_retention_seconds=3600)
    settle(again)
    kept = store.query("SELECT count(*) FROM records")[0][0]
    assert kept <= 3
    counted = dropped(again, "store_max_records") + dropped(again, "store_retention")
    if not store.metrics_shared:  # else: one directory's counters, read by either
        counted += dropped(monitor, "store_max_records") + dropped(monitor, "store_retention")
    assert counted == 8 - kept


def test_the_store_info_gauge_names_the_backend(make_monitor, store):
    monitor = make_monitor(**store.options, namespace="shop")
    assert (
        sample(
            monitor,
            "shop_monitor_store_info",
            {"backend": store.backend_label, "release_scope": store.scope},
        )
        == 1
    )
    if store.backend_label == "multiprocess":
        return  # every monitor of this process is a worker of the directory
    memory = make_monitor()
    assert (
        sample(memory, "app_monitor_store_info", {"backend": "memory", "release_scope": "process"})
        == 1
    )


def test_the_cli_reads_and_resolves_either_store_by_app(make_monitor, store, tmp_path):
    import json

    repo = REPO

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "exporter", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=repo,
            env={**without_multiproc_dir(), "PYTHONPATH": str(repo)},
        )

    url = store.url
    for app, times in (("billing", 2), ("search", 3)):
        monitor = make_monitor(**store.options, app_name=app, app_version="1.0")
        for _ in range(times):
            error_id = record(monitor, "the same code in two apps")
        settle(monitor)
        monitor.stop()
    out = tmp_path / "billing.json"
    done = cli("export", "--store", url, "--app", "billing", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(out.read_text())["all_records"]) == 2
    done = cli("export", "--store", url, "-o", str(out))
    assert len(json.loads(out.read_text())["all_records"]) == 5  # every app
    ambiguous = cli("resolve", "--store", url, error_id)
    assert ambiguous.returncode == 2 and "--app" in ambiguous.stderr
    done = cli("resolve", "--store", url, "--app", "search", error_id)
    assert done.returncode == 0 and f"resolved {error_id}" in done.stdout, done.stderr
    assert sorted(store.query("SELECT app, resolved_at IS NOT NULL FROM groups")) == [
        ("billing", False),
        ("search", True),
    ]
    unknown = cli("resolve", "--store", url, "--app", "search", "ffffffffffffffff")
    assert unknown.returncode == 2 and "no group" in unknown.stderr
