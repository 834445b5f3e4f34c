"""The reports of every worker process in one SQLite file (WAL mode) in the multiprocess dir.

Each worker's monitor thread writes here after processing a report: one row per occurrence
(``records``, the export's ``all_records``) and one row per error group (``error_groups``,
occurrence counts summed across workers, the latest full report), plus the distinct users of
each group and one state row per live worker (patterns, plugin health, sessions, queue depth,
resources) that its publisher refreshes. Readers (any worker's API, the sidecar) query it.

Bounded like the in-memory store: ``max_records`` occurrence rows (the oldest of the group
holding the most deleted first), ``max_groups`` groups (least recently seen deleted first),
``max_users_per_group`` users per group. WAL lets readers run while a worker writes;
writers take the lock with ``BEGIN IMMEDIATE`` and wait up to ``BUSY_TIMEOUT_MS`` for each
other.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..classify import per_hour, priority
from ..codec import dumps as _dumps
from ..codec import record_from_json
from ..model import SEVERITY_RANK, ErrorRecord, ErrorReport, iso_time, trace_frames
from ..store import MAX_SEEN_LABELS, ExportFilter

DB_NAME = "error-exporter.sqlite"
SEEN_KEY = "__seen__"  # in a group report dict: what group_summary() adds to it
BUSY_TIMEOUT_MS = 10000
SCHEMA_VERSION = "2"
# Version 2: what a group summary says of every occurrence, not only of the stored report:
# the highest and the latest severity, the occurrences coalesced during a storm, and the
# components and plugins seen (group_labels).
_GROUP_COLUMNS_V2 = (
    ("coalesced", "INTEGER NOT NULL DEFAULT 0"),
    ("severity_rank", "INTEGER NOT NULL DEFAULT -1"),
    ("last_severity", "TEXT"),
)
_RANKED = {rank: name for name, rank in SEVERITY_RANK.items()}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    error_id TEXT NOT NULL,
    error_type TEXT NOT NULL,
    component TEXT NOT NULL,
    plugin TEXT NOT NULL,
    severity TEXT NOT NULL,
    pid INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_group ON records (error_id, seq);
CREATE TABLE IF NOT EXISTS error_groups (
    error_id TEXT PRIMARY KEY,
    occurrence_count INTEGER NOT NULL,
    first_occurrence REAL NOT NULL,
    last_occurrence REAL NOT NULL,
    recovery_attempted INTEGER NOT NULL DEFAULT 0,
    recovery_successful INTEGER NOT NULL DEFAULT 0,
    report_pid INTEGER NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS error_groups_by_last ON error_groups (last_occurrence);
CREATE TABLE IF NOT EXISTS group_users (
    error_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (error_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_labels (
    error_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (error_id, kind, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (
    pid INTEGER PRIMARY KEY,
    updated REAL NOT NULL,
    state TEXT NOT NULL
);
"""

_GROUP_UPSERT = """
INSERT INTO error_groups (error_id, occurrence_count, first_occurrence, last_occurrence,
                          report_pid, report)
VALUES (?, 1, ?, ?, ?, ?)
ON CONFLICT (error_id) DO UPDATE SET
    occurrence_count = occurrence_count + 1,
    first_occurrence = min(first_occurrence, excluded.first_occurrence),
    last_occurrence = max(last_occurrence, excluded.last_occurrence),
    report_pid = excluded.report_pid,
    report = excluded.report
"""


@dataclass(frozen=True)
class Limits:
    """The bounds of the shared store (the writing worker's configuration)."""

    max_records: int = 1000
    max_groups: int = 1000
    occurrences_per_group: int = 10
    max_users_per_group: int = 1000


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
    os.register_at_fork(before=FORK_GUARD._before_fork,
                        after_in_parent=FORK_GUARD._after_fork_in_parent,
                        after_in_child=FORK_GUARD._after_fork_in_child)


