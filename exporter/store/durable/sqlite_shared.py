"""The durable schema in one SQLite file that many processes write: the multiprocess
directory (gunicorn workers sharing ``PROMETHEUS_MULTIPROC_DIR``).

The same batch as PostgreSQL's (:mod:`.batch`), spelled for SQLite: every batch is one
``BEGIN IMMEDIATE`` transaction (the file's write lock: writers take turns, readers go on
reading the WAL), so one statement per row costs no round trip and each statement's row
count says what this writer did — the insert that inserted (a new group, counted once for
the directory), the conditional update that regressed (counted once). Nothing here needs
``RETURNING`` or ``UPDATE … FROM``, so any SQLite Python ships with will do.

As on PostgreSQL, the group's own state (users, components, plugins, recoveries, highest
severity, coalesced count) is *merged* with what the other processes wrote, not replaced
(:class:`.batch.StateMerge`: each process holds only its own share of a group). What
differs from PostgreSQL:

- ``meta.processed`` counts the occurrences every writer stored (readers wait on it:
  :meth:`exporter.multiprocess.view.SharedView.settle`);
- the schema is migrated under the write lock, re-reading the version inside it (several
  workers start at once); a file of the old multiprocess layout (``error_groups``, before
  the directory used the durable schema) holds one run's data and is dropped.

Every call runs inside ``guard`` (the multiprocess fork guard): a fork never copies a
thread that is inside SQLite.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from exporter.release import monitor_version
from exporter.store.durable import batch, rows
from exporter.store.durable.batch import STATE_COLUMNS, Written
from exporter.store.durable.postgres_database import RESOLVE, Pruned, StoreUnavailable
from exporter.store.durable.rows import INSTANCE_UPSERT
from exporter.store.durable.sqlite_file import load_into as load_file_into
from exporter.store.durable.sqlite_schema import (
    StoreTooNew,
    check_version,
    version_of,
)
from exporter.store.durable.tables import (
    GROUP_COLUMNS,
    SCHEMA_VERSION,
    SESSIONS_ADD,
    SQLITE,
    UNKNOWN_INSTANCE,
    steps,
)
from exporter.store.durable.tracking import Changes
from exporter.store.memory import ErrorGroup, ErrorStore

BUSY_TIMEOUT_MS = 10000  # several workers write: wait for each other this long
IDS_PER_STATEMENT = 500  # SQLite's default limit is 32,766 parameters
OLD_LAYOUT = ("error_groups", "group_users", "group_labels", "records")
_INSERT = (
    f"INSERT INTO groups ({', '.join(GROUP_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in GROUP_COLUMNS)}) ON CONFLICT (app, error_id) DO NOTHING"
)
_COUNT_ONLY = (
    "UPDATE groups SET occurrence_count = occurrence_count + ? WHERE app = ? AND error_id = ?"
)
# every right-hand side reads the row as it was (SQLite, like SQL, updates all at once)
_ADD = """
UPDATE groups SET
    occurrence_count = occurrence_count + ?1,
    first_occurrence = min(first_occurrence, ?2),
    last_occurrence = max(last_occurrence, ?3),
    report = CASE WHEN ?3 >= last_occurrence THEN ?4 ELSE report END,
    state = ?5,
    last_seen_version = CASE WHEN ?3 >= last_occurrence
        THEN coalesce(?6, last_seen_version) ELSE last_seen_version END
