"""The shared store's database: connect, migrate once for everyone, write a batch, prune.

Every statement of the shared store is here; :mod:`.postgres` decides when they run.
A batch is one transaction, correct while any number of processes write the same groups:

1. new groups: ``INSERT … ON CONFLICT DO NOTHING RETURNING`` — the rows returned are the
   groups this process created, so "new in version X" is counted once for the whole fleet;
2. groups that existed: their occurrences *added* (``occurrence_count + n``), first / last
   seen widened, the latest report kept when it is the latest;
3. resolves done in this process: ``resolved_at`` set where it is not yet (the first wins);
4. regressions: ``UPDATE … WHERE resolved_at IS NOT NULL AND resolved_at < latest
   RETURNING`` — the row lock lets exactly one process see the row come back, so it is
   counted once;
5. the records (``seq`` is the database's: one order for the fleet);
6. the release state of every group written, read back: what other processes did
   (created first, resolved, regressed) reaches this one's in-memory store.

Rows are taken in ``error_id`` order in every statement, so two writers never wait on
each other in a cycle. Migrations run under ``pg_advisory_xact_lock``: one process
migrates, the others wait and find the work done; retention runs in the one process that
gets ``pg_try_advisory_xact_lock`` (the others skip it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..codec import dumps
from ..dsn import redact_text
from ..store import ErrorGroup, ErrorStore
from . import rows
from .schema import StoreError, StoreTooNew, _package_version
from .tables import (
    GROUP_COLUMNS,
    POSTGRESQL,
    RELEASE_COLUMNS,
    SCHEMA_VERSION,
    SESSIONS_ADD,
    steps,
)
from .tracking import Changes, TrackingStore

log = logging.getLogger("exporter.durable")
MIGRATION_LOCK = 0x6572726F  # pg_advisory_xact_lock key of the schema ("erro")
RETENTION_LOCK = 0x72657465  # with hashtext(app): the retention pass of one app
CONNECT_TIMEOUT_SECONDS = 3
ROWS_PER_STATEMENT = 500  # x 13 columns: well under PostgreSQL's 65,535 parameters
STATEMENT_TIMEOUT_MS = 10000  # a batch that waits longer is given back and retried
STATE_COLUMNS = (
    "error_id",
    "occurrence_count",
    "first_occurrence",
    "last_occurrence",
    *RELEASE_COLUMNS,
)


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
        _meta(conn, "written_by", f"error-exporter {_package_version()}")


def _meta(conn: Any, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
        "DO UPDATE SET value = EXCLUDED.value",
        (key, value),
    )


@dataclass
class Written:
    """What one batch did that only the database could tell."""

    created: list[tuple[str, str | None]] = field(default_factory=list)  # id, first version
    regressed: list[str] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # STATE_COLUMNS by id
    records: int = 0


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
    state = coalesce(v.state, g.state),
    last_seen_version = CASE WHEN v.last_occurrence >= g.last_occurrence
        THEN coalesce(v.last_seen_version, g.last_seen_version) ELSE g.last_seen_version END
FROM (VALUES {values}) AS v (error_id, added, first_occurrence, last_occurrence, report,
                             state, last_seen_version)
WHERE g.app = %s AND g.error_id = v.error_id
"""
_ADD_ROW = "(%s::text, %s::bigint, %s::float8, %s::float8, %s::text, %s::text, %s::text)"
_RESOLVE = """
UPDATE groups SET
    resolved_version = CASE WHEN resolved_at IS NULL THEN %s ELSE resolved_version END,
    resolved_at = coalesce(resolved_at, %s), regressed = 0, regressed_at = NULL
WHERE app = %s AND error_id = %s
"""
_REGRESS = """
UPDATE groups g SET resolved_at = NULL, regressed = 1, regressed_at = v.latest
FROM (VALUES {values}) AS v (error_id, latest)
WHERE g.app = %s AND g.error_id = v.error_id
    AND g.resolved_at IS NOT NULL AND g.resolved_at < v.latest
RETURNING g.error_id
"""
_STATES = f"SELECT {', '.join(STATE_COLUMNS)} FROM groups WHERE app = %s AND error_id = ANY(%s)"


