"""The durable store's file: its tables, its schema version, and the steps between versions.

The version is SQLite's ``PRAGMA user_version`` (a header field, changed in the same
transaction as the tables). A file of an older version is migrated in place, step by step,
in one transaction; a file of a newer version (written by a newer error-exporter, before a
rollback) is refused: :class:`StoreTooNew`, and nothing in it is touched.

The tables, the version history and the migration steps are shared with PostgreSQL:
:mod:`.tables`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable

from exporter.release import monitor_version
from exporter.store.durable.tables import SCHEMA_VERSION, SQLITE, steps

BUSY_TIMEOUT_MS = 5000  # readers (offline) wait this long for a lock
WRITE_BUSY_TIMEOUT_MS = 1000  # the worker gives up sooner: the batch is retried next tick


class StoreError(Exception):
    """The store file cannot be used; the message names the file and why."""


class StoreTooNew(StoreError):
    """Written by a newer error-exporter: refused, left untouched."""


class StoreCorrupt(StoreError):
    """Not a database, or a damaged one: moved aside by the monitor, never deleted."""


def connect(path: str, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit)."""
    if read_only:
        from pathlib import Path

        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000.0,
        )
    else:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000.0
        )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def version_of(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def written_by(conn: sqlite3.Connection) -> str | None:
    """Which error-exporter last opened the file for writing (None: not recorded)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'written_by'").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def check_version(path: str, found: int, writer: str | None = None) -> None:
    if found > SCHEMA_VERSION:
        by = f"by {writer}" if writer else "by a newer release"
        raise StoreTooNew(
            f"{path}: store schema version {found} is newer than this error-exporter's "
            f"({SCHEMA_VERSION}); it was written {by}. Upgrade error-exporter, or point "
            "store_path at another file (this one is left untouched)"
        )


def check_integrity(conn: sqlite3.Connection, path: str) -> None:
    """Raise :class:`StoreCorrupt` unless SQLite's quick check passes."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and not _is_corruption(exc):
            raise
        raise StoreCorrupt(f"{path}: not a readable error store ({exc})") from None
    problems = [str(row[0]) for row in rows if str(row[0]) != "ok"]
    if problems:
        raise StoreCorrupt(f"{path}: damaged ({'; '.join(problems[:3])})")


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


def is_corruption(exc: sqlite3.Error) -> bool:
    """A damaged or foreign file (rather than a busy, missing or read-only one)."""
    return _is_corruption(exc) or type(exc) is sqlite3.DatabaseError


def open_writable(
    path: str, on_migrate: Callable[[int, int], None] | None = None, app: str = "app"
) -> sqlite3.Connection:
    """Open (or create) the store for writing: WAL, ``synchronous=NORMAL``, current schema.

    Raises :class:`StoreTooNew`, :class:`StoreCorrupt`, or ``sqlite3.Error`` for a file
    that cannot be opened or written at all.
    """
    # created private before SQLite opens it (its -wal and -shm follow its mode): reports may
    # hold what the scrubber did not recognise. O_EXCL: never reopen a file SQLite may hold.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    conn = connect(path)
    conn.execute(f"PRAGMA busy_timeout = {WRITE_BUSY_TIMEOUT_MS}")
    try:
        check_integrity(conn, path)
        found = version_of(conn)
        check_version(path, found, written_by(conn) if found > SCHEMA_VERSION else None)
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if found < SCHEMA_VERSION:
            migrate(conn, found, app)
            if on_migrate is not None and found > 0:
                on_migrate(found, SCHEMA_VERSION)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('written_by', ?)",
            (f"error-exporter {monitor_version()}",),
        )
        return conn
    except BaseException:
        conn.close()
        raise


def migrate(conn: sqlite3.Connection, found: int, app: str = "app") -> None:
    """Every step from ``found`` to the current version, in one transaction (rows written
    before version 3 are filed under ``app``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in steps(SQLITE, found, app):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
