"""The shared store on PostgreSQL (``store_url``), as the monitor uses it.

Every process and host of an app writes one database; the in-memory store stays each
process's read model, loaded from the database at start and kept in step with what the
fleet did after every write (counts, first seen version, resolves, regressions). What
is new and what regressed is decided by the database, once for the fleet (see
:mod:`.postgres_database`); the monitor counts it in the process whose write did it.

The caller's thread never touches the database: the report worker writes one batch per
tick. While the database is away (down at start, or lost mid-run), the app runs on its
memory store: changes are kept (at most ``store_max_records`` records; what is given up
is counted as ``store_write_failed``; occurrence counts and resolves are never dropped),
the connection is retried with backoff (1 s doubling to 30 s), and the first write after
it comes back carries everything kept. Nothing raises into the app, and no message
carries the URL's password.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from exporter.config import MonitorConfig
from exporter.store.durable import postgres_database as db
from exporter.store.durable import rows
from exporter.store.durable.batch import Written, apply_states
from exporter.store.durable.sqlite_schema import StoreTooNew
from exporter.store.durable.tracking import Changes, SessionLedger, TrackingStore
from exporter.store.memory import ErrorGroup, ErrorStore

log = logging.getLogger("exporter.store.durable")
PRUNE_EVERY_SECONDS = 60.0
SYNC_EVERY_SECONDS = 5.0  # resolves done elsewhere reach groups this process did not write
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
DROP_AGE = "store_retention"
DROP_SIZE = "store_max_records"
DROP_WRITE = "store_write_failed"
CountDrop = Callable[[str, int], None]


class SharedDatabase(Protocol):
    """A database many processes write (PostgreSQL: :class:`.postgres_database.PostgresDatabase`;
    a multiprocess directory's SQLite file: :class:`.sqlite_shared.SqliteSharedDatabase`).
    Each call but ``connect`` and ``close`` is one transaction on ``conn``."""

    where: str

    def connect(self) -> Any: ...

    def ensure_schema(
        self, conn: Any, app: str, on_migrate: Callable[[int, int], None] | None = None
    ) -> None: ...

    def load_into(self, conn: Any, store: ErrorStore, app: str, since: float) -> int: ...

    def write(
        self,
        conn: Any,
        app: str,
        changes: Changes,
        groups: dict[str, ErrorGroup],
        instance: str,
    ) -> Written: ...

    def prune(self, conn: Any, app: str, cutoff: float, max_records: int) -> db.Pruned: ...

    def states_of(self, conn: Any, app: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def resolve(
        self, conn: Any, app: str, error_id: str, when: float, version: str | None
    ) -> dict[str, Any] | None: ...

    def unavailable(self, exc: BaseException) -> db.StoreUnavailable: ...

    def close(self, conn: Any) -> None: ...


class FleetHooks:
    """What the backend tells the monitor: a group created here, a regression seen here,
    and (``stored``, multiprocess mode) how many occurrences a committed batch stored, told
    once the first two are counted, so a reader waiting on it sees their counts too."""

    def __init__(
        self,
        new_group: Callable[[str | None], None],
        regressed: Callable[[ErrorGroup], None],
        stored: Callable[[int], None] | None = None,
    ) -> None:
        self.new_group = new_group
        self.regressed = regressed
        self.stored = stored


class MultiWriterBackend:
    """Write-behind of a monitor's store to the shared database; reconnects by itself."""

    def __init__(
        self,
        config: MonitorConfig,
        count_drop: CountDrop,
        note_internal_error: Callable[[BaseException], None],
        hooks: FleetHooks,
        ledger: SessionLedger | None = None,
        database: SharedDatabase | None = None,
        make_store: Callable[[ErrorStore], TrackingStore] = TrackingStore,
    ) -> None:
        if database is None:
            assert config.store_url is not None
            database = db.PostgresDatabase(config.store_url, config.max_users_per_group)
        self.db = database
        self.make_store = make_store  # the multiprocess directory reads records from the file
        self.ledger = ledger
        self.where = database.where  # what log lines and errors name (no password)
        self.app = config.store_app
        self.retention_seconds = config.store_retention_seconds
        self.max_records = config.store_max_records
        self.count_drop = count_drop
        self.note_internal_error = note_internal_error
        self.hooks = hooks
        self.pid = os.getpid()
        self.instance = rows.instance_name()  # the writer in group_instances and records
        self.store: TrackingStore | None = None
        self.conn: Any = None
        self.too_new = False
        self._lock = threading.Lock()  # the connection: the worker's tick, close, resolve
        self._warned = False
        self._retry_at = 0.0
        self._backoff = 0.0
        self._next_prune = 0.0
        self._prune_every = min(PRUNE_EVERY_SECONDS, max(config.store_retention_seconds / 4, 0.25))
        self._next_sync = 0.0
        for reason in (DROP_AGE, DROP_SIZE, DROP_WRITE):
            count_drop(reason, 0)

    # -- construction ------------------------------------------------------------------------
    def start(self, base: ErrorStore) -> TrackingStore | None:
        """The tracking store replacing ``base``: loaded from the database when it can be
        reached now (else empty, written once it can). None: the schema is newer than this
        release (one WARNING; the monitor stays memory-only)."""
        store = self.make_store(base)
        self.store = store
        with self._lock:
            if self._connect():
                self._load(store)
        return None if self.too_new else store

    def _connect(self) -> bool:
        """Open and migrate (the caller holds the lock); False after a counted failure."""
        if self.conn is not None:
            return True
        conn = None
        try:
            conn = self.db.connect()
            self.db.ensure_schema(conn, self.app, self._migrated)
        except StoreTooNew as exc:
            self.too_new = True
            self._close(conn)
            log.warning("error-exporter: %s; running with a memory-only store", exc)
            return False
        except Exception as exc:
            self._close(conn)
            self._failed("connect to", exc)
            return False
        self.conn = conn
        if self._warned:
            log.warning(
                "error-exporter: the store %s is reachable again; writing what was kept", self.where
            )
        self._warned = False
        self._backoff = self._retry_at = 0.0
        return True

    def _migrated(self, old: int, new: int) -> None:
        log.info(
            "error-exporter: store %s migrated from schema version %d to %d", self.where, old, new
        )

    def _load(self, store: TrackingStore) -> None:
        try:
            self.db.load_into(self.conn, store, self.app, time.time() - self.retention_seconds)
        except Exception as exc:
            self._lost(exc, "read")  # an empty start; the writes follow when it is back

    # -- worker thread -----------------------------------------------------------------------
    def tick(self) -> None:
        """Write what changed (one transaction); prune and sync when due. Never raises."""
        store = self.store
        if store is None or os.getpid() != self.pid or self.too_new:
            return
        with self._lock:
            if self.conn is None and (time.monotonic() < self._retry_at or not self._connect()):
                self._given_up(store.trim_pending(self.max_records))
                return
            self._write(store)
            if self.conn is None:
                return
            now = time.monotonic()
            if now >= self._next_prune:
                self._next_prune = now + self._prune_every
                self._prune(store)
            if self.conn is not None and now >= self._next_sync:
                self._next_sync = now + SYNC_EVERY_SECONDS
                self._sync(store)

    def _write(self, store: TrackingStore) -> None:
        changes = store.take_changes()
        if self.ledger is not None:
            changes.sessions = self.ledger.due()
        if not (
            changes.groups
            or changes.counts
            or changes.resolved
            or changes.records
            or changes.sessions
        ):
            return
        with store.lock:
            groups = {
                e: store.groups[e]
                for e in changes.groups | set(changes.counts) | set(changes.resolved)
                if e in store.groups
            }
            frozen = {e: _copy(g) for e, g in groups.items()}
        try:
            done = self._attempt(changes, frozen)
        except Exception as exc:  # the sessions stay due in the ledger
            self._given_up(store.give_back(changes, self.max_records))
            self._lost(exc, "write to")
            return
        if self.ledger is not None:
            self.ledger.written(changes.sessions)
        apply_states(store, done.states)
        for _, version in done.created:
            self.hooks.new_group(version)
        for error_id in done.regressed:
            group = store.groups.get(error_id)
            if group is not None:
                self.hooks.regressed(group)
        if self.hooks.stored is not None:
            try:
                self.hooks.stored(sum(changes.counts.values()))
            except Exception as exc:  # committed: never written again; readers wait less
                self.note_internal_error(exc)

    def _attempt(self, changes: Any, groups: dict[str, ErrorGroup]) -> Written:
        return self.db.write(self.conn, self.app, changes, groups, self.instance)

    def _prune(self, store: TrackingStore) -> None:
        try:
            pruned = self.db.prune(
                self.conn, self.app, time.time() - self.retention_seconds, self.max_records
            )
        except Exception as exc:
            self._lost(exc, "prune")
            return
        if pruned.by_age:
            self.count_drop(DROP_AGE, pruned.by_age)
        if pruned.by_size:
            self.count_drop(DROP_SIZE, pruned.by_size)
        if pruned.groups:
            store.forget(pruned.groups)

    def _sync(self, store: TrackingStore) -> None:
        with store.lock:
            ids = list(store.groups)
        if not ids:
            return
        try:
            states = self.db.states_of(self.conn, self.app, ids)
        except Exception as exc:
            self._lost(exc, "read")
            return
        apply_states(store, states)

    def _given_up(self, count: int) -> None:
        if count:
            self.count_drop(DROP_WRITE, count)

    def _lost(self, exc: BaseException, what: str) -> None:
        """A statement failed: the connection is dropped (reopened with backoff)."""
        self._close(self.conn)
        self.conn = None
        self._failed(what, exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Back off, count, warn once (the message without the password)."""
        self._backoff = min(max(self._backoff * 2, RETRY_FIRST_SECONDS), RETRY_MAX_SECONDS)
        self._retry_at = time.monotonic() + self._backoff
        safe = self.db.unavailable(exc)
        self.note_internal_error(safe)
        if not self._warned:
            self._warned = True
            log.warning(
                "error-exporter: could not %s the store %s (%s); running on memory "
                "(at most store_max_records records kept) and retrying with backoff",
                what,
                self.where,
                safe,
            )

    def _close(self, conn: Any) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                self.db.close(conn)

    def after_fork_in_child(self, base: ErrorStore) -> TrackingStore:
        """A forked child (a gunicorn worker) writes the same database on its own
        connection; the parent's socket (or SQLite handle) is left alone."""
        self.pid = os.getpid()
        self.instance = rows.instance_name()
        self.conn = None  # not closed: that would end the parent's session
        self._lock = threading.Lock()
        self._retry_at = self._backoff = 0.0
        self._warned = False
        if self.ledger is not None:
            self.ledger.reset()
        forked = getattr(self.db, "forked", None)
        if forked is not None:  # what the parent wrote is not this child's to add
            forked()
        self.store = self.make_store(base)
        return self.store

    # -- other threads ---------------------------------------------------------------------
    def resolve(self, error_id: str, version: str | None) -> dict[str, Any] | None:
        """Resolve a group this process does not hold, in the database itself (an API
        call); None when the database has no such group either, or cannot be reached."""
        with self._lock:
            if self.conn is None and (time.monotonic() < self._retry_at or not self._connect()):
                return None
            try:
                return self.db.resolve(self.conn, self.app, error_id, time.time(), version)
            except Exception as exc:
                self._lost(exc, "write to")
                return None

    def close(self) -> None:
        """Write what is left and close (the monitor stopped). Never raises."""
        if os.getpid() != self.pid:
            return
        try:
            self.tick()
        except Exception as exc:
            self.note_internal_error(exc)
        with self._lock:
            self._close(self.conn)
            self.conn = None
            self._retry_at = 0.0


def _copy(group: ErrorGroup) -> ErrorGroup:
    """What the batch writes of a group, taken under the store's lock (the worker may
    change the group while the batch is on its way)."""
    import copy

    clone = copy.copy(group)
    clone.report = copy.copy(group.report)
    clone.users = set(group.users)
    clone.components = dict(group.components)
    clone.plugins = dict(group.plugins)
    clone.recoveries = dict(group.recoveries)
    return clone


def attach(
    config: MonitorConfig,
    store: ErrorStore,
    count_drop: CountDrop,
    note_internal_error: Callable[[BaseException], None],
    hooks: FleetHooks,
    ledger: SessionLedger | None = None,
) -> tuple[MultiWriterBackend, TrackingStore] | None:
    """With a ``postgresql://`` ``store_url``: the backend and the store to use instead
    of ``store``; None when the schema is newer than this release (memory only)."""
    backend = MultiWriterBackend(config, count_drop, note_internal_error, hooks, ledger)
    tracking = backend.start(store)
    return None if tracking is None else (backend, tracking)