class SharedStore:
    """One SQLite database shared by the processes of one multiprocess directory.

    A connection is opened per thread and per process (connections never cross a fork);
    every method is safe to call from any thread of any process.
    """

    def __init__(self, directory: str | Path, limits: Limits | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.limits = limits or Limits()
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
        conn = self._open()
        local.conn, local.pid, local.inode = conn, os.getpid(), _inode(self.path)
        return conn

    def _open(self) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Created private before SQLite opens it (its -wal and -shm files follow its mode):
        # reports may hold what the scrubber did not recognise. O_EXCL: closing a descriptor
        # of a file this process has open in SQLite would drop SQLite's POSIX locks on it.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000.0,
                               isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._create_schema(conn)
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for attempt in range(50):
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + _missing_columns(conn)
                                   + "COMMIT;")
                break
            except sqlite3.OperationalError:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if attempt == 49:
                    raise
                time.sleep(0.02)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                     (SCHEMA_VERSION,))
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('started', ?)",
                     (repr(time.time()),))

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

    # -- writing (each worker's monitor thread) -------------------------------------------
    def add(self, report: ErrorReport, record: ErrorRecord, user_id: str | None) -> int:
        """A new full report of a group and its occurrence. Returns groups evicted."""
        with self.write() as conn:
            self._insert_record(conn, record)
            is_new = conn.execute("SELECT 1 FROM error_groups WHERE error_id = ?",
                                  (report.error_id,)).fetchone() is None
            ts = record.timestamp.timestamp()
            conn.execute(_GROUP_UPSERT, (report.error_id, ts, ts, os.getpid(),
                                         _dumps(report.to_dict())))
            self._add_user(conn, report.error_id, user_id)
            self._seen(conn, record)
            return self._evict(conn, report.error_id) if is_new else 0

    def add_occurrence(self, report: ErrorReport, record: ErrorRecord,
                       user_id: str | None) -> int:
        """A repeat occurrence: counts and the record; the stored report stays."""
        with self.write() as conn:
            self._insert_record(conn, record)
            ts = record.timestamp.timestamp()
            updated = conn.execute(
                "UPDATE error_groups SET occurrence_count = occurrence_count + 1, "
                "last_occurrence = max(last_occurrence, ?) WHERE error_id = ?",
                (ts, report.error_id)).rowcount
            evicted = 0
            if not updated:  # evicted from the shared store meanwhile: start it again
                conn.execute(_GROUP_UPSERT, (report.error_id, ts, ts, os.getpid(),
                                             _dumps(report.to_dict())))
                evicted = self._evict(conn, report.error_id)
            self._add_user(conn, report.error_id, user_id)
            self._seen(conn, record)
            return evicted

    def add_coalesced(self, error_id: str, count: int, last_seen: float) -> int:
        """Occurrences a storm coalesced on the caller: counts only, no records."""
        with self.write() as conn:
            conn.execute(
                "UPDATE error_groups SET occurrence_count = occurrence_count + ?, "
                "coalesced = coalesced + ?, last_occurrence = max(last_occurrence, ?) "
                "WHERE error_id = ?", (count, count, last_seen, error_id))
        return 0

    def _insert_record(self, conn: sqlite3.Connection, record: ErrorRecord) -> None:
        cursor = conn.execute(
            "INSERT INTO records (ts, error_id, error_type, component, plugin, severity, pid, "
            "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record.timestamp.timestamp(), record.error_id, record.error_type,
             record.component or "", record.plugin_id or "", record.severity, os.getpid(),
             _dumps(record.to_dict())))
        del cursor
        excess = int(conn.execute("SELECT count(*) FROM records").fetchone()[0]) - \
            self.limits.max_records
        if excess > 0:
            # The group holding the most records gives way, as in the in-memory store: a
            # storm of one error never evicts another group's occurrences.
            largest = conn.execute("SELECT error_id FROM records GROUP BY error_id "
                                   "ORDER BY count(*) DESC, min(seq) LIMIT 1").fetchone()
            conn.execute("DELETE FROM records WHERE seq IN (SELECT seq FROM records "
                         "WHERE error_id = ? ORDER BY seq LIMIT ?)", (largest[0], excess))

    def _seen(self, conn: sqlite3.Connection, record: ErrorRecord) -> None:
        """What the group summary says of every occurrence: severities, components, plugins."""
        severity = str(record.severity)
        conn.execute(
            "UPDATE error_groups SET severity_rank = max(severity_rank, ?), last_severity = ? "
            "WHERE error_id = ?", (SEVERITY_RANK.get(severity, 1), severity, record.error_id))
        for kind, value in (("component", record.component), ("plugin", record.plugin_id)):
            if value:
                conn.execute(
                    "INSERT OR IGNORE INTO group_labels (error_id, kind, value) SELECT ?, ?, ? "
                    "WHERE (SELECT count(*) FROM group_labels WHERE error_id = ? AND kind = ?)"
                    " < ?", (record.error_id, kind, str(value), record.error_id, kind,
                             MAX_SEEN_LABELS))

    def _add_user(self, conn: sqlite3.Connection, error_id: str, user_id: str | None) -> None:
        if not user_id:
            return
        conn.execute(
            "INSERT OR IGNORE INTO group_users (error_id, user_id) SELECT ?, ? "
            "WHERE (SELECT count(*) FROM group_users WHERE error_id = ?) < ?",
            (error_id, str(user_id), error_id, self.limits.max_users_per_group))

    def _evict(self, conn: sqlite3.Connection, keep: str) -> int:
        """Delete the least recently seen groups beyond the bound (never ``keep``, just written)."""
        count = int(conn.execute("SELECT count(*) FROM error_groups").fetchone()[0])
        excess = count - self.limits.max_groups
        if excess <= 0:
            return 0
        doomed = [row[0] for row in conn.execute(
            "SELECT error_id FROM error_groups WHERE error_id != ? "
            "ORDER BY last_occurrence LIMIT ?", (keep, excess))]
        _forget_groups(conn, doomed)
        return len(doomed)

    def mark_recovery(self, error_id: str, success: bool) -> int:
        with self.write() as conn:
            conn.execute("UPDATE error_groups SET recovery_attempted = 1, "
                         "recovery_successful = ? WHERE error_id = ?", (int(success), error_id))
        return 0

    def clear_older_than(self, cutoff: float) -> int:
        """Drop records and groups last seen at or before ``cutoff``; returns records dropped."""
        with self.write() as conn:
            dropped = conn.execute("DELETE FROM records WHERE ts <= ?", (cutoff,)).rowcount
            stale = [row[0] for row in conn.execute(
                "SELECT error_id FROM error_groups WHERE last_occurrence <= ?", (cutoff,))]
            _forget_groups(conn, stale)
            return int(dropped)

    def put_worker_state(self, pid: int, state: dict[str, Any]) -> None:
        self._run("INSERT OR REPLACE INTO workers (pid, updated, state) VALUES (?, ?, ?)",
                  (pid, time.time(), _dumps(state)))

    def forget_worker(self, pid: int) -> None:
        self._run("DELETE FROM workers WHERE pid = ?", (pid,))

    # -- reading -------------------------------------------------------------------------
    def processed(self) -> int:
        """Occurrences ever written (the AUTOINCREMENT sequence survives deletes)."""
        row = self._one("SELECT seq FROM sqlite_sequence WHERE name = 'records'")
        return int(row[0]) if row else 0

    def group_count(self) -> int:
        return int(self._one("SELECT count(*) FROM error_groups")[0])

    def groups(self, sort: str = "count", limit: int | None = None,
               error_id: str | None = None) -> list[dict[str, Any]]:
        """Group reports (dicts) with the counts summed across workers."""
        order = "last_occurrence DESC" if sort == "last_seen" else "occurrence_count DESC"
        args: list[Any] = []
        where = ""
        if error_id is not None:
            where = "WHERE g.error_id = ?"
            args.append(error_id)
        sql = (
            "SELECT g.error_id, g.occurrence_count, g.first_occurrence, g.last_occurrence, "
            "g.recovery_attempted, g.recovery_successful, g.report, "
            "(SELECT count(*) FROM group_users u WHERE u.error_id = g.error_id), "
            "g.coalesced, g.severity_rank, g.last_severity, "
            "(SELECT json_group_array(value) FROM group_labels l "
            " WHERE l.error_id = g.error_id AND l.kind = 'component'), "
            "(SELECT json_group_array(value) FROM group_labels l "
            " WHERE l.error_id = g.error_id AND l.kind = 'plugin') "
            f"FROM error_groups g {where} ORDER BY {order}, g.error_id"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_group_report(row) for row in self._all(sql, args)]

    def occurrences(self, error_id: str, count: int) -> list[ErrorRecord]:
        rows = self._all("SELECT data FROM records WHERE error_id = ? ORDER BY seq DESC LIMIT ?",
                         (error_id, count))
        return [record_from_json(row[0]) for row in reversed(rows)]

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        """(seq, record) after the filter's cursor that match it, oldest first."""
        clauses = ["seq > ?"]
        args: list[Any] = [flt.cursor]
        for column, value in (("severity", flt.severity), ("component", flt.component),
                              ("plugin", flt.plugin), ("error_type", flt.error_type)):
            if value is not None:
                clauses.append(f"{column} = ?")
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
        rows = self._all(sql, args)  # fetched at once: the guard is never held across a yield
        for seq, data in rows:
            yield int(seq), record_from_json(data)

    def recent_records(self, count: int) -> list[ErrorRecord]:
        rows = self._all("SELECT data FROM records ORDER BY seq DESC LIMIT ?", (count,))
        return [record_from_json(row[0]) for row in reversed(rows)]

    def last_record(self, plugin: str) -> ErrorRecord | None:
        row = self._one("SELECT data FROM records WHERE plugin = ? ORDER BY seq DESC LIMIT 1",
                        (plugin,))
        return record_from_json(row[0]) if row else None

    def latest_ids(self) -> dict[tuple[str, str, str, str], tuple[str, float, str | None]]:
        """(error_type, component, plugin, severity) -> (latest error_id, its time, its
        trace_id or None)."""
        rows = self._all(
            "SELECT error_type, component, plugin, severity, error_id, ts, max(seq), "
            "json_extract(data, '$.trace_id') "
            "FROM records GROUP BY error_type, component, plugin, severity")
        return {(r[0], r[1], r[2], r[3]): (r[4], float(r[5]),
                                           r[7] if isinstance(r[7], str) else None)
                for r in rows}

    def workers(self, max_age: float) -> list[dict[str, Any]]:
        """The state rows of workers that published within ``max_age`` seconds."""
        cutoff = time.time() - max_age
        rows = self._all("SELECT pid, updated, state FROM workers WHERE updated >= ? ORDER BY pid",
                         (cutoff,))
        out = []
        for pid, updated, state in rows:
            data = json.loads(state)
            data["pid"], data["updated"] = int(pid), float(updated)
            out.append(data)
        return out


