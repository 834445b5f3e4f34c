"""The durable store of one process (``store_path``): real SQLite files, real monitors.

What a restarted monitor serves, exactly; the schema version (a v1 file migrated, a newer
one refused); damaged files moved aside; retention by age and by size, counted; a write
that fails kept and retried; bad paths named in the error.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from support.monitoring import dropped, internal_errors, settle
from support.tools import require_tool

from exporter import ErrorMonitor
from exporter.config import ConfigError
from exporter.store.durable import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[4]
DAY = 86400.0


def fail(message: str, **options: Any) -> None:
    """Raise and record a ValueError from one fixed line: one group per message prefix."""
    raise ValueError(message)


def record(monitor: ErrorMonitor, message: str, **options: Any) -> str:
    try:
        fail(message)
    except ValueError as exc:
        error_id = monitor.record_error(exc, **options)
    assert error_id is not None
    return error_id


def record_other(monitor: ErrorMonitor, message: str, **options: Any) -> str:
    try:
        raise KeyError(message)
    except KeyError as exc:
        error_id = monitor.record_error(exc, **options)
    assert error_id is not None
    return error_id


def rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """A group summary without what depends on the moment it is read."""
    return {k: v for k, v in summary.items() if k != "frequency_per_hour"}


# -- a restart serves what the first run recorded ------------------------------------------


def test_a_restarted_monitor_serves_every_group_and_record_exactly(make_monitor, tmp_path):
    path = tmp_path / "errors.sqlite"
    first = make_monitor(store_path=str(path), app_version="1.0", occurrence_budget_per_second=3)
    ids = set()
    for i in range(8):  # over the per-second budget: some are coalesced into the counts
        ids.add(
            record(
                first,
                f"disk full {i}",
                component="db",
                plugin="pg",
                user_id=f"u{i}",
                context={"attempt": i},
            )
        )
    ids.add(record_other(first, "missing", component="api", severity="critical"))
    assert len(ids) == 2
    error_id = record(first, "disk full again", component="db", plugin="pg")
    first.record_recovery(False, component="db", plugin="pg", error_id=error_id)
    first.record_recovery(True, component="db", plugin="pg", error_id=error_id)
    settle(first)
    before_groups = first.list_groups()
    before_details = {g["error_id"]: first.get_group(g["error_id"]) for g in before_groups}
    before_export = first.export_data()
    first.stop()
    assert sum(g["coalesced_occurrences"] for g in before_groups) > 0  # the case is covered

    second = make_monitor(store_path=str(path), app_version="1.0")
    assert [comparable(g) for g in second.list_groups()] == [comparable(g) for g in before_groups]
    for gid, detail in before_details.items():
        again = second.get_group(gid)
        assert again is not None and detail is not None
        assert comparable(again["group"]) == comparable(detail["group"])
        assert again["occurrences"] == detail["occurrences"]
        assert {k: v for k, v in again["report"].items() if k != "frequency_per_hour"} == {
            k: v for k, v in detail["report"].items() if k != "frequency_per_hour"
        }
    export = second.export_data()
    assert export["all_records"] == before_export["all_records"]
    assert export["analysis"]["total_unique_errors"] == 2

    # the count goes on from where it was; the first occurrence stays the old one
    old = next(g for g in before_groups if g["error_id"] == error_id)
    record(second, "disk full after the restart", component="db", plugin="pg")
    settle(second)
    now = second.get_group(error_id)
    assert now is not None
    assert now["group"]["occurrence_count"] == old["occurrence_count"] + 1
    assert now["group"]["first_occurrence"] == old["first_occurrence"]
    assert now["group"]["affected_users"] == old["affected_users"]
    # the new record follows the old ones (the export cursor stays valid across runs)
    seqs = rows(path, "SELECT seq FROM records ORDER BY seq")
    assert [s for (s,) in seqs] == sorted({s for (s,) in seqs})
    assert len(second.export_data(cursor=before_export_last_seq(path, 1))["all_records"]) == 1


def before_export_last_seq(path: Path, newest: int) -> int:
    """The sequence number just before the newest ``newest`` records of the file."""
    found = rows(path, "SELECT seq FROM records ORDER BY seq DESC LIMIT 1 OFFSET ?", (newest,))
    return int(found[0][0])


def test_release_health_fields_and_recoveries_survive_a_restart(make_monitor, tmp_path):
    path = tmp_path / "errors.sqlite"
    first = make_monitor(store_path=str(path), app_version="2.0")
    error_id = record(first, "flaky", component="jobs")
    first.set_app_version("2.1")
    record(first, "flaky", component="jobs")
    first.record_recovery(True, component="jobs", error_id=error_id)
    settle(first)
    resolved = first.resolve_group(error_id)
    assert resolved is not None and resolved["resolved"] is True
    settle(first)
    summary = first.get_group(error_id)
    first.stop()
    stored = rows(
        path,
        "SELECT first_seen_version, last_seen_version, resolved_at, "
        "resolved_version, regressed FROM groups WHERE error_id = ?",
        (error_id,),
    )
    assert stored == [("2.0", "2.1", resolved["resolved_at_epoch"], "2.1", 0)]

    second = make_monitor(store_path=str(path), app_version="2.2")
    again = second.get_group(error_id)
    assert again is not None and summary is not None
    assert comparable(again["group"]) == comparable(summary["group"])
    assert again["report"]["recovery_attempted"] is True
    assert second.store.groups[error_id].recoveries == {"success": 1, "failure": 0}
    # seen again after the restart: a regression of the resolved group, persisted too
    record(second, "flaky", component="jobs")
    settle(second)
    assert second.get_group(error_id)["group"]["regressed"] is True
    second.stop()
    assert rows(
        path, "SELECT regressed, last_seen_version FROM groups WHERE error_id = ?", (error_id,)
    ) == [(1, "2.2")]


def test_groups_evicted_from_memory_leave_the_file_too(make_monitor, tmp_path):
    path = tmp_path / "errors.sqlite"
    monitor = make_monitor(store_path=str(path), error_buffer_size=2)
    for kind in (KeyError, TypeError, IndexError):
        try:
            raise kind("x")
        except Exception as exc:
            monitor.record_error(exc)
    settle(monitor)
    kept = {g["error_id"] for g in monitor.list_groups()}
    assert len(kept) == 2
    assert {e for (e,) in rows(path, "SELECT error_id FROM groups")} == kept
    assert {e for (e,) in rows(path, "SELECT DISTINCT error_id FROM records")} == kept


def test_writes_happen_on_the_worker_never_on_the_callers_thread(make_monitor, tmp_path):
    path = tmp_path / "errors.sqlite"
    monitor = make_monitor(store_path=str(path))
    writers: set[str] = set()
    original = monitor._durable.file.write

    def spy(*args: Any, **kwargs: Any) -> None:
        writers.add(threading.current_thread().name)
        original(*args, **kwargs)

    monitor._durable.file.write = spy  # type: ignore[method-assign]
    for i in range(20):
        record(monitor, f"e{i}")
    settle(monitor)
    assert writers == {"error-exporter-worker"}
    assert rows(path, "SELECT count(*) FROM records") == [(20,)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "SELECT value FROM meta WHERE key = 'written_by'")[0][0].startswith(
        "error-exporter "
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(Path(str(path) + "-wal").stat().st_mode & 0o777) == "0o600"


# -- schema version ------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE groups (error_id TEXT PRIMARY KEY, occurrence_count INTEGER NOT NULL,
    first_occurrence REAL NOT NULL, last_occurrence REAL NOT NULL, report TEXT NOT NULL,
    state TEXT NOT NULL);
CREATE INDEX groups_by_last ON groups (last_occurrence);
CREATE TABLE records (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, error_id TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX records_by_ts ON records (ts);
CREATE INDEX records_by_group ON records (error_id, seq);
PRAGMA user_version = 1;
"""


