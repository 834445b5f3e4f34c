"""Multiprocess mode with a ``postgresql://`` ``store_url``: gunicorn workers on several
hosts, one PostgreSQL.

The two halves of multiprocess mode part ways:

- the metrics stay in the directory, as without a store: prometheus_client's mmap files
  merged at scrape time, the gauges each worker publishes, and one state row per live
  worker in the directory's file (patterns, sessions, plugin health, queue depth);
- the groups and records go to the fleet's database, each worker writing them as a
  single process with ``store_url`` does (:class:`~exporter.store.durable.postgres_store.
  MultiWriterBackend`): "new" and "regressed" decided by the database, once for every
  worker of every host.

So the read API answers as a single process with ``store_url`` does: a
:class:`~exporter.store.durable.fleet_reader.FleetReader` over the database, whose base
(what only live processes know) is this directory's view. The directory's file keeps
``meta.processed``, advanced after each write to the database, so a read still waits for
the reports any worker of this host has counted to be stored before it reads the fleet.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from exporter.config import MonitorConfig
from exporter.metrics.collectors import Published
from exporter.model import ErrorRecord
from exporter.multiprocess.sqlite_store import LATEST_RECORDS, SharedStore
from exporter.multiprocess.view import SETTLE_TIMEOUT, SharedView
from exporter.store.codec import record_from_json
from exporter.store.durable.fleet_reader import READ_ONLY, FleetReader
from exporter.store.durable.postgres_database import StoreUnavailable
from exporter.store.memory import ErrorStore
from exporter.store.read_protocol import ErrorReader, NotSupported

# the exemplars' incremental read (PostgresGroups): how many record numbers below the
# highest seen are read again, and how often everything is read afresh
LATE_COMMITS = 200
FULL_READ_SECONDS = 600.0


def group_count(conn: Any, app: str) -> int:
    """The app's groups in the database (``app_unique_errors``)."""
    with conn.transaction():
        row = conn.execute("SELECT count(*) FROM groups WHERE app = %s", (app,)).fetchone()
    return int(row[0])


Series = tuple[str, str, str, str]  # error_type, component, plugin, severity
Latest = tuple[int, str, float, str | None]  # seq, error_id, ts, trace_id of a series' latest


def latest_ids(
    conn: Any, app: str, after: int = 0, among: int = LATEST_RECORDS
) -> dict[Series, Latest]:
    """Each series' latest record (``seq``, error id, time, trace id or None) among the
    latest ``among`` records numbered above ``after``: the exemplars of
    ``app_errors_total``, as :meth:`SharedStore.latest_ids` gives them from the file."""
    with conn.transaction():
        found = conn.execute(
            "SELECT DISTINCT ON (error_type, component, plugin, severity) "
            "error_type, component, plugin, severity, seq, error_id, ts, trace_id FROM ("
            "SELECT seq, ts, error_id, coalesce(d->>'error_type', '') AS error_type, "
            "coalesce(d->>'component', '') AS component, "
            "coalesce(d->>'plugin_id', '') AS plugin, "
            "coalesce(d->>'severity', '') AS severity, d->>'trace_id' AS trace_id FROM ("
            "SELECT seq, ts, error_id, data::jsonb AS d FROM records "
            "WHERE app = %s AND seq > %s ORDER BY seq DESC LIMIT %s) AS latest) AS labelled "
            "ORDER BY error_type, component, plugin, severity, seq DESC",
            (app, after, among),
        ).fetchall()
    return {(r[0], r[1], r[2], r[3]): (int(r[4]), str(r[5]), float(r[6]), r[7]) for r in found}


def last_plugin_record(conn: Any, app: str, plugin: str) -> str | None:
    """The data of the app's latest record of ``plugin`` (plugin health's ``last_error``)."""
    with conn.transaction():
        row = conn.execute(
            "SELECT data FROM records WHERE app = %s AND data::jsonb->>'plugin_id' = %s "
            "ORDER BY seq DESC LIMIT 1",
            (app, plugin),
        ).fetchone()
    return None if row is None else str(row[0])


