"""The durable store's SQLite file: write a batch, prune, load into an ErrorStore.

One connection, used by the worker's tick (and by ``close`` at stop), behind one lock. Each
batch is one transaction: changed groups upserted whole, groups that left memory deleted
with their records, new records inserted. Retention runs here too: records older than
``retention_seconds`` (and the groups last seen before that) and the oldest records beyond
``max_records`` are deleted, and the caller counts them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable

from exporter.model import ErrorRecord, json_text
from exporter.store.codec import record_from_json
from exporter.store.durable import rows
from exporter.store.durable.tables import SESSIONS_ADD, Pruned
from exporter.store.durable.tracking import Changes
from exporter.store.memory import ErrorStore


class StoreFile:
    """The open store file (see :func:`exporter.store.durable.sqlite_schema.open_writable`)."""

    def __init__(
        self,
        path: str,
        conn: sqlite3.Connection,
        retention_seconds: float,
        max_records: int,
        app: str = "app",
    ) -> None:
        self.path = path
        self.app = app
        self.retention_seconds = retention_seconds
        self.max_records = max_records
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        self.record_rows = int(
            conn.execute("SELECT count(*) FROM records WHERE app = ?", (app,)).fetchone()[0]
        )

    @property
    def closed(self) -> bool:
        return self._conn is None

    def connection(self) -> sqlite3.Connection:
        """The open connection (opened again after :meth:`close`, e.g. stop then start)."""
        if self._conn is None:
            from exporter.store.durable.sqlite_schema import open_writable

            self._conn = open_writable(self.path, app=self.app)
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()

    # -- writing -----------------------------------------------------------------------------
    def write(self, changes: Changes, group_rows: Iterable[tuple[object, ...]]) -> None:
        """One transaction: the batch. Raises ``sqlite3.Error`` (nothing written then)."""
        instance = rows.instance_name()
        record_rows = [
            (
                seq,
                self.app,
                record.timestamp.timestamp(),
                record.error_id,
                json_text(record.to_dict(), ascii_only=False),
                instance,
            )
            for seq, record in changes.records
        ]
        with self._lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                added = self._apply(
                    conn, self.app, changes, list(group_rows), record_rows, instance
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self.record_rows += added

    @staticmethod
    def _apply(
        conn: sqlite3.Connection,
        app: str,
        changes: Changes,
        group_rows: list[tuple[object, ...]],
        record_rows: list[tuple[int, str, float, str, str, str]],
        instance: str,
    ) -> int:
        added = 0
        if changes.cleared_before is not None:
            added -= conn.execute(
                "DELETE FROM records WHERE app = ? AND ts <= ?", (app, changes.cleared_before)
            ).rowcount
            conn.execute(
                "DELETE FROM groups WHERE app = ? AND last_occurrence <= ?",
                (app, changes.cleared_before),
            )
            conn.execute(
                "DELETE FROM group_instances WHERE app = ? AND last_seen <= ?",
                (app, changes.cleared_before),
            )
        if changes.removed:
            doomed = [(app, e) for e in changes.removed]
            conn.executemany("DELETE FROM groups WHERE app = ? AND error_id = ?", doomed)
            conn.executemany("DELETE FROM group_instances WHERE app = ? AND error_id = ?", doomed)
            for error_id in changes.removed:
                added -= conn.execute(
                    "DELETE FROM records WHERE app = ? AND error_id = ?", (app, error_id)
                ).rowcount
        conn.executemany(rows.GROUP_UPSERT, group_rows)
        conn.executemany(
            SESSIONS_ADD.format(p="?"),
            [(app, status, count) for status, count in changes.sessions.items()],
        )
        conn.executemany(
            rows.INSTANCE_UPSERT.replace("GREATEST", "max"),
            [
                (app, e, instance, n, changes.latest.get(e, 0.0))
                for e, n in sorted(changes.counts.items())
                if n
            ],
        )
        for row in record_rows:
            added += conn.execute(
                "INSERT OR REPLACE INTO records (seq, app, ts, error_id, data, instance) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            ).rowcount
        return added

    def prune(self, now: float | None = None, by_age: bool = True) -> Pruned:
        """Retention: by age (records, and groups last seen before the cutoff), by size."""
        pruned = Pruned()
        with self._lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if by_age:  # about once a minute: the row count is taken afresh too
                    cutoff = (time.time() if now is None else now) - self.retention_seconds
                    app = self.app
                    pruned.by_age = conn.execute(
                        "DELETE FROM records WHERE app = ? AND ts < ?", (app, cutoff)
                    ).rowcount
                    pruned.groups = [
                        r[0]
                        for r in conn.execute(
                            "SELECT error_id FROM groups WHERE app = ? AND last_occurrence < ?",
                            (app, cutoff),
                        )
                    ]
                    conn.execute(
                        "DELETE FROM groups WHERE app = ? AND last_occurrence < ?", (app, cutoff)
                    )
                    conn.execute(
                        "DELETE FROM group_instances WHERE app = ? AND last_seen < ?",
                        (app, cutoff),
                    )
                    self.record_rows = int(
                        conn.execute(
                            "SELECT count(*) FROM records WHERE app = ?", (app,)
                        ).fetchone()[0]
                    )
                excess = self.record_rows - self.max_records
                if excess > 0:
                    pruned.by_size = conn.execute(
                        "DELETE FROM records WHERE seq IN (SELECT seq FROM records "
                        "WHERE app = ? ORDER BY seq LIMIT ?)",
                        (self.app, excess),
                    ).rowcount
                    self.record_rows -= pruned.by_size
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return pruned

    @property
    def over_size(self) -> bool:
        return self.record_rows > self.max_records


def last_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0])


def load_into(
    conn: sqlite3.Connection, store: ErrorStore, since: float | None = None, app: str | None = None
) -> int:
    """The stored groups (the most recently seen, up to the store's bound) and their newest
    records (up to its record bound) into ``store``; returns the records loaded.

    ``since``: leave out what retention would prune (last seen, or recorded, before it);
    ``app``: only that app's (None: every app's, for an offline reader).
    """
    where, args = " WHERE 1 = 1", list[object]()
    if since is not None:
        where, args = where + " AND last_occurrence >= ?", [since]
    if app is not None:
        where, args = where + " AND app = ?", [*args, app]
    group_rows = conn.execute(
        f"{rows.GROUP_SELECT}{where} ORDER BY last_occurrence DESC, error_id LIMIT ?",
        (*args, store.max_groups),
    ).fetchall()
    loaded = [rows.group_from_row(row) for row in reversed(group_rows)]
    record_where = where.replace("last_occurrence", "ts")
    record_rows = conn.execute(
        f"SELECT seq, data FROM records{record_where} ORDER BY seq DESC LIMIT ?",
        (*args, store.max_records),
    ).fetchall()
    with store.lock:
        for group in loaded:
            store.groups[group.report.error_id] = group
        count = 0
        for seq, data in reversed(record_rows):
            record: ErrorRecord = record_from_json(data)
            owner = store.groups.get(record.error_id)
            if owner is not None:
                owner.records.append((int(seq), record))
                count += 1
        store.record_count += count
    return count
