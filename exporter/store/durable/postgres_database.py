"""The shared store's database: connect, migrate once for everyone, write a batch, prune.

Every statement of the shared store is here; :mod:`.postgres_store` decides when they run.
A batch is one transaction, correct while any number of processes write the same groups:

1. new groups: ``INSERT … ON CONFLICT DO NOTHING RETURNING`` — the rows returned are the
   groups this process created, so "new in version X" is counted once for the whole fleet;
2. groups that existed: their occurrences *added* (``occurrence_count + n``), first / last
   seen widened, the latest report kept when it is the latest; the group's own state
   (users, components, plugins, recoveries, highest severity, coalesced count) *merged*:
   the rows are locked (``SELECT … FOR UPDATE``), this process's share merged into what
   they hold (:class:`.batch.StateMerge`, the SQLite directory's merge too), then written,
   so a concurrent writer waits and merges into ours rather than replacing it;
3. resolves done in this process: ``resolved_at`` set where it is not yet (the first wins);
4. regressions: ``UPDATE … WHERE resolved_at IS NOT NULL AND resolved_at < latest
   RETURNING`` — the row lock lets exactly one process see the row come back, so it is
   counted once;
5. the records (``seq`` is the database's: one order for the fleet), each with the
   instance that wrote it, and the instance's own count of each group added to its
   ``group_instances`` row (what the fleet read shows per instance);
6. the release state of every group written, read back: what other processes did
   (created first, resolved, regressed) reaches this one's in-memory store.

Rows are taken in ``error_id`` order in every statement, so two writers never wait on
each other in a cycle. Migrations run under ``pg_advisory_xact_lock``: one process
migrates, the others wait and find the work done; retention runs in the one process that
gets ``pg_try_advisory_xact_lock`` (the others skip it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from exporter.release import monitor_version
from exporter.store.dsn import redact_text
from exporter.store.durable import batch, rows
from exporter.store.durable import (
    rows as rows_module,  # the parameter ``rows`` of the statements shadows it
)
from exporter.store.durable.batch import STATE_COLUMNS, Written, apply_states
from exporter.store.durable.sqlite_schema import StoreError, StoreTooNew
from exporter.store.durable.tables import (
    GROUP_COLUMNS,
    POSTGRESQL,
    SCHEMA_VERSION,
    SESSIONS_ADD,
    UNKNOWN_INSTANCE,
    Pruned,
    steps,
)
from exporter.store.durable.tracking import Changes
from exporter.store.memory import ErrorGroup, ErrorStore

log = logging.getLogger("exporter.store.durable")
MIGRATION_LOCK = 0x6572726F  # pg_advisory_xact_lock key of the schema ("erro")
RETENTION_LOCK = 0x72657465  # with hashtext(app): the retention pass of one app
CONNECT_TIMEOUT_SECONDS = 3
ROWS_PER_STATEMENT = 500  # x 13 columns: well under PostgreSQL's 65,535 parameters
STATEMENT_TIMEOUT_MS = 10000  # a batch that waits longer is given back and retried


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused a statement (the message has no
    password: psycopg's may quote the DSN)."""


def unavailable(exc: BaseException, url: str) -> StoreUnavailable:
    return StoreUnavailable(redact_text(f"{type(exc).__name__}: {exc}".strip(), url))