def write(conn: Any, app: str, changes: Changes, groups: dict[str, ErrorGroup]) -> Written:
    """One batch, one transaction (see the module's docstring). ``groups``: the changed
    groups' in-memory state, read under the store's lock by the caller. Raises psycopg
    errors (nothing written then)."""
    done = Written()
    ids = sorted(set(changes.groups) | set(changes.counts) | set(changes.resolved))
    with conn.transaction():
        present = [e for e in ids if e in groups]
        group_rows = [_new_row(groups[e], app, changes.counts.get(e, 0)) for e in present]
        for chunk in _chunks(group_rows):
            cur = conn.execute(
                _INSERT.format(values=", ".join([_ROW] * len(chunk))),
                [value for row in chunk for value in row],
            )
            done.created += [(str(e), v) for e, v in cur.fetchall()]
        created = {e for e, _ in done.created}
        added = [_add_row(groups[e], changes.counts.get(e, 0)) for e in present if e not in created]
        # counts of groups no longer in memory (evicted before the write): still added
        added += [
            (e, n, None, None, None, None, None)
            for e, n in sorted(changes.counts.items())
            if e not in groups
        ]
        for chunk in _chunks(added):
            conn.execute(
                _ADD.format(values=", ".join([_ADD_ROW] * len(chunk))),
                [*[value for row in chunk for value in row], app],
            )
        for error_id in sorted(changes.resolved):
            when, version = changes.resolved[error_id]
            conn.execute(_RESOLVE, (version, when, app, error_id))
        latest = sorted((e, t) for e, t in changes.latest.items() if changes.counts.get(e))
        for chunk in _chunks(latest):
            cur = conn.execute(
                _REGRESS.format(values=", ".join(["(%s::text, %s::float8)"] * len(chunk))),
                [*[value for pair in chunk for value in pair], app],
            )
            done.regressed += [str(e) for (e,) in cur.fetchall()]
        if changes.records:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO records (app, ts, error_id, data) VALUES (%s, %s, %s, %s)",
                    [
                        (
                            app,
                            record.timestamp.timestamp(),
                            record.error_id,
                            dumps(record.to_dict()),
                        )
                        for _, record in changes.records
                    ],
                )
            done.records = len(changes.records)
        if changes.sessions:
            with conn.cursor() as cur:
                cur.executemany(SESSIONS_ADD.format(p="%s"),
                                [(app, s, n) for s, n in sorted(changes.sessions.items())])
        if ids:
            done.states = read_states(conn, app, ids)
    return done


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    """Statements of at most ROWS_PER_STATEMENT rows (a statement takes at most 65,535
    parameters; ``error_buffer_size`` may be larger than a statement holds)."""
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        yield items[start : start + ROWS_PER_STATEMENT]


def read_states(conn: Any, app: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Counts, times and release state of these groups as the fleet has them."""
    cur = conn.execute(_STATES, (app, list(ids)))
    return {str(row[0]): dict(zip(STATE_COLUMNS, row, strict=True)) for row in cur}


def _new_row(group: ErrorGroup, app: str, added: int) -> tuple[Any, ...]:
    """The row a group starts with (its occurrences: those of this batch; no resolve:
    a resolve is its own statement)."""
    row = list(rows.group_row(group, app))
    row[GROUP_COLUMNS.index("occurrence_count")] = max(added, 1)
    for name in ("resolved_at", "resolved_version", "regressed_at"):
        row[GROUP_COLUMNS.index(name)] = None
    row[GROUP_COLUMNS.index("regressed")] = 0
    return tuple(row)


def _add_row(group: ErrorGroup, added: int) -> tuple[Any, ...]:
    full = dict(zip(GROUP_COLUMNS, rows.group_row(group, ""), strict=True))
    return (
        full["error_id"],
        added,
        full["first_occurrence"],
        full["last_occurrence"],
        full["report"],
        full["state"],
        full["last_seen_version"],
    )


@dataclass
class Pruned:
    by_age: int = 0
    by_size: int = 0
    groups: list[str] = field(default_factory=list)
    skipped: bool = False  # another process holds the retention lock


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
    from ..codec import record_from_json

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


def apply_states(store: TrackingStore, states: dict[str, dict[str, Any]]) -> None:
    """The fleet's counts, times and release state onto the in-memory groups (plus what
    this process counted since the batch was taken; a resolve done here meanwhile stays
    as it is until its own write)."""
    with store.lock:
        pending = store.changes
        for error_id, state in states.items():
            group = store.groups.get(error_id)
            if group is None:
                continue
            report = group.report
            report.occurrence_count = int(state["occurrence_count"]) + pending.counts.get(
                error_id, 0
            )
            report.first_occurrence = min(report.first_occurrence, float(state["first_occurrence"]))
            report.last_occurrence = max(report.last_occurrence, float(state["last_occurrence"]))
            group.first_seen_version = state["first_seen_version"]
            if state["last_seen_version"] is not None:
                group.last_seen_version = state["last_seen_version"]
            if error_id in pending.resolved:
                continue
            group.resolved_at = state["resolved_at"]
            group.resolved_version = state["resolved_version"]
            group.regressed = bool(state["regressed"])
            group.regressed_at = state["regressed_at"]


def states_of(conn: Any, app: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    with conn.transaction():
        return read_states(conn, app, sorted(ids))


__all__ = [
    "Pruned",
    "StoreUnavailable",
    "Written",
    "connect",
    "ensure_schema",
    "load_into",
    "prune",
    "resolve",
    "write",
]
