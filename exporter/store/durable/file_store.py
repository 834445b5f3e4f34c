"""The durable store of one process, as the monitor uses it: open, load, write each tick.

At construction: the file is opened (created, migrated) and what it holds is loaded into
the in-memory store, so a restarted process serves its earlier groups and records through
every reader. Then every tick of the report worker (about 4 a second, and before each flush
is answered) writes what changed as one transaction, and retention runs at most once a
minute. The caller's thread never touches the file.

Nothing here raises into the app once the monitor is built: a write that fails is retried
at the next tick (bounded, what is given up counted), logged once at WARNING and counted
as an internal error. A file that cannot be used at all leaves the monitor in memory-only
mode with a WARNING; a damaged one is moved aside (never deleted) and a fresh one created.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from exporter.config import ConfigError, MonitorConfig
from exporter.store.dsn import is_postgres, psycopg_missing
from exporter.store.durable import rows, sqlite_schema
from exporter.store.durable.sqlite_file import StoreFile, last_seq, load_into
from exporter.store.durable.tracking import SessionLedger, TrackingStore
from exporter.store.memory import ErrorStore

log = logging.getLogger("exporter.store.durable")
PRUNE_EVERY_SECONDS = 60.0  # or a quarter of a shorter retention
RETRY_FIRST_SECONDS = 1.0  # after a failed write, wait this long, doubling up to the max
RETRY_MAX_SECONDS = 30.0
DROP_AGE = "store_retention"
DROP_SIZE = "store_max_records"
DROP_WRITE = "store_write_failed"
DROP_REASONS = (DROP_AGE, DROP_SIZE, DROP_WRITE)
CountDrop = Callable[[str, int], None]


def check_config(config: MonitorConfig, multiprocess_mode: bool) -> None:
    """Fail fast on a ``store_path`` / ``store_url`` that cannot work (a ConfigError
    naming the key, never the URL's password)."""
    if config.store_path is not None and config.store_url is not None:
        raise ConfigError(
            "store_path and store_url: set one of them (store_url="
            "sqlite:///path is the same as store_path)"
        )
    if is_postgres(config.store_url):  # multiprocess mode too (exporter.multiprocess.postgres_mode)
        missing = psycopg_missing()
        if missing:
            raise ConfigError(f"store_url: {missing}")
        return
    path = config.store_file
    if path is None:
        return
    if multiprocess_mode:
        raise ConfigError(
            "store_path: cannot be combined with multiprocess mode (PROMETHEUS_MULTIPROC_DIR "
            "is set): the workers already share error-exporter.sqlite in that directory; "
            "unset store_path or PROMETHEUS_MULTIPROC_DIR"
        )
    target = Path(path)
    if target.is_dir():
        raise ConfigError(
            f"store_path: {path} is a directory; name a file in it (e.g. errors.sqlite)"
        )
    directory = target.parent
    if not directory.is_dir():
        raise ConfigError(f"store_path: directory {directory} of {path} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"store_path: directory {directory} of {path} is not writable "
            "(SQLite needs to create the -wal and -shm files beside it)"
        )


def moved_aside_name(path: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{path}.corrupt-{stamp}"


def move_aside(path: str) -> str:
    """Rename a damaged store (and its -wal / -shm, paired by name) out of the way."""
    target = moved_aside_name(path)
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return target


def open_file(path: str, app: str = "app") -> sqlite3.Connection | None:
    """The writable store, or None (memory only) after a WARNING naming the file."""
    try:
        return _open_or_replace(path, app)
    except sqlite_schema.StoreTooNew as exc:
        log.warning("error-exporter: %s; running with a memory-only store", exc)
    except (sqlite_schema.StoreError, sqlite3.Error, OSError) as exc:
        log.warning(
            "error-exporter: cannot use the store %s (%s); running with a memory-only store",
            path,
            exc,
        )
    return None


def _open_or_replace(path: str, app: str) -> sqlite3.Connection:
    def migrated(old: int, new: int) -> None:
        log.info("error-exporter: store %s migrated from schema version %d to %d", path, old, new)

    try:
        return sqlite_schema.open_writable(path, migrated, app)
    except (sqlite_schema.StoreCorrupt, sqlite3.DatabaseError) as exc:
        if isinstance(exc, sqlite3.Error) and not sqlite_schema.is_corruption(exc):
            raise
        aside = move_aside(path)
        log.warning(
            "error-exporter: the store %s is damaged (%s); moved it aside to %s "
            "(nothing deleted) and started a fresh store",
            path,
            exc,
            aside,
        )
        return sqlite_schema.open_writable(path, app=app)


class DurableBackend:
    """Write-behind persistence of a monitor's :class:`ErrorStore` to ``store_path``."""

    def __init__(
        self,
        config: MonitorConfig,
        conn: sqlite3.Connection,
        count_drop: CountDrop,
        note_internal_error: Callable[[BaseException], None],
        ledger: SessionLedger | None = None,
    ) -> None:
        assert config.store_file is not None
        self.ledger = ledger
        self.path = config.store_file
        self.app = config.store_app
        self.file = StoreFile(
            self.path, conn, config.store_retention_seconds, config.store_max_records, self.app
        )
        self.count_drop = count_drop
        self.note_internal_error = note_internal_error
        self.pid = os.getpid()
        self.store: TrackingStore | None = None
        self._next_prune = 0.0  # the first tick prunes what expired while nobody ran
        self._prune_every = min(PRUNE_EVERY_SECONDS, max(config.store_retention_seconds / 4, 0.25))
        self._warned = False
        self._writing = threading.Lock()  # batches reach the file in the order taken
        self._retry_at = 0.0  # after a failure: no write (no worker blocked on it) before
        self._backoff = 0.0
        for reason in DROP_REASONS:
            count_drop(reason, 0)  # each reason exists at 0 from the start

    def load(self, base: ErrorStore) -> TrackingStore:
        """The tracking store replacing ``base``, holding what the file holds."""
        store = TrackingStore(base)
        conn = self.file.connection()
        since = time.time() - self.file.retention_seconds
        try:
            load_into(conn, store, since, self.app)
            store.continue_sequence(last_seq(conn))
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            # readable pages, unreadable rows: damaged as far as this release can tell
            raise sqlite_schema.StoreCorrupt(
                f"{self.path}: rows that cannot be read ({exc!r})"
            ) from None
        self.store = store
        return store

    # -- worker thread ------------------------------------------------------------------------
    def tick(self) -> None:
        """Write what changed since the last tick; prune when due. Never raises."""
        store = self.store
        if store is None or os.getpid() != self.pid:
            return  # a forked child keeps its own account in memory, not the parent's file
        self._write(store)
        now = time.monotonic()
        if now < self._retry_at:
            return  # the file refused the last write or prune: leave it alone for now
        if now >= self._next_prune or self.file.over_size:
            by_age = now >= self._next_prune
            if by_age:
                self._next_prune = now + self._prune_every
            self._prune(store, by_age)

    def _write(self, store: TrackingStore, final: bool = False) -> None:
        with self._writing:
            if not final and time.monotonic() < self._retry_at:  # backing off: keep, bounded
                self._given_up(store.trim_pending(self.file.max_records))
                return
            changes = store.take_changes()
            if self.ledger is not None:
                changes.sessions = self.ledger.due()
            if not changes:
                return
            with store.lock:
                group_rows = [
                    rows.group_row(store.groups[e], self.app)
                    for e in changes.groups
                    if e in store.groups
                ]
            try:
                self.file.write(changes, group_rows)
            except Exception as exc:  # the sessions stay due in the ledger
                self._given_up(store.give_back(changes, self.file.max_records))
                self._failed("write to", exc)
                return
            if self.ledger is not None:
                self.ledger.written(changes.sessions)
            self._warned = False
            self._backoff = self._retry_at = 0.0

    def _given_up(self, count: int) -> None:
        if count:
            self.count_drop(DROP_WRITE, count)

    def _prune(self, store: TrackingStore, by_age: bool) -> None:
        try:
            pruned = self.file.prune(by_age=by_age)
        except Exception as exc:
            self._failed("prune", exc)
            return
        self._backoff = self._retry_at = 0.0
        if pruned.by_age:
            self.count_drop(DROP_AGE, pruned.by_age)
        if pruned.by_size:
            self.count_drop(DROP_SIZE, pruned.by_size)
        if pruned.groups:
            store.forget(pruned.groups)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Back off (no worker blocked on a file that refuses), count, warn once."""
        self._backoff = min(max(self._backoff * 2, RETRY_FIRST_SECONDS), RETRY_MAX_SECONDS)
        self._retry_at = time.monotonic() + self._backoff
        self.note_internal_error(exc)
        if not self._warned:
            self._warned = True
            log.warning(
                "error-exporter: could not %s the store %s (%r); kept in memory "
                "(at most store_max_records records) and retried after %.0f s",
                what,
                self.path,
                exc,
                max(self._backoff, RETRY_FIRST_SECONDS),
            )

    def close(self) -> None:
        """Write what is left and close the file (the monitor stopped). Never raises."""
        if os.getpid() != self.pid:
            return
        try:
            if self.store is not None:
                self._write(self.store, final=True)
            self.file.close()
        except Exception as exc:
            self.note_internal_error(exc)


def attach(
    config: MonitorConfig,
    store: ErrorStore,
    count_drop: CountDrop,
    note_internal_error: Callable[[BaseException], None],
    ledger: SessionLedger | None = None,
) -> tuple[DurableBackend, TrackingStore] | None:
    """With ``store_path`` set: the backend and the loaded store to use instead of
    ``store``; None when unset, or when the file cannot be used (memory only, WARNING)."""
    path = config.store_file
    if path is None:
        return None
    conn = open_file(path, config.store_app)
    if conn is None:
        return None
    try:
        try:
            backend = DurableBackend(config, conn, count_drop, note_internal_error, ledger)
            return backend, backend.load(store)
        except sqlite_schema.StoreCorrupt as exc:
            conn.close()
            aside = move_aside(path)
            log.warning(
                "error-exporter: could not load the store %s (%s); moved it aside "
                "to %s (nothing deleted) and started a fresh store",
                path,
                exc,
                aside,
            )
            conn = sqlite_schema.open_writable(path, app=config.store_app)
            backend = DurableBackend(config, conn, count_drop, note_internal_error, ledger)
            return backend, backend.load(store)
    except (sqlite_schema.StoreError, sqlite3.Error, OSError) as exc:
        conn.close()
        log.warning(
            "error-exporter: cannot use the store %s (%s); running with a memory-only store",
            path,
            exc,
        )
        return None