WHERE app = ?7 AND error_id = ?8
"""
_REGRESS = """
UPDATE groups SET resolved_at = NULL, regressed = 1, regressed_at = ?
WHERE app = ? AND error_id = ? AND resolved_at IS NOT NULL AND resolved_at < ?
"""
PROCESSED_ADD = (  # meta.processed += ?: the occurrences a writer stored
    "INSERT INTO meta (key, value) VALUES ('processed', ?) ON CONFLICT (key) DO UPDATE SET "
    "value = CAST(meta.value AS INTEGER) + CAST(excluded.value AS INTEGER)"
)
# what only a multiprocess directory has, beside the durable schema (not versioned: the
# directory is emptied when the server starts): each live worker's published state
WORKERS_TABLE = (
    "CREATE TABLE IF NOT EXISTS workers (pid INTEGER PRIMARY KEY, updated REAL NOT NULL, "
    "state TEXT NOT NULL)"
)


def open_connection(path: str) -> sqlite3.Connection:
    """A connection (autocommit: transactions explicit), the file created private first
    (reports may hold what the scrubber did not recognise; its -wal and -shm follow its
    mode). O_EXCL: closing a descriptor of a file this process has open in SQLite would
    drop SQLite's POSIX locks on it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000.0
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (the file's write lock taken at once)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def ensure_schema(
    conn: sqlite3.Connection,
    where: str,
    app: str,
    on_migrate: Callable[[int, int], None] | None = None,
) -> None:
    """Create or migrate the tables (and the workers table) under the write lock;
    StoreTooNew for a newer file (left untouched)."""
    for _ in range(50):  # journal_mode needs no other connection inside a transaction
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError:
            time.sleep(0.02)
    with immediate(conn):
        found = version_of(conn)
        check_version(where, found)
        if found == 0:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "error_groups" in tables:  # the old multiprocess layout: one run's data
                for table in OLD_LAYOUT:
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
        if found < SCHEMA_VERSION:
            for statement in steps(SQLITE, found, app):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute(WORKERS_TABLE)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('written_by', ?)",
            (f"error-exporter {monitor_version()}",),
        )
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('started', ?)", (repr(time.time()),)
        )
    if on_migrate is not None and 0 < found < SCHEMA_VERSION:
        on_migrate(found, SCHEMA_VERSION)


