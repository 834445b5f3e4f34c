"""One batch of a store that many processes write: the same steps on every database.

The shared PostgreSQL (``store_url``) and the multiprocess directory's SQLite file are
written by many processes at once; each tick's batch is one transaction, and what is new,
what regressed and what the other writers did is decided by the database, never by one
process's memory. The steps are written once here; a :class:`Statements` (one per
dialect: :mod:`.postgres_database`, :mod:`.sqlite_shared`) says how each is spelled:

1. new groups: inserted unless present; the ids inserted are the groups this process
   created, so "new in version X" is counted once for everyone;
2. groups that existed: their occurrences *added*, first / last seen widened, the
   latest report kept when it is the latest, the group's own state merged;
3. resolves done in this process: ``resolved_at`` set where it is not yet (the first wins);
4. regressions: the conditional update (``resolved_at < latest``) that exactly one
   writer sees succeed, so a regression is counted once;
5. the records (``seq`` is the database's: one order for every writer; each names the
   instance that wrote it), each group's occurrences per instance, the sessions;
6. the release state of every group written, read back: what the others did (created
   first, resolved, regressed) reaches this process's in-memory store.

Groups are taken in ``error_id`` order in every step, so two writers never wait on each
other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.model import json_text
from exporter.store.durable import rows
from exporter.store.durable.tables import GROUP_COLUMNS, RELEASE_COLUMNS, UNKNOWN_INSTANCE
from exporter.store.durable.tracking import Changes, TrackingStore
from exporter.store.memory import ErrorGroup

STATE_COLUMNS = (
    "error_id",
    "occurrence_count",
    "first_occurrence",
    "last_occurrence",
    *RELEASE_COLUMNS,
)
# (error_id, added, first_occurrence, last_occurrence, report, state, last_seen_version);
# all but the first two None for a group that left memory before its counts were written
AddRow = tuple[Any, ...]


@dataclass
class Written:
    """What one batch did that only the database could tell."""

    created: list[tuple[str, str | None]] = field(default_factory=list)  # id, first version
    regressed: list[str] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # STATE_COLUMNS by id
    records: int = 0


class Statements(Protocol):
    """How one dialect spells each step (the caller holds the batch's transaction)."""

    def insert_new(self, conn: Any, rows: list[tuple[Any, ...]]) -> list[tuple[str, str | None]]:
        """Insert the rows (GROUP_COLUMNS) not present; (error_id, first version) of those
        inserted."""
        ...

    def add(self, conn: Any, app: str, rows: list[AddRow]) -> None: ...

    def resolve(
        self, conn: Any, app: str, error_id: str, when: float, version: str | None
    ) -> None: ...

    def regress(self, conn: Any, app: str, latest: list[tuple[str, float]]) -> list[str]:
        """Regress the resolved groups seen after their resolve; the ids regressed."""
        ...

    def append_records(self, conn: Any, rows: list[tuple[str, float, str, str, str]]) -> None:
        """(app, ts, error_id, data, instance) rows; ``seq`` given by the database."""
        ...

    def add_instances(self, conn: Any, rows: list[tuple[str, str, str, int, float]]) -> None:
        """(app, error_id, instance, occurrences, last seen) added to ``group_instances``."""
        ...

    def add_sessions(self, conn: Any, rows: list[tuple[str, str, int]]) -> None: ...

    def read_states(self, conn: Any, app: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


def write(
    conn: Any,
    statements: Statements,
    app: str,
    changes: Changes,
    groups: dict[str, ErrorGroup],
    instance: str = UNKNOWN_INSTANCE,
) -> Written:
    """The steps of one batch (see the module's docstring), inside the caller's
    transaction. ``groups``: the changed groups' in-memory state, copied under the store's
    lock by the caller; ``instance``: the writer (:func:`.rows.instance_name`)."""
    done = Written()
    ids = sorted(set(changes.groups) | set(changes.counts) | set(changes.resolved))
    present = [e for e in ids if e in groups]
    done.created = statements.insert_new(
        conn, [new_row(groups[e], app, changes.counts.get(e, 0)) for e in present]
    )
    created = {e for e, _ in done.created}
    added = [add_row(groups[e], changes.counts.get(e, 0)) for e in present if e not in created]
    # counts of groups no longer in memory (evicted before the write): still added
    added += [
        (e, n, None, None, None, None, None)
        for e, n in sorted(changes.counts.items())
        if e not in groups
    ]
    statements.add(conn, app, added)
    for error_id in sorted(changes.resolved):
        when, version = changes.resolved[error_id]
        statements.resolve(conn, app, error_id, when, version)
    latest = sorted((e, t) for e, t in changes.latest.items() if changes.counts.get(e))
    done.regressed = statements.regress(conn, app, latest)
    if changes.records:
        statements.append_records(
            conn,
            [
                (
                    app,
                    record.timestamp.timestamp(),
                    record.error_id,
                    json_text(record.to_dict(), ascii_only=False),
                    instance,
                )
                for _, record in changes.records
            ],
        )
        done.records = len(changes.records)
    counted = [
        (app, e, instance, n, changes.latest.get(e, 0.0))
        for e, n in sorted(changes.counts.items())
        if n
    ]
    if counted:
        statements.add_instances(conn, counted)
    if changes.sessions:
        statements.add_sessions(conn, [(app, s, n) for s, n in sorted(changes.sessions.items())])
    if ids:
        done.states = statements.read_states(conn, app, ids)
    return done


def new_row(group: ErrorGroup, app: str, added: int) -> tuple[Any, ...]:
    """The row a group starts with (its occurrences: those of this batch; no resolve:
    a resolve is its own statement)."""
    row = list(rows.group_row(group, app))
    row[GROUP_COLUMNS.index("occurrence_count")] = max(added, 1)
    for name in ("resolved_at", "resolved_version", "regressed_at"):
        row[GROUP_COLUMNS.index(name)] = None
    row[GROUP_COLUMNS.index("regressed")] = 0
    return tuple(row)


def add_row(group: ErrorGroup, added: int) -> AddRow:
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


def state_row(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(STATE_COLUMNS, row, strict=True))


def apply_states(store: TrackingStore, states: dict[str, dict[str, Any]]) -> None:
    """The shared counts, times and release state onto the in-memory groups (plus what
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


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
