"""One batch of a store that many processes write: the same steps on every database.

The shared PostgreSQL (``store_url``) and the multiprocess directory's SQLite file are
written by many processes at once; each tick's batch is one transaction, and what is new,
what regressed and what the other writers did is decided by the database, never by one
process's memory. The steps are written once here; a :class:`Statements` (one per
dialect: :mod:`.postgres_database`, :mod:`.sqlite_shared`) says how each is spelled:

1. new groups: inserted unless present; the ids inserted are the groups this process
   created, so "new in version X" is counted once for everyone;
2. groups that existed: their occurrences *added*, first / last seen widened, the
   latest report kept when it is the latest, the group's own state merged into the stored
   one (:class:`StateMerge`: never the last writer's alone);
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

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.model import SEVERITY_RANK, json_text
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

    def add(self, conn: Any, app: str, rows: list[AddRow]) -> None:
        """Add the rows (in ``error_id`` order) to the groups present, each group's state
        merged into the stored one (:class:`StateMerge`) under the row's lock."""
        ...

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


def merge_state(old: str, new: str, max_users: int, coalesced_added: int) -> str:
    """The group's state as the store has it: ``new`` (this process's) merged into ``old``
    (what every process wrote so far): users united (at most ``max_users``), each
    component's, plugin's and recovery's count the larger of the two, the highest
    severity, and ``coalesced_added`` (this process's part not written yet) added."""
    before: dict[str, Any] = json.loads(old)
    mine: dict[str, Any] = json.loads(new)
    users = list(before.get("users") or ())
    known = set(users)
    for user in mine.get("users") or ():
        if len(users) >= max_users:
            break
        if user not in known:
            known.add(user)
            users.append(user)
    merged = dict(before)
    merged["users"] = sorted(users)
    for key in ("components", "plugins", "recoveries"):
        combined = dict(before.get(key) or {})
        for name, count in (mine.get(key) or {}).items():
            combined[name] = max(int(combined.get(name, 0)), int(count))
        merged[key] = combined
    severities = [s for s in (before.get("max_severity"), mine.get("max_severity")) if s]
    if severities:
        merged["max_severity"] = max(severities, key=lambda s: SEVERITY_RANK.get(s, 0))
    merged["coalesced"] = int(before.get("coalesced") or 0) + coalesced_added
    return json.dumps(merged, sort_keys=True, separators=(",", ":"))


def coalesced_of(state: str) -> int:
    return int(json.loads(state).get("coalesced") or 0)


class StateMerge:
    """One writer's merge of its groups' state into a store that many processes write.

    Each process holds only its share of a group (the users it saw, the occurrences it
    coalesced), so writing it as it is would leave the last writer's share alone: the
    stored state is merged with it instead (:func:`merge_state`). Users, counts per name
    and the highest severity merge by themselves; the coalesced count is a sum, so only
    what this process has not written yet is added: ``written`` is, per group, the part
    of its in-memory count the store has (what was loaded at start is everyone's: all
    written), ``pending`` the same once the batch on its way commits.
    """

    def __init__(self, max_users: int = 1000) -> None:
        self.max_users = max_users
        self.written: dict[str, int] = {}
        self.pending: dict[str, int] = {}

    def begin(self) -> None:
        """A batch (or its retry) starts: nothing of it is written yet."""
        self.pending = {}

    def created(self, error_id: str, state: str) -> None:
        """This batch inserted the group with its state: all of its coalesced count."""
        self.pending[error_id] = coalesced_of(state)

    def merged(self, error_id: str, stored: str, mine: str) -> str:
        """The state to write over ``stored`` (the caller holds the row's lock)."""
        count = coalesced_of(mine)
        written = self.written.get(error_id, 0)
        self.pending[error_id] = max(count, written)
        return merge_state(stored, mine, self.max_users, max(count - written, 0))

    def committed(self, removed: Iterable[str]) -> None:
        """The batch committed; ``removed``: groups that left memory (a group that comes
        back starts its count from zero)."""
        self.written.update(self.pending)
        self.pending = {}
        for error_id in removed:
            self.written.pop(error_id, None)

    def loaded(self, groups: Mapping[str, ErrorGroup]) -> None:
        """The groups loaded from the store (the caller holds the store's lock)."""
        for error_id, group in groups.items():
            self.written[error_id] = group.coalesced

    def forked(self) -> None:
        """A forked child starts an empty store: none of its share written yet."""
        self.written = {}
        self.pending = {}


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
        (e, n, None, None, None, None, None) for e, n in changes.counts.items() if e not in groups
    ]
    statements.add(conn, app, sorted(added, key=lambda row: str(row[0])))
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