def write_v1_store(path: Path, make_monitor: Any, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A v1 file (no release-health columns) holding one real group and its record."""
    source = make_monitor()
    error_id = record(source, "from an old release", component="legacy")
    settle(source)
    report = source.store.groups[error_id].report
    report.environment["app_version"] = "0.9"
    rec = source.store.groups[error_id].occurrences[-1]
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute(
        "INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?)",
        (
            error_id,
            41,
            report.first_occurrence - 3600,
            report.last_occurrence,
            json.dumps(report.to_dict(), default=str),
            json.dumps(
                {
                    "users": ["a", "b"],
                    "recoveries": {"success": 0, "failure": 2},
                    "max_severity": "high",
                    "components": {"legacy": 41},
                    "plugins": {},
                    "coalesced": 7,
                }
            ),
        ),
    )
    conn.execute(
        "INSERT INTO records VALUES (?, ?, ?, ?)",
        (5, rec.timestamp.timestamp(), error_id, json.dumps(rec.to_dict())),
    )
    conn.commit()
    conn.close()
    return error_id, rec.to_dict()


def test_a_v1_store_is_migrated_in_place(make_monitor, tmp_path, caplog):
    path = tmp_path / "old.sqlite"
    error_id, rec = write_v1_store(path, make_monitor, tmp_path)
    caplog.set_level(logging.INFO, logger="exporter.store.durable")
    monitor = make_monitor(store_path=str(path))
    group = monitor.get_group(error_id)
    assert group is not None
    assert group["group"]["occurrence_count"] == 41
    assert group["group"]["first_seen_version"] == "0.9"  # filled in from the stored report
    assert group["group"]["severity"] == "high" and group["group"]["affected_users"] == 2
    assert group["group"]["coalesced_occurrences"] == 7
    assert group["occurrences"] == [rec]
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    migrated = f"migrated from schema version 1 to {SCHEMA_VERSION}"
    assert any(migrated in r.getMessage() for r in caplog.records)
    record(monitor, "from an old release", component="legacy")
    settle(monitor)
    monitor.stop()
    assert rows(
        path,
        "SELECT occurrence_count, first_seen_version FROM groups WHERE error_id = ?",
        (error_id,),
    ) == [(42, "0.9")]
    assert [s for (s,) in rows(path, "SELECT seq FROM records ORDER BY seq")] == [5, 6]


def test_a_store_of_a_newer_schema_is_refused_and_left_untouched(make_monitor, tmp_path, caplog):
    path = tmp_path / "new.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE groups (x); CREATE TABLE records (y); "
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); "
        "INSERT INTO meta VALUES ('written_by', 'error-exporter 9.0.0'); "
        "INSERT INTO groups VALUES (1); PRAGMA user_version = 7;"
    )
    conn.close()
    before = path.read_bytes()
    caplog.set_level(logging.WARNING, logger="exporter.store.durable")
    monitor = make_monitor(store_path=str(path))
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert str(path) in warning and "version 7" in warning and f"({SCHEMA_VERSION})" in warning
    assert "memory-only" in warning and "written by error-exporter 9.0.0" in warning
    error_id = record(monitor, "still monitored")  # the app is unharmed, memory only
    settle(monitor)
    assert monitor.get_group(error_id) is not None
    monitor.stop()
    assert path.read_bytes() == before
    assert list(tmp_path.glob("*.corrupt-*")) == []


# -- damaged files ---------------------------------------------------------------------------


def assert_moved_aside(path: Path, original: bytes | None, caplog: Any) -> Path:
    moved = list(path.parent.glob(path.name + ".corrupt-*"))
    moved = [m for m in moved if not m.name.endswith(("-wal", "-shm"))]
    assert len(moved) == 1, moved
    if original is not None:
        assert moved[0].read_bytes() == original  # never deleted, never changed
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(path) in warning and str(moved[0]) in warning
    return moved[0]


def test_garbage_bytes_are_moved_aside_and_a_fresh_store_created(make_monitor, tmp_path, caplog):
    path = tmp_path / "errors.sqlite"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    caplog.set_level(logging.WARNING, logger="exporter.store.durable")
    monitor = make_monitor(store_path=str(path))
    assert_moved_aside(path, garbage, caplog)
    error_id = record(monitor, "after the damage")
    settle(monitor)
    assert rows(path, "SELECT error_id FROM groups") == [(error_id,)]


def test_a_truncated_store_is_moved_aside_and_a_fresh_store_created(make_monitor, tmp_path, caplog):
    path = tmp_path / "errors.sqlite"
    first = make_monitor(store_path=str(path))
    for i in range(300):
        record(first, f"padding {i} " + "x" * 500, context={"i": i})
    settle(first)
    first.stop()
    size = path.stat().st_size
    assert size > 100_000 and not Path(str(path) + "-wal").exists()  # checkpointed at close
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    truncated = path.read_bytes()
    caplog.set_level(logging.WARNING, logger="exporter.store.durable")
    second = make_monitor(store_path=str(path))
    assert_moved_aside(path, truncated, caplog)
    assert second.list_groups() == []
    error_id = record(second, "after the truncation")
    settle(second)
    assert rows(path, "SELECT error_id FROM groups") == [(error_id,)]


def test_rows_that_cannot_be_read_move_the_store_aside(make_monitor, tmp_path, caplog):
    path = tmp_path / "errors.sqlite"
    first = make_monitor(store_path=str(path))
    record(first, "fine")
    settle(first)
    first.stop()
    conn = sqlite3.connect(path)  # a readable file whose rows this release cannot read
    conn.execute("UPDATE groups SET report = '{not json'")
    conn.commit()
    conn.close()
    caplog.set_level(logging.WARNING, logger="exporter.store.durable")
    second = make_monitor(store_path=str(path))
    moved = assert_moved_aside(path, None, caplog)
    assert "could not load the store" in caplog.text
    assert rows(moved, "SELECT report FROM groups") == [("{not json",)]  # kept as it was
    assert rows(moved, "SELECT count(*) FROM records") == [(1,)]
    assert second.list_groups() == []
    error_id = record(second, "after")
    settle(second)
    assert rows(path, "SELECT error_id FROM groups") == [(error_id,)]


# -- retention ---------------------------------------------------------------------------------


def test_retention_by_age_prunes_records_and_groups_and_counts_them(make_monitor, tmp_path):
    path = tmp_path / "errors.sqlite"
    first = make_monitor(store_path=str(path))
    old_id = record(first, "last week")
    record(first, "last week too")
    fresh_id = record_other(first, "today")
    settle(first)
    first.stop()
    conn = sqlite3.connect(path)  # two occurrences of one group happened 8 days ago
    conn.execute("UPDATE records SET ts = ts - ? WHERE error_id = ?", (8 * DAY, old_id))
    conn.execute(
        "UPDATE groups SET last_occurrence = last_occurrence - ?, "
        "first_occurrence = first_occurrence - ? WHERE error_id = ?",
        (8 * DAY, 8 * DAY, old_id),
    )
    conn.commit()
    conn.close()

    second = make_monitor(store_path=str(path))  # default retention: 7 days
    settle(second)  # the worker's first tick prunes what expired while nothing ran
    assert [g["error_id"] for g in second.list_groups()] == [fresh_id]
    assert dropped(second, "store_retention") == 2
    assert rows(path, "SELECT DISTINCT error_id FROM records") == [(fresh_id,)]
    assert rows(path, "SELECT error_id FROM groups") == [(fresh_id,)]


def test_retention_by_age_runs_while_the_monitor_runs(make_monitor, tmp_path):
    path = tmp_path / "errors.sqlite"
    monitor = make_monitor(store_path=str(path), store_retention_seconds=1.0)
    record(monitor, "soon too old")
    settle(monitor)
    assert rows(path, "SELECT count(*) FROM records") == [(1,)]
    # pruned a quarter retention after it expires, at the latest: from the file and memory
    wait_until(lambda: dropped(monitor, "store_retention") == 1)
    assert monitor.list_groups() == []
    assert rows(path, "SELECT count(*) FROM groups") == [(0,)]
    assert rows(path, "SELECT count(*) FROM records") == [(0,)]


def test_retention_by_size_keeps_the_newest_records_and_counts_the_rest(make_monitor, tmp_path):
    path = tmp_path / "errors.sqlite"
    monitor = make_monitor(store_path=str(path), store_max_records=5)
    for i in range(12):
        record(monitor, f"e{i}")
    settle(monitor)
    assert dropped(monitor, "store_max_records") == 7
    kept = rows(path, "SELECT data FROM records ORDER BY seq")
    assert [json.loads(d)["message"] for (d,) in kept] == [f"e{i}" for i in range(7, 12)]
    assert rows(path, "SELECT occurrence_count FROM groups") == [(12,)]  # counts stay exact
    text = monitor.registry.get_sample_value(
        "app_error_reports_dropped_total", {"reason": "store_retention"}
    )
    assert text == 0.0  # every store reason exists from the start


@pytest.mark.tools
def test_the_store_drop_reasons_pass_promtool(make_monitor, tmp_path):
    promtool = require_tool("promtool")
    monitor = make_monitor(store_path=str(tmp_path / "errors.sqlite"), store_max_records=2)
    for i in range(4):
        record(monitor, f"e{i}")
    settle(monitor)
    text = generate_latest(monitor.registry).decode()
    for reason in ("store_retention", "store_max_records", "store_write_failed"):
        assert f'app_error_reports_dropped_total{{reason="{reason}"}}' in text
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- failures at runtime -------------------------------------------------------------------------


def test_a_write_that_fails_is_kept_bounded_and_retried_the_app_unharmed(
    make_monitor, tmp_path, caplog
):
    path = tmp_path / "errors.sqlite"
    monitor = make_monitor(store_path=str(path), store_max_records=4)
    record(monitor, "before the lock")
    settle(monitor)
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the file: writes fail
    caplog.set_level(logging.WARNING, logger="exporter.store.durable")
    try:
        for i in range(6):
            record(monitor, f"while locked {i}")  # returns: nothing waits on the file here
        # the failed write is reported; the unwritten records wait, at most 4 of them
        wait_until(
            lambda: internal_errors(monitor) > 0 and dropped(monitor, "store_write_failed") == 2
        )
        assert monitor.get_group(monitor.list_groups()[0]["error_id"]) is not None
        assert monitor.list_groups()[0]["occurrence_count"] == 7  # memory has them all
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # retried after a back-off: the 4 newest records land, the oldest gives way to the bound
    wait_until(
        lambda: (
            rows(path, "SELECT count(*) FROM records") == [(4,)]
            and rows(path, "SELECT occurrence_count FROM groups") == [(7,)]
        )
    )
    messages = [json.loads(d)["message"] for (d,) in rows(path, "SELECT data FROM records")]
    assert messages == [f"while locked {i}" for i in range(2, 6)]
    assert dropped(monitor, "store_max_records") == 1
    assert any("could not write to the store" in r.getMessage() for r in caplog.records)


def wait_until(condition: Any, timeout: float = 60.0) -> None:
    """Poll ``condition`` (a hang guard, not a timing)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, named",
    [
        ({"store_path": ""}, "store_path"),
        ({"store_path": 3}, "store_path"),
        ({"store_retention_seconds": 0}, "store_retention_seconds"),
        ({"store_max_records": 0}, "store_max_records"),
    ],
)
def test_bad_store_options_name_their_key(options, named):
    with pytest.raises(ConfigError, match=named):
        ErrorMonitor(**options)


