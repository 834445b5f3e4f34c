"""The fleet's reports from the shared store: one answer, whichever instance is asked.

With a ``postgresql://`` ``store_url`` every instance of an app writes one database, but
each process's memory holds only the groups it saw itself (and those loaded at its
start). Asking one instance's ``/api/v1/errors`` would show that instance's share of the
fleet; :class:`FleetReader` answers the group reads from the database instead, so every
instance (and ``error-exporter serve --store URL``, with no app running) shows the same
groups: counts summed over the fleet, each group's ``instances`` (which instance counted
how many, and when it last saw it), first and last seen versions, resolved, regressed.

What only a live process knows (patterns, sessions, resource readings, plugin health,
the queue) still comes from that process: the ``base`` reader. A group this process has
counted but not yet written (the database away, or the write of this tick still to come)
is shown from memory, so a read never loses what the process holds. With no base (``serve
--store``), those parts are empty, as the offline ``--store`` reads have them.

Reads within :meth:`FleetReader.reading` load the groups once (the export is several
reads); every other read loads them afresh, so nothing is stale by more than one read.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from exporter.classify import per_hour
from exporter.config import MonitorConfig
from exporter.metrics.statistics import breakdown, statistics
from exporter.model import ErrorRecord, iso_time
from exporter.store.codec import record_from_json
from exporter.store.dsn import redact
from exporter.store.durable import postgres_database as db
from exporter.store.json_export import export_document
from exporter.store.memory import ErrorGroup, ErrorStore, ExportFilter
from exporter.store.read_protocol import ErrorReader, NotSupported

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

PAGE = 500  # records read per statement while an export pages through the fleet's
FLEET_GROUPS = 10000  # at least this many groups read (the fleet has more than one buffer)
RECENT = 20  # the summary's recent errors, as one instance's summary has
RETRY_SECONDS = 5.0  # a database that refused a connection is not asked again before
READ_ONLY = (
    "serve --store only reads the shared store: resolve with `error-exporter resolve "
    "--store URL ID` (or through an app instance's API)"
)


def instances_of(found: list[tuple[str, int, float]]) -> list[dict[str, Any]]:
    """A group's ``instances`` in the API: the busiest first."""
    return [
        {
            "instance": name,
            "occurrence_count": count,
            "last_seen": iso_time(last),
            "last_seen_epoch": last,
        }
        for name, count, last in found
    ]


class _Snapshot:
    """The app's groups as the database had them at one read (plus memory-only ones)."""

    def __init__(self, store: ErrorStore, instances: dict[str, list[tuple[str, int, float]]]):
        self.store = store
        self.instances = instances

    def summary(self, group: ErrorGroup) -> dict[str, Any]:
        out = group.summary()
        out["instances"] = instances_of(self.instances.get(group.report.error_id, []))
        return out


class FleetRecords:
    """The fleet's records as a :class:`~exporter.store.read_protocol.RecordSource` (the streamed
    export pages through the database in the fleet's order; ``seq`` is its cursor)."""

    def __init__(self, reader: FleetReader) -> None:
        self._reader = reader

    @property
    def groups(self) -> dict[str, ErrorGroup]:
        return dict(self._reader.snapshot().store.groups)

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        after = flt.cursor
        while True:
            try:
                page = self._reader.query(
                    db.fleet_records, after=after, count=PAGE, since=flt.since, until=flt.until
                )
            except db.StoreUnavailable:
                base = self._reader.base
                if base is None or after != flt.cursor:
                    raise  # no memory to fall back on, or half a fleet's pages already sent
                yield from base.store.iter_records(flt)  # the database away: this process's
                return
            for seq, data in page:
                after = seq
                record = record_from_json(data)
                if flt.matches(record):
                    yield seq, record
            if len(page) < PAGE:
                return

    def recent_records(self, count: int) -> list[ErrorRecord]:
        if count <= 0:
            return []
        try:
            found = self._reader.query(db.fleet_records, count=count, newest=True)
        except db.StoreUnavailable:
            if self._reader.base is None:
                raise
            return self._reader.base.store.recent_records(count)
        return [record_from_json(data) for _, data in reversed(found)]