def connect(url: str, read_only: bool = False) -> Any:
    """A psycopg connection (transactions explicit); TLS and every other URL parameter
    pass through as written. Raises :class:`StoreUnavailable`."""
    import psycopg

    options: dict[str, Any] = {"autocommit": False, "application_name": "error-exporter"}
    if "connect_timeout" not in url:
        options["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        conn = psycopg.connect(url, **options)
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
        conn.commit()
        return conn
    except psycopg.Error as exc:
        raise unavailable(exc, url) from None


def version_of(conn: Any) -> int:
    """The schema version (0: no tables yet)."""
    if conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None else 1


def ensure_schema(
    conn: Any, where: str, app: str, on_migrate: Callable[[int, int], None] | None = None
) -> None:
    """Create or migrate the tables, one process at a time; StoreTooNew for a newer one."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = version_of(conn)
        if found > SCHEMA_VERSION:
            row = conn.execute("SELECT value FROM meta WHERE key = 'written_by'").fetchone()
            by = f"by {row[0]}" if row else "by a newer release"
            raise StoreTooNew(
                f"{where}: store schema version {found} is newer than this error-exporter's "
                f"({SCHEMA_VERSION}); it was written {by}. Upgrade error-exporter (the "
                "database is left untouched)"
            )
        if found < SCHEMA_VERSION:
            for statement in steps(POSTGRESQL, found, app):
                conn.execute(statement)
            _meta(conn, "schema_version", str(SCHEMA_VERSION))
            if on_migrate is not None and found > 0:
                on_migrate(found, SCHEMA_VERSION)
        _meta(conn, "written_by", f"error-exporter {monitor_version()}")


def _meta(conn: Any, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
        "DO UPDATE SET value = EXCLUDED.value",
        (key, value),
    )


_INSERT = (
    f"INSERT INTO groups ({', '.join(GROUP_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT (app, error_id) DO NOTHING RETURNING error_id, first_seen_version"
)
_ROW = "(" + ", ".join(["%s"] * len(GROUP_COLUMNS)) + ")"
_ADD = """
UPDATE groups g SET
    occurrence_count = g.occurrence_count + v.added,
    first_occurrence = LEAST(g.first_occurrence, v.first_occurrence),  -- NULL: ignored
    last_occurrence = GREATEST(g.last_occurrence, v.last_occurrence),
    report = CASE WHEN v.last_occurrence >= g.last_occurrence THEN v.report ELSE g.report END,
    state = coalesce(v.state, g.state),  -- merged in Python (_LOCK); NULL: counts only
    last_seen_version = CASE WHEN v.last_occurrence >= g.last_occurrence
        THEN coalesce(v.last_seen_version, g.last_seen_version) ELSE g.last_seen_version END
FROM (VALUES {values}) AS v (error_id, added, first_occurrence, last_occurrence, report,
                             state, last_seen_version)
WHERE g.app = %s AND g.error_id = v.error_id
"""
_ADD_ROW = "(%s::text, %s::bigint, %s::float8, %s::float8, %s::text, %s::text, %s::text)"
# the rows _ADD writes, locked first in error_id order: the state merged into is the
# last one committed, and no other writer changes it before this batch commits
_LOCK = (
    "SELECT error_id, state FROM groups WHERE app = %s AND error_id = ANY(%s) "
    "ORDER BY error_id FOR UPDATE"
)
RESOLVE = """
UPDATE groups SET
    resolved_version = CASE WHEN resolved_at IS NULL THEN {p} ELSE resolved_version END,
    resolved_at = coalesce(resolved_at, {p}), regressed = 0, regressed_at = NULL
WHERE app = {p} AND error_id = {p}
"""
_RESOLVE = RESOLVE.format(p="%s")
_REGRESS = """
UPDATE groups g SET resolved_at = NULL, regressed = 1, regressed_at = v.latest
FROM (VALUES {values}) AS v (error_id, latest)
WHERE g.app = %s AND g.error_id = v.error_id
    AND g.resolved_at IS NOT NULL AND g.resolved_at < v.latest
RETURNING g.error_id
"""
_STATES = f"SELECT {', '.join(STATE_COLUMNS)} FROM groups WHERE app = %s AND error_id = ANY(%s)"


class PostgresStatements:
    """The steps of a batch (:mod:`.batch`) as PostgreSQL statements: many rows per
    statement (one round trip each), ``RETURNING`` saying what this writer did."""

    def __init__(self, states: batch.StateMerge) -> None:
        self.states = states

    def insert_new(self, conn: Any, rows: list[tuple[Any, ...]]) -> list[tuple[str, str | None]]:
        created: list[tuple[str, str | None]] = []
        id_at, state_at = GROUP_COLUMNS.index("error_id"), GROUP_COLUMNS.index("state")
        for chunk in _chunks(rows):
            cur = conn.execute(
                _INSERT.format(values=", ".join([_ROW] * len(chunk))),
                [value for row in chunk for value in row],
            )
            inserted = [(str(e), v) for e, v in cur.fetchall()]
            states = {str(row[id_at]): str(row[state_at]) for row in chunk}
            for error_id, _ in inserted:
                self.states.created(error_id, states[error_id])
            created += inserted
        return created

    def add(self, conn: Any, app: str, rows: list[batch.AddRow]) -> None:
        for chunk in _chunks(rows):
            stored = {
                str(e): str(state)
                for e, state in conn.execute(_LOCK, (app, [row[0] for row in chunk]))
            }
            merged = [self._merged(row, stored.get(str(row[0]))) for row in chunk]
            conn.execute(
                _ADD.format(values=", ".join([_ADD_ROW] * len(chunk))),
                [*[value for row in merged for value in row], app],
            )

    def _merged(self, row: batch.AddRow, stored: str | None) -> batch.AddRow:
        """The row with its state merged into the stored one (a group that left memory
        has none: ``coalesce`` keeps the stored; a row that is gone: nothing to update)."""
        state = row[5]
        if state is None or stored is None:
            return row
        return (*row[:5], self.states.merged(str(row[0]), stored, state), *row[6:])

    def resolve(self, conn: Any, app: str, error_id: str, when: float, version: str | None) -> None:
        conn.execute(_RESOLVE, (version, when, app, error_id))

    def regress(self, conn: Any, app: str, latest: list[tuple[str, float]]) -> list[str]:
        regressed: list[str] = []
        for chunk in _chunks(latest):
            cur = conn.execute(
                _REGRESS.format(values=", ".join(["(%s::text, %s::float8)"] * len(chunk))),
                [*[value for pair in chunk for value in pair], app],
            )
            regressed += [str(e) for (e,) in cur.fetchall()]
        return regressed

    def append_records(self, conn: Any, rows: list[tuple[str, float, str, str, str]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO records (app, ts, error_id, data, instance) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )

    def add_instances(self, conn: Any, rows: list[tuple[str, str, str, int, float]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(rows_module.INSTANCE_UPSERT.replace("?", "%s"), rows)

    def add_sessions(self, conn: Any, rows: list[tuple[str, str, int]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(SESSIONS_ADD.format(p="%s"), rows)

    def read_states(self, conn: Any, app: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return read_states(conn, app, ids)


def write(
    conn: Any,
    app: str,
    changes: Changes,
    groups: dict[str, ErrorGroup],
    instance: str = UNKNOWN_INSTANCE,
    states: batch.StateMerge | None = None,
) -> Written:
    """One batch, one transaction (see :mod:`.batch`). ``groups``: the changed groups'
    in-memory state, read under the store's lock by the caller; ``states``: what this
    writer has written of its groups' state (None: a writer that has written none).
    Raises psycopg errors (nothing written then)."""
    states = batch.StateMerge() if states is None else states
    states.begin()
    with conn.transaction():
        done = batch.write(conn, PostgresStatements(states), app, changes, groups, instance)
    states.committed(changes.removed)
    return done


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    """Statements of at most ROWS_PER_STATEMENT rows (a statement takes at most 65,535
    parameters; ``error_buffer_size`` may be larger than a statement holds)."""
    return batch.chunks(items, ROWS_PER_STATEMENT)


def read_states(conn: Any, app: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Counts, times and release state of these groups as the fleet has them."""
    cur = conn.execute(_STATES, (app, list(ids)))
    return {str(row[0]): batch.state_row(row) for row in cur}


def prune(conn: Any, app: str, cutoff: float, max_records: int) -> Pruned:
    """Retention of ``app``: records before ``cutoff`` and the groups last seen before it;
    the oldest records beyond ``max_records``. Only where the lock is free."""
    pruned = Pruned()
    with conn.transaction():
        got = conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (RETENTION_LOCK, app)
        ).fetchone()[0]
        if not got:
            pruned.skipped = True
            return pruned
        pruned.by_age = conn.execute(
            "DELETE FROM records WHERE app = %s AND ts < %s", (app, cutoff)
        ).rowcount
        conn.execute("DELETE FROM group_instances WHERE app = %s AND last_seen < %s", (app, cutoff))
        pruned.groups = [
            str(e)
            for (e,) in conn.execute(
                "DELETE FROM groups WHERE app = %s AND last_occurrence < %s RETURNING error_id",
                (app, cutoff),
            )
        ]
        pruned.by_size = conn.execute(
            "DELETE FROM records WHERE app = %s AND seq <= (SELECT seq FROM records "
            "WHERE app = %s ORDER BY seq DESC OFFSET %s LIMIT 1)",
            (app, app, max_records),
        ).rowcount
    return pruned


