"""Several worker processes, one picture: prometheus_client multiprocess mode + a shared store.

Multiprocess mode is on when ``PROMETHEUS_MULTIPROC_DIR`` names a directory *before*
prometheus_client is first imported (that import decides how every metric stores its value).
Then each monitor created in the process:

- counts into prometheus_client's per-process mmap files (counters and histograms add up in
  one scrape through ``MultiProcessCollector``);
- publishes its scrape-time gauges once a second with the right multiprocess mode
  (see :mod:`exporter.multiprocess.publisher`);
- writes its groups and records to one SQLite file in the directory, on the durable
  schema and with the shared store's semantics (:mod:`exporter.store.durable.sqlite_shared`:
  "new" and "regressed" decided by the file, counted once for the directory; resolves
  seen by every worker), so the JSON API of any worker, or ``error-exporter serve
  --multiproc-dir DIR``, shows every worker's errors grouped across workers; with a
  ``postgresql://`` ``store_url`` they go to the fleet's database instead, and the JSON
  API shows the fleet's groups (:mod:`exporter.multiprocess.postgres_mode`);
- serves ``monitor.registry`` = the merged view of the directory, and answers its read API
  (``export_data``, ``list_groups``, ``get_group``, ...) from the shared state.

The directory must be emptied before the workers start (:func:`prepare_dir`, e.g. in
gunicorn's ``on_starting``) and each dead worker reported (:func:`mark_process_dead`, in
``child_exit``); ``examples/gunicorn_conf.py`` does both.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from exporter.config import MULTIPROC_ENV_VAR as ENV_VAR
from exporter.config import MonitorConfig, multiproc_dir
from exporter.metrics.collectors import Published
from exporter.multiprocess.sqlite_store import DB_NAME, FORK_GUARD, SharedStore
from exporter.multiprocess.view import FleetCollector, SharedView, fleet_registry
from exporter.store.dsn import is_postgres
from exporter.store.durable.postgres_store import (
    CountDrop,
    FleetHooks,
    MultiWriterBackend,
    SharedDatabase,
)
from exporter.store.durable.sqlite_schema import StoreTooNew
from exporter.store.durable.sqlite_shared import SqliteSharedDatabase
from exporter.store.durable.tables import SCHEMA_VERSION
from exporter.store.durable.tracking import SessionLedger, TrackingStore
from exporter.store.memory import ErrorStore

log = logging.getLogger("exporter.multiprocess")
REPORTS_IN_POSTGRESQL = "postgresql"  # meta "reports": the workers write a store_url
_warned = False

__all__ = [
    "DB_NAME",
    "ENV_VAR",
    "FleetCollector",
    "MultiprocessBackend",
    "SharedStore",
    "SharedView",
    "backend_if_enabled",
    "enabled",
    "fleet_registry",
    "mark_process_dead",
    "multiproc_dir",
    "prepare_dir",
]


def enabled() -> bool:
    """True when prometheus_client itself runs in multiprocess mode in this process."""
    from prometheus_client import values

    return multiproc_dir() is not None and bool(getattr(values.ValueClass, "_multiprocess", False))


def backend_if_enabled(config: MonitorConfig) -> MultiprocessBackend | None:
    """The multiprocess backend a new monitor uses, when that mode is on (else None)."""
    global _warned
    path = multiproc_dir()
    if path is None:
        return None
    if not enabled():
        if not _warned:
            _warned = True
            log.warning(
                "%s is set but prometheus_client was imported before it was, so its "
                "metrics are per process; set it in the environment of the server "
                "(before Python starts). The monitor stays in single-process mode.",
                ENV_VAR,
            )
        return None
    try:
        return MultiprocessBackend(config, path)
    except (StoreTooNew, sqlite3.Error) as exc:
        # the directory's file cannot be shared (written by a newer release, or not a
        # database): this worker runs on its own memory, as in single-process mode
        log.warning(
            "error-exporter: %s: %s; running with a memory-only store", Path(path) / DB_NAME, exc
        )
        return None


class MultiprocessBackend:
    """Multiprocess mode over ``path``: the directory's file written like a shared store,
    the merged metrics directory as the registry, and the fleet view answering reads.

    Chosen by the monitor at construction: it attaches its store with :meth:`attach`
    and binds the view to itself with :meth:`bind` (the monitor changes itself; nothing
    here patches it).
    """

    def __init__(self, config: MonitorConfig, path: str | Path) -> None:
        cfg = self.config = config
        if cfg.serve:
            log.warning(
                "error-exporter: serve=True in multiprocess mode: every worker will "
                "try to bind %s:%s; mount exporter.wsgi_app(monitor) in the app or run "
                "`error-exporter serve --multiproc-dir %s` instead",
                cfg.host,
                cfg.port,
                path,
            )
        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = path
        # groups and records in the fleet's PostgreSQL, metrics in the directory
        self.fleet = is_postgres(cfg.store_url)
        self.shared = SharedStore(path, cfg.store_app)
        self.shared.set_meta("namespace", cfg.namespace)
        self.shared.set_meta("app", cfg.store_app)
        # where the reports go, for a sidecar started without the same store_url (never the
        # URL itself: it holds the password). prepare_dir keeps it: with --preload the app's
        # monitor is made before gunicorn's on_starting prepares the directory.
        self.shared.set_meta("reports", REPORTS_IN_POSTGRESQL if self.fleet else DB_NAME)

    def attach(
        self,
        store: ErrorStore,
        count_drop: CountDrop,
        note_internal_error: Callable[[BaseException], None],
        hooks: FleetHooks,
        ledger: SessionLedger | None = None,
    ) -> tuple[MultiWriterBackend, TrackingStore] | None:
        """The writer of this process's changes to the directory's file (PostgreSQL's
        semantics: :mod:`exporter.store.durable.sqlite_shared`), or to the fleet's
        PostgreSQL when ``store_url`` names one (:mod:`.postgres_mode`), and the store to
        use instead of ``store``; None when the schema is newer than this release."""
        database: SharedDatabase
        make_store: Callable[[ErrorStore], TrackingStore]
        shared = self.shared
        if self.fleet:
            from exporter.store.durable.postgres_database import PostgresDatabase

            database = PostgresDatabase(str(self.config.store_url), self.config.max_users_per_group)
            make_store = TrackingStore  # its own records: the fleet reader reads the database
            # the readers of this host wait on the directory's count of what was stored
            hooks = FleetHooks(hooks.new_group, hooks.regressed, stored=shared.add_processed)
        else:
            from exporter.multiprocess.worker_store import DirectoryStore

            database = SqliteSharedDatabase(
                str(Path(self.path) / DB_NAME),
                lambda: FORK_GUARD,
                self.config.max_users_per_group,
                self.config.error_buffer_size,
            )
            make_store = lambda base: DirectoryStore(base, shared)  # noqa: E731
        backend = MultiWriterBackend(
            self.config,
            count_drop,
            note_internal_error,
            hooks,
            ledger,
            database,
            make_store,
        )
        tracking = backend.start(store)
        return None if tracking is None else (backend, tracking)

    def bind(self, monitor: Published, count_uncounted: Callable[[], None]) -> SharedView:
        """The view of every worker's reports and metrics, publishing this one's state."""
        from exporter.multiprocess.publisher import Publisher

        view: SharedView
        if self.fleet:
            from exporter.multiprocess.postgres_mode import PostgresSharedView

            view = PostgresSharedView(self.path, self.config, self.shared, local=monitor)
        else:
            view = SharedView(self.path, self.config, self.shared, local=monitor)
        view.publisher = Publisher(monitor, self.shared)
        view.registry.before_collect.append(count_uncounted)
        return view


def prepare_dir(path: str | Path) -> Path:
    """Create ``path`` (0700) and make it ready for a new run of the server.

    Call it once before the workers start: stale mmap files would add an old run's counts,
    so they are removed. The store file is kept — it is the host's history of groups
    (what is new in a version, what was resolved: ``release_scope="host"``), bounded by
    ``store_retention_seconds`` and ``store_max_records`` — and only what belonged to the
    last run is reset in it (the live workers, what they had stored, when the run
    started). A file that is not a usable store (damaged, or of the layout before the
    directory used the durable schema) is removed; one written by a newer release is left
    alone (the workers warn and run on memory).
    """
    directory = Path(path)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in glob.glob(os.path.join(directory, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
    store = directory / DB_NAME
    if store.exists() and not _new_run(store):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(str(store) + suffix)
    return directory


def _new_run(store: Path) -> bool:
    """Reset the last run's state in the store file; False when it is no usable store."""
    try:
        conn = sqlite3.connect(str(store), isolation_level=None, timeout=10.0)
    except sqlite3.Error:
        return False
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            return True  # a newer release's: untouched
        if version == 0:
            return False  # not the durable schema: nothing worth keeping
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        conn.execute("BEGIN IMMEDIATE")
        if "workers" in tables:
            conn.execute("DELETE FROM workers")
        conn.execute("DELETE FROM meta WHERE key IN ('processed', 'started')")
        conn.execute("COMMIT")
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def mark_process_dead(pid: int, path: str | Path | None = None) -> None:
    """A worker exited: drop its live gauges and its published state (counters stay)."""
    from prometheus_client import multiprocess

    directory = str(path) if path is not None else multiproc_dir()
    if directory is None:
        return
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    try:
        SharedStore(directory).forget_worker(pid)
    except Exception as exc:  # the hook runs in the server's master: never break it
        log.warning("error-exporter: could not forget worker %s in %s: %r", pid, directory, exc)
