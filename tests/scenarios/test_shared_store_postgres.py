"""The shared store on a real PostgreSQL, with real processes: one picture for the fleet.

Two processes of app versions 1.0 and 1.1 agree: an error 1.0 had is not new in 1.1; a
group resolved through one process (or the CLI) regresses when the other sees it,
counted once; ``analyze --store`` and ``export --store`` show both processes'
occurrences. A database outage mid-run costs the app nothing and loses nothing kept.
Concurrent first occurrences of one group in several processes (migrating a fresh
database at the same moment): one row, one "new". The DSN's password never shows.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from support.app_process import (
    HANG_GUARD,
    REPO,
)
from support.postgres import PASSWORD

from exporter import ErrorMonitor
from exporter.config import ConfigError
from exporter.store.durable.tables import SCHEMA_VERSION

CLI = [sys.executable, "-m", "exporter"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=HANG_GUARD, cwd=REPO
    )


def wait_for(check: Any, what: str) -> None:
    """Poll until ``check()`` holds (the deadline only ends a hang)."""
    deadline = time.monotonic() + HANG_GUARD
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


def total(samples: dict[str, float]) -> float:
    return sum(samples.values())


def test_two_versions_agree_on_one_picture(apps, pg_url, postgres_server, tmp_path):
    old = apps(pg_url, "1.0")
    a = old.ask("raise alpha 3")["ids"][0]
    assert old.ask("flush")
    new = apps(pg_url, "1.1")
    assert new.ask("raise alpha 2")["ids"] == [a]
    b = new.ask("raise beta")["ids"][0]
    assert new.ask("flush")
    # alpha is 1.0's: not new in 1.1; beta is; groups_new moved once per group in total
    assert old.ask("metrics")["app_error_groups_new_total"] == {"app_version=1.0": 1.0}
    assert new.ask("metrics")["app_error_groups_new_total"] == {"app_version=1.1": 1.0}
    assert new.ask("group " + a)["first_seen_version"] == "1.0"
    # resolved through the old process (as its API does); the new one sees it and regresses
    assert old.ask("resolve " + a)["resolved"] is True
    assert old.ask("flush")
    assert new.ask("raise alpha")["ids"] == [a]
    assert new.ask("flush")
    assert old.ask("raise alpha")["ids"] == [a]  # after the regression: not another one
    assert old.ask("flush")
    assert new.ask("regressions") == [a]
    assert old.ask("regressions") == []
    assert total(new.ask("metrics")["app_error_groups_regressed_total"]) == 1
    assert total(old.ask("metrics")["app_error_groups_regressed_total"]) == 0
    # resolved with the CLI against the store; the old process brings beta back
    done = cli("resolve", "--store", pg_url, b)
    assert done.returncode == 0, done.stderr
    assert f"resolved {b}" in done.stdout
    assert old.ask("raise beta")["ids"] == [b]
    assert old.ask("flush")
    assert old.ask("regressions") == [b]
    assert old.ask("group " + b)["regressed"] is True
    # the store's picture: every process's occurrences
    assert sorted(
        postgres_server.sql(
            pg_url,
            "SELECT error_id, occurrence_count, first_seen_version, last_seen_version FROM groups",
        )
    ) == sorted([(a, 7, "1.0", "1.0"), (b, 2, "1.1", "1.0")])
    report = cli("analyze", "--store", pg_url, "--json")
    assert report.returncode == 0, report.stderr
    analysis = json.loads(report.stdout)
    assert json.dumps(analysis).count(a) >= 1 and json.dumps(analysis).count(b) >= 1
    output = tmp_path / "export.json"
    exported = cli("export", "--store", pg_url, "-o", str(output))
    assert exported.returncode == 0, exported.stderr
    document = json.loads(output.read_text())
    by_group = {g: sum(1 for r in document["all_records"] if r["error_id"] == g) for g in (a, b)}
    assert by_group == {a: 7, b: 2}
    texts = [
        *old.seen,
        *new.seen,
        old.stop(),
        new.stop(),
        report.stdout,
        report.stderr,
        exported.stdout,
        exported.stderr,
        done.stdout,
        done.stderr,
        output.read_text(),
    ]
    assert not [t for t in texts if PASSWORD in t]


def test_an_outage_mid_run_costs_the_app_nothing_and_loses_nothing_kept(
    apps, pg_url, postgres_server
):
    app = apps(pg_url, "1.0")
    assert app.ask("raise before 5")["clean"]
    assert app.ask("flush")
    postgres_server.stop_server()
    try:
        during = [app.ask(f"raise during{n} 20") for n in range(5)]
        assert all(answer["clean"] and answer["ids"] for answer in during)
        assert app.ask("flush")  # the worker tried, failed, kept the batch
        metrics = app.ask("metrics")
        assert total(metrics["app_monitor_internal_errors_total"]) >= 1
    finally:
        postgres_server.start_server()

    def arrived() -> bool:
        app.ask("flush")
        return postgres_server.sql(
            pg_url, "SELECT coalesce(sum(occurrence_count), 0), count(*) FROM groups"
        )[0] == (105, 6)

    wait_for(arrived, "the buffered batch to arrive")
    assert postgres_server.sql(pg_url, "SELECT count(*) FROM records") == [(105,)]
    metrics = app.ask("metrics")
    assert metrics["app_error_reports_dropped_total"]["reason=store_write_failed"] == 0
    assert total(metrics["app_error_groups_new_total"]) == 6
    log = app.stop()
    assert "running on memory" in log and PASSWORD not in log


def test_concurrent_first_occurrences_give_one_row_and_one_new(apps, pg_url, postgres_server):
    # a fresh database: the processes also create the schema at the same moment (one
    # migrates under the advisory lock, the others wait and find it done)
    fleet = [apps(pg_url, "1.0", wait=False) for _ in range(4)]
    for app in fleet:
        app.ready()
    for app in fleet:  # every capture first, then every write: the inserts race
        app.process.stdin.write("raise shared 3\n")  # type: ignore[union-attr]
        app.process.stdin.flush()  # type: ignore[union-attr]
    ids = {app._read()["ids"][0] for app in fleet}
    assert len(ids) == 1
    for app in fleet:
        app.process.stdin.write("flush\n")  # type: ignore[union-attr]
        app.process.stdin.flush()  # type: ignore[union-attr]
    assert all(app._read() for app in fleet)
    assert postgres_server.sql(pg_url, "SELECT count(*), sum(occurrence_count) FROM groups") == [
        (1, 12)
    ]
    news = [total(app.ask("metrics")["app_error_groups_new_total"]) for app in fleet]
    assert sorted(news) == [0, 0, 0, 1]
    assert postgres_server.sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    # each of the four processes is an instance of its own, and their counts add up
    assert postgres_server.sql(
        pg_url, "SELECT count(*), sum(occurrence_count) FROM group_instances"
    ) == [(4, 12)]


def test_the_password_never_shows(postgres_server, tmp_path, caplog):
    closed = postgres_server.url("nowhere").replace(f":{postgres_server.port}/", ":9/")
    caplog.set_level(logging.DEBUG)
    monitor = ErrorMonitor(
        store_url=closed,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    monitor.start()
    try:
        try:
            raise ValueError("while the store is away")
        except ValueError as exc:
            assert monitor.record_error(exc) is not None
        assert monitor.flush(30)
        from prometheus_client import generate_latest

        exposed = generate_latest(monitor.registry).decode()
        exported = json.dumps(monitor.export_data(), default=str)
        shown = repr(monitor.config) + str(monitor.config)
    finally:
        monitor.stop(5)
    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    assert "could not connect to the store postgresql://exporter_test:***@" in logged
    for text in (logged, exposed, exported, shown):
        assert PASSWORD not in text
    with pytest.raises(ConfigError) as refused:
        ErrorMonitor(store_url=closed.replace("postgresql://", "mysql://"))
    assert PASSWORD not in str(refused.value) and "***" in str(refused.value)
    config = tmp_path / "bad.yaml"
    config.write_text(f"store_url: {closed.replace('postgresql://', 'mysql://')}\n")
    checked = cli("check-config", str(config))
    assert checked.returncode == 2 and "store_url" in checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr
    unreachable = cli("analyze", "--store", closed, "--json")
    assert unreachable.returncode == 2 and "cannot connect" in unreachable.stderr
    assert PASSWORD not in unreachable.stdout + unreachable.stderr


def test_a_postgresql_url_without_psycopg_names_the_extra():
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from exporter import ErrorMonitor\n"
        "from exporter.config import ConfigError\n"
        "try:\n"
        "    ErrorMonitor(store_url='postgresql://u:secret@db/errors')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD, cwd=REPO
    )
    assert "pip install 'error-exporter[postgres]'" in done.stdout, done.stderr
    assert "secret" not in done.stdout


def test_tls_parameters_pass_through_to_psycopg(postgres_server):
    from exporter.store.durable import postgres_database as db

    # the test server has no TLS: sslmode=require reaching psycopg makes it refuse
    with pytest.raises(db.StoreUnavailable) as refused:
        db.connect(postgres_server.url("postgres") + "?sslmode=require")
    assert "SSL" in str(refused.value) and PASSWORD not in str(refused.value)
    conn = db.connect(postgres_server.url("postgres") + "?sslmode=disable")
    conn.close()


def test_a_forked_child_writes_the_shared_store_on_its_own_connection(
    make_monitor, pg_url, postgres_server
):
    import multiprocessing

    parent = make_monitor(store_url=pg_url, app_version="1.0")

    def capture(kind: type[Exception]) -> None:
        try:
            raise kind("one group per type")
        except kind as exc:
            parent.record_error(exc)

    capture(KeyError)
    assert parent.flush(30)

    def child() -> None:
        capture(LookupError)
        parent.flush(30)
        parent.stop(5)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(HANG_GUARD)
    assert process.exitcode == 0
    capture(KeyError)
    assert parent.flush(30)  # the parent's connection outlived the child
    assert sorted(postgres_server.sql(pg_url, "SELECT occurrence_count FROM groups")) == [
        (1,),
        (2,),
    ]


def test_the_documented_roles_are_enough_for_the_app_and_read_only_for_grafana(postgres_server):
    import psycopg

    deployment = (REPO / "docs" / "deployment.md").read_text()
    section = deployment[deployment.index("## Shared store (PostgreSQL)") :]
    sql = section[section.index("```sql") + len("```sql") :]
    sql = sql[: sql.index("```")]
    before, after = sql.split("\\c errors")
    admin = postgres_server.url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in before.split(";"):
            if statement.strip():
                conn.execute(statement)  # type: ignore[call-overload]
    with psycopg.connect(postgres_server.url("errors"), autocommit=True) as conn:
        for statement in after.split(";"):
            if statement.strip():
                conn.execute(statement)  # type: ignore[call-overload]
    app_url = postgres_server.url("errors", "error_exporter", "change-me")
    monitor = ErrorMonitor(
        store_url=app_url,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    monitor.start()
    try:
        try:
            raise ValueError("written by the least-privileged role")
        except ValueError as exc:
            monitor.record_error(exc)
        assert monitor.flush(30)
        assert (
            monitor.registry.get_sample_value("app_monitor_internal_errors_total") == 0
        )  # migrated, wrote, pruned: no failure
    finally:
        monitor.stop(5)
    grafana = postgres_server.url("errors", "grafana_errors", "change-me-too")
    assert postgres_server.sql(grafana, "SELECT count(*) FROM groups") == [(1,)]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        postgres_server.sql(grafana, "DELETE FROM records")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        postgres_server.sql(app_url, "CREATE TABLE public.elsewhere (x int)")


def _waiting_on_a_lock(server: Any, url: str) -> bool:
    return server.sql(url, "SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0] > 0


def one_group(make_monitor: Any, message: str) -> tuple[str, Any]:
    """One group stored by a new monitor: its error id and the group in the monitor's
    memory, for the tests that write its batches by hand as two writers."""
    memory = make_monitor()
    try:
        raise ValueError(message)
    except ValueError as exc:
        error_id = memory.record_error(exc)
    assert memory.flush(30)
    return error_id, memory.store.groups[error_id]


def test_a_second_writer_of_a_new_group_waits_and_adds_not_creates(
    make_monitor, pg_url, postgres_server
):
    """Deterministic: writer A's transaction stays open after its INSERT; B's batch of the
    same new group waits on the row, then finds it and adds (one row, one "new")."""
    import threading

    from exporter.store.durable import postgres_database as db
    from exporter.store.durable.tracking import Changes

    error_id, group = one_group(make_monitor, "first seen by two writers at once")

    def batch(count: int) -> Changes:
        changes = Changes(groups={error_id})
        changes.seen(error_id, count, group.report.last_occurrence)
        return changes

    first, second = db.connect(pg_url), db.connect(pg_url)
    db.ensure_schema(first, "test", "app")
    results: dict[str, db.Written] = {}
    try:
        with first.transaction():
            results["a"] = db.write(first, "app", batch(2), {error_id: group})
            writer = threading.Thread(
                target=lambda: results.update(
                    b=db.write(second, "app", batch(3), {error_id: group})
                )
            )
            writer.start()
            wait_for(lambda: _waiting_on_a_lock(postgres_server, pg_url), "B to wait")
        writer.join(HANG_GUARD)
    finally:
        first.close()
        second.close()
    assert [e for e, _ in results["a"].created] == [error_id]
    assert results["b"].created == []
    assert results["b"].states[error_id]["occurrence_count"] == 5
    assert postgres_server.sql(pg_url, "SELECT count(*), sum(occurrence_count) FROM groups") == [
        (1, 5)
    ]


def test_two_processes_migrating_at_once_one_migrates_the_other_waits(pg_url, postgres_server):
    import threading

    from exporter.store.durable import postgres_database as db

    first, second = db.connect(pg_url), db.connect(pg_url)
    done: list[int] = []
    try:
        with first.transaction():
            first.execute("SELECT pg_advisory_xact_lock(%s)", (db.MIGRATION_LOCK,))
            other = threading.Thread(
                target=lambda: (
                    db.ensure_schema(second, "test", "app"),
                    done.append(db.version_of(second)),
                )
            )
            other.start()
            wait_for(lambda: _waiting_on_a_lock(postgres_server, pg_url), "the other to wait")
            db.ensure_schema(first, "test", "app")  # migrates, inside the held lock
        other.join(HANG_GUARD)
    finally:
        first.close()
        second.close()
    assert done == [SCHEMA_VERSION]  # it waited, then found the schema current (no step ran twice)


def test_a_database_down_at_start_costs_nothing_and_gets_everything_later(
    apps, pg_url, postgres_server
):
    postgres_server.stop_server()
    try:
        app = apps(pg_url, "1.0")  # starts on memory
        answer = app.ask("raise early 30")
        assert answer["clean"] and answer["ids"]
        assert app.ask("flush")
        metrics = app.ask("metrics")
        assert metrics["app_monitor_store_info"] == {"backend=postgresql,release_scope=fleet": 1.0}
    finally:
        postgres_server.start_server()

    def arrived() -> bool:
        app.ask("flush")
        if postgres_server.sql(pg_url, "SELECT to_regclass('groups')") == [(None,)]:
            return False  # not reconnected yet: the app creates the tables then
        return postgres_server.sql(
            pg_url, "SELECT coalesce(sum(occurrence_count), 0) FROM groups"
        ) == [(30,)]

    wait_for(arrived, "the kept batch to arrive")
    assert total(app.ask("metrics")["app_error_groups_new_total"]) == 1
    assert PASSWORD not in app.stop()


def test_an_instance_resolves_a_group_only_another_has_seen(apps, pg_url):
    quiet = apps(pg_url, "1.0")  # loaded an empty store: it has never seen the group
    busy = apps(pg_url, "1.0")
    error_id = busy.ask("raise elsewhere")["ids"][0]
    assert busy.ask("flush")
    resolved = quiet.ask("resolve " + error_id)  # as its API would: in the database
    assert resolved["error_id"] == error_id and resolved["resolved"] is True
    assert busy.ask("raise elsewhere")["ids"] == [error_id]
    assert busy.ask("flush")
    assert busy.ask("regressions") == [error_id]
    assert quiet.ask("resolve 0000000000000000") is None


def test_while_the_database_is_away_the_buffer_is_bounded_and_every_drop_counted(
    make_monitor, pg_url, postgres_server
):
    from support.monitoring import dropped

    monitor = make_monitor(store_url=pg_url, store_max_records=10)

    def capture(n: int) -> None:
        for i in range(n):
            try:
                raise ValueError(f"kept or counted {i}")
            except ValueError as exc:
                assert monitor.record_error(exc) is not None

    capture(5)
    assert monitor.flush(30)
    postgres_server.stop_server()
    try:
        capture(50)
        assert monitor.flush(30)
    finally:
        postgres_server.start_server()

    def arrived() -> bool:
        monitor.flush(30)
        return postgres_server.sql(pg_url, "SELECT sum(occurrence_count) FROM groups") == [(55,)]

    wait_for(arrived, "the kept records to arrive")
    records = postgres_server.sql(pg_url, "SELECT count(*) FROM records")[0][0]
    assert records == 5 + 10  # before the outage, and the newest store_max_records of it
    assert dropped(monitor, "store_write_failed") == 40  # the counts stayed exact


def test_retention_runs_in_one_process_at_a_time(make_monitor, pg_url, postgres_server):
    from exporter.store.durable import postgres_database as db

    monitor = make_monitor(store_url=pg_url)
    for i in range(3):
        try:
            raise ValueError(f"old {i}")
        except ValueError as exc:
            monitor.record_error(exc)
    assert monitor.flush(30)
    holder, pruner = db.connect(pg_url), db.connect(pg_url)
    try:
        with holder.transaction():  # another process is pruning this app right now
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (db.RETENTION_LOCK, "app")
            )
            skipped = db.prune(pruner, "app", cutoff=time.time() + 60, max_records=0)
        done = db.prune(pruner, "app", cutoff=time.time() + 60, max_records=0)
    finally:
        holder.close()
        pruner.close()
    assert skipped.skipped and skipped.by_age == skipped.by_size == 0
    assert not done.skipped and done.by_age == 3 and len(done.groups) == 1


def test_a_batch_larger_than_one_statement_is_written_whole(make_monitor, pg_url, postgres_server):
    from exporter.store.durable import postgres_database as db
    from exporter.store.durable.tracking import Changes

    many = 2 * db.ROWS_PER_STATEMENT + 100
    memory = make_monitor(
        error_buffer_size=many, max_records=many, occurrence_budget_per_second=many
    )
    for n in range(many):
        kind = type(f"Kind{n}Error", (Exception,), {})
        try:
            raise kind("one group each")
        except kind as exc:
            memory.record_error(exc)
    assert memory.flush(60)
    groups = dict(memory.store.groups)
    assert len(groups) == many
    batch = Changes(groups=set(groups))
    for error_id, group in groups.items():
        batch.seen(error_id, 2, group.report.last_occurrence)
    conn = db.connect(pg_url)
    try:
        db.ensure_schema(conn, "test", "app")
        first = db.write(conn, "app", batch, groups)  # one transaction, several statements
        again = db.write(conn, "app", batch, groups)
    finally:
        conn.close()
    assert len(first.created) == many and again.created == []
    assert len(again.states) == many
    assert postgres_server.sql(pg_url, "SELECT count(*), sum(occurrence_count) FROM groups") == [
        (many, 4 * many)
    ]


def _share(monitor: ErrorMonitor, user: str, component: str, plugin: str, severity: str) -> str:
    """One occurrence of the group both writers share (one raise statement: one group)."""
    try:
        raise KeyError("one group, written by two processes")
    except KeyError as exc:
        error_id = monitor.record_error(
            exc, component=component, plugin=plugin, severity=severity, user_id=user
        )
    assert error_id is not None
    return error_id


def test_two_writers_merge_a_groups_users_components_plugins_severity_and_coalesced(
    make_monitor, pg_url, postgres_server, monkeypatch
):
    """Each process holds only its share of a group: the stored state is the union of
    both (users; components and plugins with their counts), the highest severity, and the
    sum of what each coalesced, added once however many batches follow (the last writer's
    share alone would lose the other's)."""
    from exporter.config import MonitorConfig
    from exporter.store.durable.fleet_reader import FleetReader
    from exporter.store.durable.rows import INSTANCE_ENV

    writers = []
    for name in ("host-a", "host-b"):  # two instances of the app, as two processes are
        monkeypatch.setenv(INSTANCE_ENV, name)
        writers.append(make_monitor(store_url=pg_url, app_version="1.0"))
    a, b = writers
    error_id = _share(a, "u1", "checkout", "stripe", "medium")
    _share(a, "u2", "checkout", "stripe", "medium")
    assert a.flush(30)
    assert a.store.add_to_group(error_id, "", 3, time.time())  # a storm's repeats, in a
    assert a.flush(30)
    assert _share(b, "u2", "search", "solr", "critical") == error_id
    _share(b, "u3", "search", "solr", "medium")
    _share(b, "u3", "search", "solr", "medium")
    assert b.flush(30)  # merged into what a wrote
    assert b.store.add_to_group(error_id, "", 2, time.time())
    assert b.flush(30)
    _share(a, "u1", "checkout", "stripe", "low")  # a writes again: b's share stays
    assert a.flush(30)
    assert b.store.add_to_group(error_id, "", 1, time.time())
    assert b.flush(30)
    assert a.flush(30) and b.flush(30)  # nothing new: nothing added twice

    [(count, stored)] = postgres_server.sql(
        pg_url, "SELECT occurrence_count, state FROM groups WHERE error_id = %s", (error_id,)
    )
    state = json.loads(stored)
    assert count == 3 + 3 + 3 + 2 + 1  # a's and b's occurrences, coalesced ones included
    assert state["users"] == ["u1", "u2", "u3"]
    assert state["components"] == {"checkout": 3, "search": 3}
    assert state["plugins"] == {"stripe": 3, "solr": 3}
    assert state["max_severity"] == "critical"
    assert state["coalesced"] == 3 + 2 + 1
    reader = FleetReader(pg_url, "app", MonitorConfig())
    try:
        group = reader.get_group(error_id)
    finally:
        reader.close()
    assert group is not None
    summary = group["group"]
    assert (summary["affected_users"], summary["severity"], summary["coalesced_occurrences"]) == (
        3,
        "critical",
        6,
    )
    assert sorted(summary["components"]) == ["checkout", "search"]
    assert sorted(summary["plugins"]) == ["solr", "stripe"]
    assert [i["instance"] for i in summary["instances"]] == ["host-a", "host-b"]
    # a process started now loads the fleet's state, and adds only its own coalesced part
    monkeypatch.setenv(INSTANCE_ENV, "host-c")
    c = make_monitor(store_url=pg_url, app_version="1.0")
    loaded = c.store.groups[error_id]
    assert (loaded.users, loaded.coalesced) == ({"u1", "u2", "u3"}, 6)
    assert c.store.add_to_group(error_id, "", 4, time.time())
    assert c.flush(30)
    [(stored,)] = postgres_server.sql(pg_url, "SELECT state FROM groups")
    assert json.loads(stored)["coalesced"] == 10


def test_a_waiting_writer_merges_into_the_state_it_waited_for(
    make_monitor, pg_url, postgres_server
):
    """Deterministic: writer A's transaction stays open after its batch; B's batch of the
    same group waits on A's row, then merges its share into A's (never into the state as
    it was before A's, nor replacing it)."""
    import threading

    from exporter.store.durable import postgres_database as db
    from exporter.store.durable.batch import StateMerge
    from exporter.store.durable.postgres_store import _copy
    from exporter.store.durable.tracking import Changes

    error_id, group = one_group(make_monitor, "one group, two writers at once")

    def share(users: list[str], component: str, coalesced: int) -> dict[str, Any]:
        mine = _copy(group)
        mine.users, mine.components, mine.coalesced = set(users), {component: 1}, coalesced
        return {error_id: mine}

    def batch() -> Changes:
        changes = Changes(groups={error_id})
        changes.seen(error_id, 1, group.report.last_occurrence)
        return changes

    first, second = db.connect(pg_url), db.connect(pg_url)
    db.ensure_schema(first, "test", "app")
    try:
        db.write(first, "app", batch(), share([], "start", 0))  # the row exists
        with first.transaction():
            db.write(first, "app", batch(), share(["u1"], "a", 2), states=StateMerge())
            writer = threading.Thread(
                target=lambda: db.write(
                    second, "app", batch(), share(["u2"], "b", 3), states=StateMerge()
                )
            )
            writer.start()
            wait_for(lambda: _waiting_on_a_lock(postgres_server, pg_url), "B to wait")
        writer.join(HANG_GUARD)
    finally:
        first.close()
        second.close()
    [(count, stored)] = postgres_server.sql(pg_url, "SELECT occurrence_count, state FROM groups")
    state = json.loads(stored)
    assert count == 3
    assert state["users"] == ["u1", "u2"]
    assert state["components"] == {"start": 1, "a": 1, "b": 1}
    assert state["coalesced"] == 5
