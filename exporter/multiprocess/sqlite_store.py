"""The reports of every worker process in one SQLite file (WAL mode) in the multiprocess dir.

The file holds the durable schema (:mod:`exporter.store.durable.tables`: ``groups``, ``records``,
``session_counts``, ``meta``), written by each worker's monitor as PostgreSQL is by a
fleet (:mod:`exporter.store.durable.sqlite_shared`: a batch per tick, new and regressed groups
decided by the file, counted once for the directory), plus what only a multiprocess
directory has: one state row per live worker (patterns, plugin health, sessions, queue
depth, resources) that its publisher refreshes. Readers (any worker's API, the sidecar)
query it through :class:`SharedStore`.

The file is named ``*.sqlite``, not ``*.db``: prometheus_client's MultiProcessCollector reads
every ``*.db`` file in the directory as one of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from exporter.classify import per_hour, priority
from exporter.model import ErrorRecord, json_text
from exporter.store.codec import record_from_json
from exporter.store.durable import rows
from exporter.store.durable.sqlite_shared import PROCESSED_ADD, ensure_schema, open_connection
from exporter.store.durable.sqlite_shared import resolve as resolve_in_file
from exporter.store.memory import ErrorGroup, ExportFilter

DB_NAME = "error-exporter.sqlite"
DEFAULT_APP = "app"
LATEST_RECORDS = 5000  # the exemplars of /metrics: the latest error of each series among these
# the record's fields the export filters on, in its JSON
_FILTERS = {
    "severity": "severity",
    "component": "component",
    "plugin": "plugin_id",
    "error_type": "error_type",
}


class ForkGuard:
    """Held around every SQLite call and every publish in this process; ``fork()`` waits for it.

    A forked child has only the thread that forked. If another thread was inside SQLite or
    prometheus_client (whose multiprocess values share one lock) at that moment, the child
    would inherit their locks held forever and hang at its first metric or query: gunicorn
    ``--preload`` forks a master that runs the monitor's threads.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()

    def __enter__(self) -> ForkGuard:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def _before_fork(self) -> None:
        self.lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self.lock.release()

    def _after_fork_in_child(self) -> None:
        # The forking thread, which holds it, is the child's only thread: release, do not
        # replace (a monitor's own fork handler may already have started a thread waiting
        # on this very lock).
        self.lock.release()


FORK_GUARD = ForkGuard()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=FORK_GUARD._before_fork,
        after_in_parent=FORK_GUARD._after_fork_in_parent,
        after_in_child=FORK_GUARD._after_fork_in_child,
    )