class SqliteStatements:
    """The steps of a batch (:mod:`.batch`), one SQLite statement per row."""

    def __init__(self, states: batch.StateMerge) -> None:
        self.states = states

    def insert_new(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]
    ) -> list[tuple[str, str | None]]:
        created: list[tuple[str, str | None]] = []
        state_at = GROUP_COLUMNS.index("state")
        for row in rows:
            if conn.execute(_INSERT, row).rowcount == 1:
                error_id = str(row[1])
                created.append((error_id, row[GROUP_COLUMNS.index("first_seen_version")]))
                self.states.created(error_id, row[state_at])
        return created

    def add(self, conn: sqlite3.Connection, app: str, rows: list[batch.AddRow]) -> None:
        for error_id, added, first, last, report, state, last_version in rows:
            if report is None:  # a group that left this process's memory: counts only
                conn.execute(_COUNT_ONLY, (added, app, error_id))
                continue
            found = conn.execute(
                "SELECT state FROM groups WHERE app = ? AND error_id = ?", (app, error_id)
            ).fetchone()
            if found is None:
                continue
            merged = self.states.merged(error_id, found[0], state)
            conn.execute(_ADD, (added, first, last, report, merged, last_version, app, error_id))

    def resolve(
        self, conn: sqlite3.Connection, app: str, error_id: str, when: float, version: str | None
    ) -> None:
        conn.execute(RESOLVE.format(p="?"), (version, when, app, error_id))

    def regress(
        self, conn: sqlite3.Connection, app: str, latest: list[tuple[str, float]]
    ) -> list[str]:
        return [
            error_id
            for error_id, when in latest
            if conn.execute(_REGRESS, (when, app, error_id, when)).rowcount == 1
        ]

    def append_records(
        self, conn: sqlite3.Connection, rows: list[tuple[str, float, str, str, str]]
    ) -> None:
        conn.executemany(
            "INSERT INTO records (app, ts, error_id, data, instance) VALUES (?, ?, ?, ?, ?)", rows
        )

    def add_instances(
        self, conn: sqlite3.Connection, rows: list[tuple[str, str, str, int, float]]
    ) -> None:
        conn.executemany(INSTANCE_UPSERT.replace("GREATEST", "max"), rows)

    def add_sessions(self, conn: sqlite3.Connection, rows: list[tuple[str, str, int]]) -> None:
        conn.executemany(SESSIONS_ADD.format(p="?"), rows)

    def read_states(
        self, conn: sqlite3.Connection, app: str, ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        return read_states(conn, app, ids)


def read_states(
    conn: sqlite3.Connection, app: str, ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for chunk in batch.chunks(list(ids), IDS_PER_STATEMENT):
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM groups WHERE app = ? "
            f"AND error_id IN ({marks})",
            (app, *chunk),
        ):
            states[str(row[0])] = batch.state_row(row)
    return states


def resolve(
    conn: sqlite3.Connection, app: str, error_id: str, when: float, version: str | None
) -> ErrorGroup | None:
    """Resolve a group in the file itself (a process that does not hold it); the group
    as stored, or None when there is no such group."""
    with immediate(conn):
        conn.execute(RESOLVE.format(p="?"), (version, when, app, error_id))
        row = conn.execute(
            f"{rows.GROUP_SELECT} WHERE app = ? AND error_id = ?", (app, error_id)
        ).fetchone()
    return None if row is None else rows.group_from_row(row)


class SqliteSharedDatabase:
    """A multiprocess directory's file as :class:`~.postgres_store.MultiWriterBackend` uses it."""

    def __init__(
        self,
        path: str,
        guard: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        max_users: int = 1000,
        max_groups: int | None = None,
    ) -> None:
        self.path = path
        self.max_groups = max_groups  # the least recently seen beyond it pruned
        self.where = path
        self.guard = guard
        self.states = batch.StateMerge(max_users)

    def connect(self) -> sqlite3.Connection:
        with self.guard():
            return open_connection(self.path)

    def ensure_schema(
        self,
        conn: sqlite3.Connection,
        app: str,
        on_migrate: Callable[[int, int], None] | None = None,
    ) -> None:
        with self.guard():
            ensure_schema(conn, self.where, app, on_migrate)

    def load_into(self, conn: sqlite3.Connection, store: ErrorStore, app: str, since: float) -> int:
        with self.guard():
            conn.execute("BEGIN")
            try:
                loaded = load_file_into(conn, store, since, app)
            finally:
                conn.execute("COMMIT")
        with store.lock:  # the coalesced counts loaded are every process's: none to add
            self.states.loaded(store.groups)
        return loaded

    def write(
        self,
        conn: sqlite3.Connection,
        app: str,
        changes: Changes,
        groups: dict[str, ErrorGroup],
        instance: str = UNKNOWN_INSTANCE,
    ) -> Written:
        self.states.begin()
        with self.guard(), immediate(conn):
            done = batch.write(conn, SqliteStatements(self.states), app, changes, groups, instance)
            stored = sum(changes.counts.values())
            if stored:
                conn.execute(PROCESSED_ADD, (str(stored),))
        self.states.committed(changes.removed)
        return done

    def prune(self, conn: sqlite3.Connection, app: str, cutoff: float, max_records: int) -> Pruned:
        pruned = Pruned()
        with self.guard(), immediate(conn):
            pruned.by_age = conn.execute(
                "DELETE FROM records WHERE app = ? AND ts < ?", (app, cutoff)
            ).rowcount
            pruned.groups = [
                str(e)
                for (e,) in conn.execute(
                    "SELECT error_id FROM groups WHERE app = ? AND last_occurrence < ?",
                    (app, cutoff),
                )
            ]
            conn.execute("DELETE FROM groups WHERE app = ? AND last_occurrence < ?", (app, cutoff))
            if self.max_groups is not None:
                excess = [
                    str(e)
                    for (e,) in conn.execute(
                        "SELECT error_id FROM groups WHERE app = ? "
                        "ORDER BY last_occurrence DESC, error_id LIMIT -1 OFFSET ?",
                        (app, self.max_groups),
                    )
                ]
                for error_id in excess:
                    conn.execute(
                        "DELETE FROM groups WHERE app = ? AND error_id = ?", (app, error_id)
                    )
                    pruned.by_size += conn.execute(
                        "DELETE FROM records WHERE app = ? AND error_id = ?", (app, error_id)
                    ).rowcount
                pruned.groups += excess
            pruned.by_size += conn.execute(
                "DELETE FROM records WHERE app = ? AND seq <= (SELECT seq FROM records "
                "WHERE app = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (app, app, max_records),
            ).rowcount
        return pruned

    def states_of(
        self, conn: sqlite3.Connection, app: str, ids: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        with self.guard():
            conn.execute("BEGIN")
            try:
                return read_states(conn, app, sorted(ids))
            finally:
                conn.execute("COMMIT")

    def resolve(
        self, conn: sqlite3.Connection, app: str, error_id: str, when: float, version: str | None
    ) -> dict[str, Any] | None:
        with self.guard():
            group = resolve(conn, app, error_id, when, version)
        return None if group is None else group.summary()

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        if isinstance(exc, StoreUnavailable):
            return exc
        return StoreUnavailable(f"{self.where}: {type(exc).__name__}: {exc}")

    def close(self, conn: sqlite3.Connection) -> None:
        with self.guard(), contextlib.suppress(sqlite3.Error):
            conn.close()

    def forked(self) -> None:
        """A forked child adds its own share of each group (none written yet)."""
        self.states.forked()


__all__ = ["SqliteSharedDatabase", "StoreTooNew", "ensure_schema", "resolve"]