class FleetReader:
    """An :class:`~exporter.store.read_protocol.ErrorReader` over the shared store of one app."""

    def __init__(
        self,
        url: str,
        app: str,
        config: MonitorConfig,
        base: ErrorReader | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.url = url
        self.where = redact(url)
        self.app = app
        self.config = config
        self.base = base
        self._registry = registry  # None: the base's (or an empty one), when first read
        self._conn: Any = None
        self._pid = os.getpid()
        self._retry_at = 0.0  # after a failed connect, reads use memory until then
        self._lock = threading.Lock()  # one connection, one statement at a time
        self._local = threading.local()  # the snapshot of the read scope, per thread
        self._records = FleetRecords(self)
        self._empty = ErrorStore(1, 1)  # plugin health with no live process: none seen
        self.started = time.time()

    # -- the database ------------------------------------------------------------------------
    def query(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        """``statement(conn, app, ...)`` on the reader's connection (opened, and opened
        again after a failure, here). Raises :class:`~.postgres_database.StoreUnavailable`."""
        if os.getpid() != self._pid:  # a forked child: the parent's socket is not its own
            self._pid, self._conn, self._lock = os.getpid(), None, threading.Lock()
        with self._lock:
            if self._conn is None and time.monotonic() < self._retry_at:
                raise db.StoreUnavailable(f"{self.where}: unreachable a moment ago")
            for attempt in (1, 2):
                if self._conn is None:
                    try:
                        self._conn = db.connect(self.url, read_only=True)
                    except db.StoreUnavailable:
                        # reads do not wait on a database that is away: memory answers
                        self._retry_at = time.monotonic() + RETRY_SECONDS
                        raise
                try:
                    return statement(self._conn, self.app, *args, **kwargs)
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                    self._conn = None
                    if attempt == 2:  # a dropped connection is tried once more, fresh
                        raise db.unavailable(exc, self.url) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def snapshot(self) -> _Snapshot:
        """The groups of the current read scope (loaded once in it), else loaded now."""
        held = getattr(self._local, "snapshot", None)
        return held if held is not None else self._load()

    def _load(self) -> _Snapshot:
        limit = max(self.config.error_buffer_size, FLEET_GROUPS)
        store = ErrorStore(limit, 1, self.config.occurrences_per_group)
        try:
            groups = self.query(db.fleet_groups, limit)
            instances = self.query(db.fleet_instances)
        except db.StoreUnavailable:
            if self.base is None:
                raise
            groups, instances = [], {}  # the database is away: this process's memory
        for group in reversed(groups):
            store.groups[group.report.error_id] = group
        if self.base is not None:  # counted here, not written yet: shown from memory
            local = self.base.store
            with local.lock if isinstance(local, ErrorStore) else contextlib.nullcontext():
                for error_id, group in dict(getattr(local, "groups", {})).items():
                    if error_id not in store.groups:
                        store.groups[error_id] = group
        return _Snapshot(store, instances)

    # -- ErrorReader ---------------------------------------------------------------------------
    @property
    def registry(self) -> CollectorRegistry:
        """The base's registry (the monitor's, made when first read), or an empty one."""
        registry = self._registry
        if registry is None:
            if self.base is not None:
                registry = self.base.registry
            else:
                from prometheus_client import CollectorRegistry

                registry = CollectorRegistry()
            self._registry = registry
        return registry

    @property
    def store(self) -> FleetRecords:
        return self._records

    @property
    def running(self) -> bool:
        return self.base.running if self.base is not None else True

    @property
    def queue_depth(self) -> int:
        return self.base.queue_depth if self.base is not None else 0

    def note_internal_error(self, exc: BaseException | None = None) -> None:
        if self.base is not None:
            self.base.note_internal_error(exc)

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        if getattr(self._local, "snapshot", None) is not None:
            yield
            return
        settle = self.base.reading() if self.base is not None else contextlib.nullcontext()
        with settle:  # this process's queued reports written before the fleet is read
            self._local.snapshot = self._load()
            try:
                yield
            finally:
                self._local.snapshot = None

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Several reads that should see the same moment: settle, load once, then read."""
        return self._scope()

    def _totals(self, snap: _Snapshot) -> list[tuple[dict[str, str], float]]:
        """Each group's count under its latest occurrence's labels (the fleet's counters
        are in each instance's /metrics; the store has the groups)."""
        out = []
        for group in list(snap.store.groups.values()):
            r = group.report
            labels = {
                "error_type": r.error_type,
                "component": r.component,
                "plugin": r.plugin or "",
                "severity": r.severity.value,
            }
            out.append((labels, float(r.occurrence_count)))
        return out

    def _recoveries(self, snap: _Snapshot) -> dict[str, float]:
        totals = {"success": 0.0, "failure": 0.0}
        for group in list(snap.store.groups.values()):
            for result, count in group.recoveries.items():
                totals[result] = totals.get(result, 0.0) + count
        return totals

    def _started(self, snap: _Snapshot) -> float:
        firsts = [g.report.first_occurrence for g in snap.store.groups.values()]
        return min(firsts) if firsts else self.started

    def get_statistics(self) -> dict[str, Any]:
        """The fleet's counts (from the groups), with what only this process knows
        (sessions, resources, drops, queue) from the live process."""
        with self.reading():
            snap = self.snapshot()
            local = self.base.get_statistics() if self.base is not None else None
        return statistics(
            self._totals(snap),
            self._recoveries(snap),
            self._started(snap),
            unique_errors=len(snap.store.groups),
            dropped_reports=local["dropped_reports"] if local else 0,
            queue_depth=self.queue_depth,
            sessions=local["sessions"] if local else _NO_SESSIONS,
            resources=local["resources"] if local else None,
        )

    def get_error_analysis(self, top: int = 10) -> dict[str, Any]:
        with self.reading():
            snap = self.snapshot()
            stats = self.get_statistics()
            local = self.base.get_error_analysis(top) if self.base is not None else None
        groups = snap.store.group_list("count", top)
        recoveries = self._recoveries(snap)
        return {
            "statistics": stats,
            "top_errors": [
                {
                    "error_id": g.report.error_id,
                    "occurrence_count": g.report.occurrence_count,
                    "report": {**g.report.to_dict(), **g.release_state()},
                    "instances": instances_of(snap.instances.get(g.report.error_id, [])),
                }
                for g in groups
            ],
            "total_unique_errors": len(snap.store.groups),
            "session_count": local["session_count"] if local else 0,
            "patterns": local["patterns"] if local else [],
            "sessions": local["sessions"] if local else _NO_SESSIONS,
            "recovery": {
                "success_rate": stats["recovery_success_rate"],
                "attempts": stats["recovery_attempts"],
                **{k: int(v) for k, v in recoveries.items()},
            },
        }

    def get_error_summary(self) -> dict[str, Any]:
        with self.reading():
            snap = self.snapshot()
            local = self.base.get_error_summary() if self.base is not None else None
            recent = self._records.recent_records(RECENT)
        total, by = breakdown(self._totals(snap))
        started = self._started(snap)
        return {
            "session_start": iso_time(started) or "",
            "total_errors": total,
            "error_rate_per_hour": round(per_hour(total, time.time() - started), 2),
            "error_counts_by_type": by["type"],
            "plugin_error_counts": local["plugin_error_counts"] if local else {},
            "active_patterns": local["active_patterns"] if local else {},
            "recent_errors": [r.to_dict() for r in recent],
        }

    def get_plugin_health(self, plugin_id: str) -> dict[str, Any]:
        if self.base is not None:
            return self.base.get_plugin_health(plugin_id)
        return self._empty.plugin_health(plugin_id)

    def get_patterns(self) -> list[dict[str, Any]]:
        return self.base.get_patterns() if self.base is not None else []

    def list_groups(
        self, sort: str = "count", limit: int | None = None, new_in: str | None = None
    ) -> list[dict[str, Any]]:
        """The fleet's group summaries, each with its ``instances``."""
        with self.reading():
            snap = self.snapshot()
            return [snap.summary(g) for g in snap.store.group_list(sort, limit, new_in)]

    def get_group(self, error_id: str) -> dict[str, Any] | None:
        """The group as the fleet has it: its latest report and occurrences from every
        instance (newest last), and its per-instance counts."""
        with self.reading():
            snap = self.snapshot()
            group = snap.store.groups.get(error_id)
            if group is None:
                return None
            try:
                rows = self.query(
                    db.fleet_records,
                    count=self.config.occurrences_per_group,
                    error_id=error_id,
                    newest=True,
                )
            except db.StoreUnavailable:
                if self.base is None:
                    raise
                return self.base.get_group(error_id)
        if not rows and self.base is not None:  # not written yet: this process's memory
            found = self.base.get_group(error_id)
            if found is not None:
                found["group"]["instances"] = snap.summary(group)["instances"]
            return found
        return {
            "group": snap.summary(group),
            "report": {**group.report.to_dict(), **group.release_state()},
            "occurrences": [record_from_json(data).to_dict() for _, data in reversed(rows)],
        }

    def resolve_group(self, error_id: str) -> dict[str, Any] | None:
        """Through the live process (which writes it to the store for the fleet)."""
        if self.base is None:
            raise NotSupported(READ_ONLY)
        found = self.base.resolve_group(error_id)
        if found is not None:
            with contextlib.suppress(db.StoreUnavailable):
                found["instances"] = instances_of(
                    self.query(db.fleet_instances, error_id).get(error_id, [])
                )
        return found

    def clear_old_records(self, max_age_hours: float = 24) -> int:
        """This process's memory only: the shared store keeps its retention
        (``store_retention_seconds``) for the fleet."""
        if self.base is None:
            raise NotSupported(READ_ONLY)
        return self.base.clear_old_records(max_age_hours)

    def export_data(self, flt: ExportFilter | None = None, **filters: Any) -> dict[str, Any]:
        """The export of the fleet: its records from the database, paged by its ``seq``."""
        flt = flt or ExportFilter(**filters)
        with self.reading():
            return export_document(self, self._records.iter_records(flt), flt.limit, flt.cursor)


_NO_SESSIONS: dict[str, Any] = {
    "active": 0,
    "ended": {},
    "total_ended": 0,
    "crash_free_ratio": 1.0,
    "users": 0,
}