def _group_report(row: Sequence[Any]) -> dict[str, Any]:
    """The stored report with the shared counts, frequency, reach and priority; what the
    group summary adds (seen over every occurrence) under :data:`SEEN_KEY`."""
    error_id, count, first, last, attempted, successful, text, users = row[:8]
    coalesced, rank, last_severity, components, plugins = row[8:]
    report: dict[str, Any] = json.loads(text)
    report[SEEN_KEY] = {
        "severity": _RANKED.get(int(rank), report.get("severity", "medium")),
        "last_severity": last_severity or report.get("severity", "medium"),
        "coalesced_occurrences": int(coalesced),
        "components": json.loads(components) if components else [],
        "plugins": json.loads(plugins) if plugins else [],
    }
    report.update(
        error_id=error_id, occurrence_count=int(count), first_occurrence=iso_time(first),
        first_occurrence_epoch=float(first), last_occurrence=iso_time(last),
        last_occurrence_epoch=float(last), timestamp=iso_time(last),
        timestamp_epoch=float(last), affected_users=int(users),
        recovery_attempted=bool(attempted) or bool(report.get("recovery_attempted")),
        recovery_successful=bool(successful) if attempted
        else bool(report.get("recovery_successful")),
    )
    report["frequency_per_hour"] = round(per_hour(int(count), float(last) - float(first)), 3)
    report["priority"] = priority(str(report.get("severity", "medium")),
                                  report["frequency_per_hour"], int(users)).value
    return report