def load_into(conn: Any, store: ErrorStore, app: str | None, since: float | None = None) -> int:
    """The app's most recently seen groups and newest records (the store's bounds) into
    ``store`` (``app`` None: every app's, for an offline reader); returns the records."""
    from exporter.store.codec import record_from_json

    where, args = "WHERE true", list[object]()
    if app is not None:
        where, args = where + " AND app = %s", [app]
    group_where, group_args = where, list(args)
    if since is not None:
        group_where, group_args = where + " AND last_occurrence >= %s", [*args, since]
    with conn.transaction():
        found = conn.execute(
            f"SELECT {', '.join(GROUP_COLUMNS)} FROM groups {group_where} "
            "ORDER BY last_occurrence DESC, error_id LIMIT %s",
            (*group_args, min(store.max_groups, 2**62)),
        ).fetchall()
        record_where = where if since is None else where + " AND ts >= %s"
        record_rows = conn.execute(
            f"SELECT seq, data FROM records {record_where} ORDER BY seq DESC LIMIT %s",
            (*args, *([] if since is None else [since]), min(store.max_records, 2**62)),
        ).fetchall()
    loaded = [rows.group_from_row(row) for row in reversed(found)]
    count = 0
    with store.lock:
        for group in loaded:
            store.groups[group.report.error_id] = group
        for seq, data in reversed(record_rows):
            record = record_from_json(data)
            owner = store.groups.get(record.error_id)
            if owner is not None:
                owner.records.append((int(seq), record))
                count += 1
        store.record_count += count
    return count