class SharedStore:
    """One SQLite database shared by the processes of one multiprocess directory: the
    read side (and the workers table, and the API's resolve and clear).

    ``app``: whose groups and records (the workers' ``store_app``; None: the app the
    workers recorded in ``meta``, for the sidecar). A connection is opened per thread and
    per process (connections never cross a fork); every method is safe to call from any
    thread of any process.
    """

    def __init__(self, directory: str | Path, app: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self._app = app
        self._local = threading.local()

    # -- connections -----------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork or a wipe of the directory)."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid() and local.inode == _inode(self.path):
            return conn
        if conn is not None and local.pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = open_connection(str(self.path))
        try:
            ensure_schema(conn, str(self.path), self._app or DEFAULT_APP)
        except BaseException:
            conn.close()
            raise
        local.conn, local.pid, local.inode = conn, os.getpid(), _inode(self.path)
        return conn

    @property
    def app(self) -> str:
        if self._app is None:
            self._app = self.meta("app") or DEFAULT_APP
        return self._app

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with FORK_GUARD:
            conn = self.connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several queries (never held across a yield to a client)."""
        with FORK_GUARD:
            conn = self.connect()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with FORK_GUARD:
            return self.connect().execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with FORK_GUARD:
            return self.connect().execute(sql, args).fetchone()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> int:
        with FORK_GUARD:
            return int(self.connect().execute(sql, args).rowcount)

    def close(self) -> None:
        """Forget this thread's connection (closed if it was opened by this process)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    # -- meta ----------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self._run("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def started(self) -> float:
        value = self.meta("started")
        try:
            return float(value) if value is not None else time.time()
        except ValueError:
            return time.time()

    # -- the workers' state (each worker's publisher) --------------------------------------
    def put_worker_state(self, pid: int, state: dict[str, Any]) -> None:
        self._run(
            "INSERT OR REPLACE INTO workers (pid, updated, state) VALUES (?, ?, ?)",
            (pid, time.time(), json_text(state, ascii_only=False)),
        )

    def forget_worker(self, pid: int) -> None:
        self._run("DELETE FROM workers WHERE pid = ?", (pid,))

    def workers(self, max_age: float) -> list[dict[str, Any]]:
        """The state rows of workers that published within ``max_age`` seconds."""
        cutoff = time.time() - max_age
        found = self._all(
            "SELECT pid, updated, state FROM workers WHERE updated >= ? ORDER BY pid", (cutoff,)
        )
        out = []
        for pid, updated, state in found:
            data = json.loads(state)
            data["pid"], data["updated"] = int(pid), float(updated)
            out.append(data)
        return out

    # -- writes of the API (resolve, clear) ------------------------------------------------
    def resolve(
        self, error_id: str, version: str | None, when: float | None = None
    ) -> ErrorGroup | None:
        """Resolve a group in the file (the first resolve wins); None: no such group."""
        with FORK_GUARD:
            return resolve_in_file(
                self.connect(), self.app, error_id, time.time() if when is None else when, version
            )

    def clear_older_than(self, cutoff: float) -> int:
        """Drop records and groups last seen at or before ``cutoff``; returns records dropped."""
        with self.write() as conn:
            dropped = conn.execute(
                "DELETE FROM records WHERE app = ? AND ts <= ?", (self.app, cutoff)
            ).rowcount
            conn.execute(
                "DELETE FROM groups WHERE app = ? AND last_occurrence <= ?", (self.app, cutoff)
            )
            return int(dropped)

    # -- reading -------------------------------------------------------------------------
    def processed(self) -> int:
        """Occurrences every worker stored so far (readers wait for the counted ones)."""
        try:
            return int(self.meta("processed") or 0)
        except ValueError:
            return 0

    def add_processed(self, count: int) -> None:
        """``count`` more occurrences stored elsewhere (PostgreSQL mode: the workers' groups
        are in the fleet's database, the file only tells readers how far the writes got)."""
        if count:
            self._run(PROCESSED_ADD, (str(count),))

    def group_count(self) -> int:
        return int(self._one("SELECT count(*) FROM groups WHERE app = ?", (self.app,))[0])

    def groups(
        self,
        sort: str = "count",
        limit: int | None = None,
        error_id: str | None = None,
        new_in: str | None = None,
    ) -> list[ErrorGroup]:
        """The groups as the directory has them (counts summed over every worker)."""
        order = "last_occurrence DESC" if sort == "last_seen" else "occurrence_count DESC"
        where, args = "WHERE app = ?", [self.app]
        if error_id is not None:
            where, args = where + " AND error_id = ?", [*args, error_id]
        if new_in is not None:
            where, args = where + " AND first_seen_version = ?", [*args, new_in]
        sql = f"{rows.GROUP_SELECT} {where} ORDER BY {order}, error_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)  # type: ignore[arg-type]
        return [_group(row) for row in self._all(sql, args)]

    def occurrences(self, error_id: str, count: int) -> list[ErrorRecord]:
        found = self._all(
            "SELECT data FROM records WHERE app = ? AND error_id = ? ORDER BY seq DESC LIMIT ?",
            (self.app, error_id, count),
        )
        return [record_from_json(row[0]) for row in reversed(found)]

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        """(seq, record) after the filter's cursor that match it, oldest first."""
        clauses = ["app = ?", "seq > ?"]
        args: list[Any] = [self.app, flt.cursor]
        for name, key in _FILTERS.items():
            value = getattr(flt, name)
            if value is not None:
                clauses.append(f"coalesce(json_extract(data, '$.{key}'), '') = ?")
                args.append(value)
        if flt.since is not None:
            clauses.append("ts >= ?")
            args.append(flt.since)
        if flt.until is not None:
            clauses.append("ts <= ?")
            args.append(flt.until)
        sql = f"SELECT seq, data FROM records WHERE {' AND '.join(clauses)} ORDER BY seq"
        if flt.limit is not None:
            sql += " LIMIT ?"
            args.append(flt.limit + 1)  # one more tells the caller there is a next page
        found = self._all(sql, args)  # fetched at once: the guard is never held across a yield
        for seq, data in found:
            yield int(seq), record_from_json(data)

    def recent_records(self, count: int) -> list[ErrorRecord]:
        found = self._all(
            "SELECT data FROM records WHERE app = ? ORDER BY seq DESC LIMIT ?", (self.app, count)
        )
        return [record_from_json(row[0]) for row in reversed(found)]

    def last_record(self, plugin: str) -> ErrorRecord | None:
        row = self._one(
            "SELECT data FROM records WHERE app = ? AND "
            "json_extract(data, '$.plugin_id') = ? ORDER BY seq DESC LIMIT 1",
            (self.app, plugin),
        )
        return record_from_json(row[0]) if row else None

    def latest_ids(self) -> dict[tuple[str, str, str, str], tuple[str, float, str | None]]:
        """(error_type, component, plugin, severity) -> (latest error_id, its time, its
        trace_id or None), among the latest records."""
        found = self._all(
            "SELECT error_type, component, plugin, severity, error_id, ts, max(seq), trace_id "
            "FROM (SELECT seq, ts, error_id, "
            "coalesce(json_extract(data, '$.error_type'), '') AS error_type, "
            "coalesce(json_extract(data, '$.component'), '') AS component, "
            "coalesce(json_extract(data, '$.plugin_id'), '') AS plugin, "
            "coalesce(json_extract(data, '$.severity'), '') AS severity, "
            "json_extract(data, '$.trace_id') AS trace_id "
            "FROM records WHERE app = ? ORDER BY seq DESC LIMIT ?) "
            "GROUP BY error_type, component, plugin, severity",
            (self.app, LATEST_RECORDS),
        )
        return {
            (r[0], r[1], r[2], r[3]): (r[4], float(r[5]), r[7] if isinstance(r[7], str) else None)
            for r in found
        }


def _group(row: Sequence[Any]) -> ErrorGroup:
    """A stored group with what its summed counts imply (frequency, priority)."""
    group = rows.group_from_row(row)
    report = group.report
    report.frequency_per_hour = round(
        per_hour(report.occurrence_count, report.last_occurrence - report.first_occurrence), 3
    )
    report.priority = priority(
        report.severity.value, report.frequency_per_hour, report.affected_users
    )
    return group


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return -1