class PostgresGroups:
    """What /metrics says of the groups (:class:`~exporter.multiprocess.view.GroupSource`),
    from the fleet's database through the view's reader (its one connection).

    The exemplars are read incrementally: a scrape reads only the records numbered above
    what the last one saw (less :data:`LATE_COMMITS`, for a batch that took its numbers
    before a later one but committed after it), instead of the latest 5,000 every time
    (33 ms for 5,000 records, against 1.6 ms). A full read every
    :data:`FULL_READ_SECONDS` forgets the series whose records retention removed.
    """

    def __init__(self, reader: FleetReader) -> None:
        self.reader = reader
        self._lock = threading.Lock()  # scrapes may overlap
        self._latest: dict[Series, Latest] = {}
        self._full_read_at = 0.0

    def group_count(self) -> int:
        return int(self.reader.query(group_count))

    def latest_ids(self) -> dict[Series, tuple[str, float, str | None]]:
        with self._lock:
            now = time.monotonic()
            full = now >= self._full_read_at
            latest = {} if full else self._latest
            highest = max((entry[0] for entry in latest.values()), default=0)
            found: dict[Series, Latest] = self.reader.query(
                latest_ids, max(highest - LATE_COMMITS, 0)
            )
            for series, entry in found.items():
                known = latest.get(series)
                if known is None or entry[0] >= known[0]:
                    latest[series] = entry
            self._latest = latest
            if full:
                self._full_read_at = now + FULL_READ_SECONDS
            return {series: entry[1:] for series, entry in latest.items()}


class PostgresSharedView(SharedView):
    """The directory's view when the groups are in the fleet's database.

    It keeps what the directory knows (merged counters, the live workers' state, the
    settling) and is the base of :attr:`reader`, the fleet reader that answers the read
    API. Its ``store`` is this worker's memory (what it has not written yet; what reads
    fall back on while the database is away); the sidecar has none.
    """

    def __init__(
        self,
        directory: str | Path,
        config: MonitorConfig,
        shared: SharedStore | None = None,
        local: Published | None = None,
    ) -> None:
        # the sidecar reads the app the workers recorded in the directory
        shared = shared or SharedStore(directory, config.store_app if local else None)
        self.fleet = FleetReader(str(config.store_url), shared.app, config, base=self)
        super().__init__(directory, config, shared, local, groups=PostgresGroups(self.fleet))
        self._no_memory = ErrorStore(1, 1)

    @property
    def store(self) -> ErrorStore:
        return self.local.store if self.local is not None else self._no_memory

    @property
    def reader(self) -> ErrorReader:
        return self.fleet

    def resolve_group(self, error_id: str) -> dict[str, Any] | None:
        """Resolved in this worker's memory when it holds the group (written before the
        answer), else in the database (``resolve_elsewhere``, the worker's writer); the
        sidecar only reads."""
        self.settle()
        local = self.local
        version = self.config.app_version
        if local is not None:
            group = local.store.resolve(error_id, version)
            if group is not None:
                with contextlib.suppress(Exception):
                    local.flush(timeout=SETTLE_TIMEOUT)
                with local.store.lock:
                    return group.summary()
        if self.resolve_elsewhere is None:
            raise NotSupported(READ_ONLY)
        return self.resolve_elsewhere(error_id, version)

    def clear_old_records(self, max_age_hours: float = 24) -> int:
        """This worker's memory only: the database keeps its retention for the fleet
        (``store_retention_seconds``), as with a single process."""
        if self.local is None:
            raise NotSupported(READ_ONLY)
        self.settle()
        return self.local.store.clear_older_than(time.time() - max_age_hours * 3600.0)

    def _last_record(self, plugin: str) -> ErrorRecord | None:
        with contextlib.suppress(StoreUnavailable):
            data = self.fleet.query(last_plugin_record, plugin)
            return None if data is None else record_from_json(data)
        return None