def resolve(
    conn: Any, app: str, error_id: str, when: float, version: str | None
) -> dict[str, Any] | None:
    """Resolve a group in the database itself (the CLI, or an API call for a group this
    process has not seen); its summary row, or None when there is no such group."""
    with conn.transaction():
        conn.execute(_RESOLVE, (version, when, app, error_id))
        cur = conn.execute(
            f"SELECT {', '.join(GROUP_COLUMNS)} FROM groups WHERE app = %s AND error_id = %s",
            (app, error_id),
        )
        row = cur.fetchone()
    return None if row is None else rows.group_from_row(row).summary()


def states_of(conn: Any, app: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    with conn.transaction():
        return read_states(conn, app, sorted(ids))


# -- the fleet read (exporter.store.durable.fleet_reader): every instance's groups of one app ----
def fleet_groups(conn: Any, app: str, limit: int) -> list[ErrorGroup]:
    """The app's groups, most recently seen first (at most ``limit``)."""
    with conn.transaction():
        found = conn.execute(
            f"SELECT {', '.join(GROUP_COLUMNS)} FROM groups WHERE app = %s "
            "ORDER BY last_occurrence DESC, error_id LIMIT %s",
            (app, min(limit, 2**62)),
        ).fetchall()
    return [rows.group_from_row(row) for row in found]


def fleet_group(conn: Any, app: str, error_id: str) -> ErrorGroup | None:
    with conn.transaction():
        row = conn.execute(
            f"SELECT {', '.join(GROUP_COLUMNS)} FROM groups WHERE app = %s AND error_id = %s",
            (app, error_id),
        ).fetchone()
    return None if row is None else rows.group_from_row(row)


def fleet_instances(
    conn: Any, app: str, error_id: str | None = None
) -> dict[str, list[tuple[str, int, float]]]:
    """(instance, occurrence count, last seen) of each group (``error_id``: of that one),
    the busiest instance first."""
    where, args = "WHERE app = %s", [app]
    if error_id is not None:
        where, args = where + " AND error_id = %s", [app, error_id]
    out: dict[str, list[tuple[str, int, float]]] = {}
    with conn.transaction():
        for e, instance, count, last in conn.execute(
            "SELECT error_id, instance, occurrence_count, last_seen FROM group_instances "
            f"{where} ORDER BY error_id, occurrence_count DESC, instance",
            args,
        ):
            out.setdefault(str(e), []).append((str(instance), int(count), float(last)))
    return out


def fleet_records(
    conn: Any,
    app: str,
    after: int = 0,
    count: int = 500,
    error_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    newest: bool = False,
) -> list[tuple[int, str]]:
    """(seq, data) of the app's records after ``after`` in the fleet's order (``newest``:
    the latest ``count``, newest first); ``error_id``, ``since``, ``until`` narrow them."""
    where, args = "WHERE app = %s AND seq > %s", [app, after]
    if error_id is not None:
        where, args = where + " AND error_id = %s", [*args, error_id]
    if since is not None:
        where, args = where + " AND ts >= %s", [*args, since]
    if until is not None:
        where, args = where + " AND ts <= %s", [*args, until]
    order = "DESC" if newest else "ASC"
    with conn.transaction():
        return [
            (int(seq), str(data))
            for seq, data in conn.execute(
                f"SELECT seq, data FROM records {where} ORDER BY seq {order} LIMIT %s",
                [*args, count],
            )
        ]


__all__ = [
    "PostgresDatabase",
    "Pruned",
    "StoreUnavailable",
    "Written",
    "apply_states",
    "connect",
    "ensure_schema",
    "load_into",
    "prune",
    "resolve",
    "write",
]


class PostgresDatabase:
    """The shared store's database as :class:`~.postgres_store.MultiWriterBackend` uses it: every
    call takes the connection it opened (``connect``) and is one transaction."""

    def __init__(self, url: str, max_users: int = 1000) -> None:
        from exporter.store.dsn import redact

        self.url = url
        self.where = redact(url)  # what log lines and errors name
        self.states = batch.StateMerge(max_users)

    def connect(self) -> Any:
        return connect(self.url)

    def ensure_schema(
        self, conn: Any, app: str, on_migrate: Callable[[int, int], None] | None = None
    ) -> None:
        ensure_schema(conn, self.where, app, on_migrate)

    def load_into(self, conn: Any, store: ErrorStore, app: str, since: float) -> int:
        loaded = load_into(conn, store, app, since)
        with store.lock:  # the coalesced counts loaded are the fleet's: none to add
            self.states.loaded(store.groups)
        return loaded

    def write(
        self,
        conn: Any,
        app: str,
        changes: Changes,
        groups: dict[str, ErrorGroup],
        instance: str = UNKNOWN_INSTANCE,
    ) -> Written:
        """The batch, tried again once at once when two writers deadlocked."""
        import psycopg

        try:
            return write(conn, app, changes, groups, instance, self.states)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            return write(conn, app, changes, groups, instance, self.states)

    def prune(self, conn: Any, app: str, cutoff: float, max_records: int) -> Pruned:
        return prune(conn, app, cutoff, max_records)

    def states_of(self, conn: Any, app: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return states_of(conn, app, ids)

    def resolve(
        self, conn: Any, app: str, error_id: str, when: float, version: str | None
    ) -> dict[str, Any] | None:
        return resolve(conn, app, error_id, when, version)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        return exc if isinstance(exc, StoreUnavailable) else unavailable(exc, self.url)

    def close(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.close()

    def forked(self) -> None:
        """A forked child adds its own share of each group (none written yet)."""
        self.states.forked()