def group_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The group summary shape of ``ErrorGroup.summary`` from a group report dict."""
    keys = ("error_id", "error_type", "error_message", "severity", "priority", "component",
            "plugin", "operation", "file_path", "line_number", "function_name", "frames",
            "occurrence_count", "first_occurrence", "first_occurrence_epoch", "last_occurrence",
            "last_occurrence_epoch", "frequency_per_hour", "affected_users")
    summary = {key: report.get(key) for key in keys}
    summary.update(report.get(SEEN_KEY) or {})
    summary["plugin"] = summary["plugin"] or None  # reports stored before: ""
    summary["frames"] = trace_frames(report.get("stack_trace"))
    return summary


def without_seen(report: dict[str, Any]) -> dict[str, Any]:
    """The group's report as the API shows it (what only the summary says left out)."""
    return {key: value for key, value in report.items() if key != SEEN_KEY}


def _forget_groups(conn: sqlite3.Connection, error_ids: list[str]) -> None:
    rows = [(e,) for e in error_ids]
    for table in ("error_groups", "group_users", "group_labels"):
        conn.executemany(f"DELETE FROM {table} WHERE error_id = ?", rows)


def _missing_columns(conn: sqlite3.Connection) -> str:
    """ALTER TABLE statements for a version-1 file's error_groups (the rest is created)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(error_groups)")}
    if not have:  # a new file: _SCHEMA creates the table, then these columns
        have = {"error_id"}
    return "".join(f"ALTER TABLE error_groups ADD COLUMN {name} {kind};"
                   for name, kind in _GROUP_COLUMNS_V2 if name not in have)


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return -1