def test_a_store_path_in_a_missing_directory_is_a_config_error(tmp_path):
    missing = tmp_path / "nope" / "errors.sqlite"
    with pytest.raises(ConfigError, match=r"store_path: directory .*nope.* does not exist"):
        ErrorMonitor(store_path=str(missing))
    assert not missing.parent.exists()


def test_a_store_path_naming_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"store_path: .* is a directory"):
        ErrorMonitor(store_path=str(tmp_path))


SCRIPT_READ_ONLY = """
import sys
from exporter import ErrorMonitor
from exporter.config import ConfigError
try:
    ErrorMonitor(store_path=sys.argv[1] + "/errors.sqlite")
except ConfigError as exc:
    print("ConfigError:", exc)
"""


def test_a_store_path_in_a_read_only_directory_is_a_config_error(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    # a read-only file system, mounted in a mount namespace of its own (root or not)
    unshare = require_tool("unshare")
    done = subprocess.run(
        [
            unshare,
            "--mount",
            "--map-root-user",
            "sh",
            "-c",
            'mount -t tmpfs -o ro,size=1m tmpfs "$1" && exec "$2" -c "$3" "$1"',
            "sh",
            str(mount),
            sys.executable,
            SCRIPT_READ_ONLY,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "ConfigError: store_path: directory" in done.stdout
    assert "is not writable" in done.stdout and str(mount) in done.stdout


SCRIPT_MULTIPROCESS = """
import sys
from exporter import ErrorMonitor
from exporter.config import ConfigError
try:
    ErrorMonitor(store_path=sys.argv[1])
except ConfigError as exc:
    print("ConfigError:", exc)
"""


def test_store_path_and_multiprocess_mode_together_are_a_config_error(tmp_path):
    env = _env()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "mp")
    (tmp_path / "mp").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT_MULTIPROCESS, str(tmp_path / "errors.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "ConfigError: store_path: cannot be combined with multiprocess mode" in done.stdout
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stdout
    assert not (tmp_path / "errors.sqlite").exists()


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_check_config_takes_postgresql_in_multiprocess_mode_but_not_a_store_path(tmp_path):
    """gunicorn workers writing the fleet's PostgreSQL is a working combination; a
    store_path beside the directory's own store stays a ConfigError."""
    from exporter.config import MonitorConfig
    from exporter.store.durable import check_config

    url = "postgresql://app:secret@127.0.0.1:5432/errors"
    check_config(MonitorConfig(store_url=url), multiprocess_mode=True)  # no ConfigError
    with pytest.raises(ConfigError, match="store_path: cannot be combined with multiprocess"):
        check_config(
            MonitorConfig(store_path=str(tmp_path / "errors.sqlite")), multiprocess_mode=True
        )
