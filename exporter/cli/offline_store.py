"""``export --store``, ``analyze --store``, ``resolve --store``: a durable store without an app.

``--store`` is a file (``store_path``) or a ``store_url``: ``sqlite:///path`` (the same),
or ``postgresql://...`` (the shared store of every process of the app; read in a
read-only transaction, its password never printed).

The file is opened read-only (``mode=ro``; WAL lets it be read while a live process writes
it) and loaded into an ordinary in-memory store, which a monitor that is never started
reads: the document is built by the very code of the live export (``export_data``), so it
has the same shape. A file of an older schema version is read through an in-memory copy
migrated there (the file itself is never written); a newer one is refused.

What only a live process knows starts empty offline: patterns and plugin health. Sessions
are the ended ones every process of the app added to the store (a crashed one included).
The statistics are computed from the stored groups: each group's occurrence count under
its latest occurrence's labels, its recoveries under its component and plugin.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exporter.store.dsn import (
    is_postgres,
    psycopg_missing,
    redact,
    redact_text,
    scheme_of,
    sqlite_path,
)
from exporter.store.durable import rows, sqlite_schema
from exporter.store.durable.sqlite_file import load_into
from exporter.store.durable.tables import SCHEMA_VERSION
from exporter.store.memory import ErrorStore

NO_LIMIT = 2**62  # the offline store holds everything in the file


class StoreUnusable(Exception):
    """The store file is missing, damaged or newer than this error-exporter (exit 2)."""


@contextlib.contextmanager
def open_read_only(path: str) -> Iterator[sqlite3.Connection]:
    """The store at ``path`` for reading, at the current schema version."""
    if not Path(path).is_file():
        raise StoreUnusable(f"{path}: no such store file (is store_path right?)")
    try:
        conn = sqlite_schema.connect(path, read_only=True)
    except sqlite3.Error as exc:
        raise StoreUnusable(f"{path}: cannot open the store ({exc})") from None
    try:
        found = _version(conn, path)
        sqlite_schema.check_version(path, found, sqlite_schema.written_by(conn))
        if found < SCHEMA_VERSION:  # migrate a private copy; the file stays as it is
            copy = sqlite3.connect(":memory:", isolation_level=None)
            conn.backup(copy)
            conn.close()
            conn = copy
            sqlite_schema.migrate(conn, found)
        yield conn
    except sqlite_schema.StoreError as exc:
        raise StoreUnusable(str(exc)) from None
    except sqlite3.Error as exc:
        raise StoreUnusable(f"{path}: cannot read the store ({exc})") from None
    finally:
        conn.close()


def _version(conn: sqlite3.Connection, path: str) -> int:
    try:
        found = sqlite_schema.version_of(conn)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise StoreUnusable(f"{path}: not a readable error store ({exc})") from None
    if found == 0 or not {"groups", "records"} <= tables:
        raise StoreUnusable(f"{path}: not an error-exporter store (no groups and records tables)")
    return found


def file_of(store: str) -> str:
    """The file of a ``--store`` that is not a postgresql:// URL."""
    if "://" in store:
        if scheme_of(store) != "sqlite":
            raise StoreUnusable(
                f"{redact(store)}: not a store (a file, sqlite:///path or postgresql://...)"
            )
        return sqlite_path(store)
    return store


@contextlib.contextmanager
def open_database(url: str, read_only: bool = True) -> Iterator[Any]:
    """The shared store at ``url``, at the current schema version (never migrated here)."""
    from exporter.store.durable import postgres_database as db

    missing = psycopg_missing()
    if missing:
        raise StoreUnusable(missing)
    where = redact(url)
    try:
        conn = db.connect(url, read_only=read_only)
    except db.StoreUnavailable as exc:
        raise StoreUnusable(f"{where}: cannot connect ({exc})") from None
    try:
        with conn.transaction():
            found = db.version_of(conn)
        if found == 0:
            raise StoreUnusable(f"{where}: not an error-exporter store (no tables)")
        if found != SCHEMA_VERSION:
            newer = found > SCHEMA_VERSION
            raise StoreUnusable(
                f"{where}: store schema version {found} is "
                f"{'newer' if newer else 'older'} than this error-exporter's "
                f"({SCHEMA_VERSION}); "
                + ("upgrade error-exporter" if newer else "start the app once to migrate it")
            )
        yield conn
    except StoreUnusable:
        raise
    except Exception as exc:
        raise StoreUnusable(f"{where}: cannot read the store ({redact_text(exc, url)})") from None
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def load_store(path: str, app: str | None = None) -> ErrorStore:
    """Everything the store holds (``app``: only that app's), in an unbounded store."""
    store = ErrorStore(NO_LIMIT, NO_LIMIT)
    if is_postgres(path):
        from exporter.store.durable import postgres_database as db

        with open_database(path) as conn:
            db.load_into(conn, store, app)
    else:
        path = file_of(path)
        with open_read_only(path) as conn:
            try:
                load_into(conn, store, app=app)
            except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
                raise StoreUnusable(f"{path}: cannot read the store ({exc})") from None
    firsts = [g.report.first_occurrence for g in store.groups.values()]
    if firsts:
        store.started = min(firsts)
    return store


def offline_monitor(path: str, app: str | None = None) -> Any:
    """A monitor that is never started, reading the store at ``path``."""
    from exporter.config import HOOKS_OFF
    from exporter.monitor import ErrorMonitor
    from exporter.multiprocess import ENV_VAR, multiproc_dir

    if multiproc_dir() is not None:
        # prometheus_client, imported in multiprocess mode, would write this reader's counts
        # into that directory (a live server's) and the monitor would read the directory
        raise StoreUnusable(
            f"{ENV_VAR} is set in this environment: unset it to read a store "
            "file offline (it would add this command's counts to that "
            "directory's metrics)"
        )
    store = load_store(path, app)
    monitor = ErrorMonitor(**HOOKS_OFF)
    monitor.store = store
    metrics = monitor.metrics
    limit = metrics.limiter.value
    for group in store.groups.values():
        report = group.report
        labels = (
            limit("error_type", report.error_type),
            limit("component", report.component),
            limit("plugin", report.plugin),
            report.severity.value,
        )
        metrics.families().errors.labels(*labels).inc(report.occurrence_count)
        for result, count in group.recoveries.items():
            if count:
                metrics.families().recoveries.labels(labels[1], labels[2], result).inc(count)
    tracker = monitor.sessions
    tracker.end_all()  # this reader's own process session is not the app's
    tracker.ended = load_sessions(path, app)
    return monitor


def load_sessions(path: str, app: str | None = None) -> dict[str, int]:
    """The app's ended sessions by status, as every process of it added them."""
    where = "" if app is None else " WHERE app = {p}"
    sql = f"SELECT status, sum(count) FROM session_counts{where} GROUP BY status"
    args = () if app is None else (app,)
    if is_postgres(path):
        with open_database(path) as conn, conn.transaction():
            found = conn.execute(sql.format(p="%s"), args).fetchall()
    else:
        with open_read_only(file_of(path)) as conn:
            found = conn.execute(sql.format(p="?"), args).fetchall()
    return {str(status): int(count) for status, count in found}


def export_data(path: str, app: str | None = None, **filters: Any) -> dict[str, Any]:
    """The export document of the store at ``path`` (the live export's shape).

    ``filters`` as the CLI takes them (``since`` / ``until`` as epoch or ISO-8601 text).
    """
    from exporter.http.params import parse_time

    wanted = {k: v for k, v in filters.items() if v is not None}
    for key in ("since", "until"):
        if isinstance(wanted.get(key), str):
            wanted[key] = parse_time(wanted[key])
    monitor = offline_monitor(path, app)
    return dict(monitor.export_data(**wanted))


def report_from_store(path: str, app: str | None = None) -> dict[str, Any]:
    """The ``analyze`` report of the store at ``path`` (as ``analyze --file`` builds it)."""
    from exporter.cli.analyze import build_report

    data = export_data(path, app)
    report = build_report(
        data["analysis"], data["statistics"], None, data["all_records"], redact(path)
    )
    report["exported_at"] = data.get("exported_at")
    return report


def export_command(
    store: str, output: str, filters: dict[str, Any], limit: int | None, app: str | None = None
) -> int:
    """``export --store``: write the store's export to ``output``; returns the exit code."""
    import sys

    from exporter.cli.export import write_atomically

    try:
        data = export_data(store, app, **filters, limit=limit)
    except StoreUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data.pop("next_cursor", None)  # the whole store in one document
    try:
        write_atomically(output, data)
    except OSError as exc:
        print(f"error: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(data['all_records'])} records from {redact(store)} to {output}", flush=True)
    return 0


def resolve_command(store: str, error_id: str, app: str | None) -> int:
    """``resolve --store``: mark the group resolved in the store itself (every process
    sharing a postgresql:// store learns of it at its next write or sync)."""
    import sys
    import time

    from exporter.cli.resolve import resolved_line

    try:
        group = _resolve(store, error_id, app, time.time())
    except StoreUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(resolved_line(group), flush=True)
    return 0


def _resolve(store: str, error_id: str, app: str | None, when: float) -> dict[str, Any]:
    if is_postgres(store):
        from exporter.store.durable import postgres_database as db

        with open_database(store, read_only=False) as conn:
            with conn.transaction():
                apps = [
                    a
                    for (a,) in conn.execute(
                        "SELECT app FROM groups WHERE error_id = %s", (error_id,)
                    )
                ]
            app = _one_app(apps, app, error_id)
            found = db.resolve(conn, app, error_id, when, None)
    else:
        path = file_of(store)
        if not Path(path).is_file():
            raise StoreUnusable(f"{path}: no such store file (is store_path right?)")
        conn = sqlite_schema.open_writable(path)
        try:
            apps = [
                a for (a,) in conn.execute("SELECT app FROM groups WHERE error_id = ?", (error_id,))
            ]
            app = _one_app(apps, app, error_id)
            conn.execute(
                "UPDATE groups SET resolved_version = CASE WHEN resolved_at IS NULL "
                "THEN NULL ELSE resolved_version END, resolved_at = "
                "coalesce(resolved_at, ?), regressed = 0, regressed_at = NULL "
                "WHERE app = ? AND error_id = ?",
                (when, app, error_id),
            )
            row = conn.execute(
                f"{rows.GROUP_SELECT} WHERE app = ? AND error_id = ?", (app, error_id)
            ).fetchone()
            found = rows.group_from_row(row).summary()
        finally:
            conn.close()
    if found is None:
        raise StoreUnusable(f"no group {error_id} in the store")
    return found


def serve_store(
    url: str,
    app: str | None,
    host: str | None,
    port: int | None,
    token: str | None,
    config_path: str | None,
) -> int:
    """``serve --store postgresql://...``: the read API of the app's whole fleet from the
    shared store, with no app running (the groups summed over every instance, with their
    per-instance counts; patterns and sessions, which only a live process has, empty).
    Read-only: resolving is ``resolve --store``. Serves until SIGINT / SIGTERM."""
    import signal
    import sys
    import threading

    from exporter.config import ConfigError, load_config
    from exporter.http import MonitorServer
    from exporter.store.durable.fleet_reader import FleetReader

    if not is_postgres(url):
        print(
            f"error: --store {redact(url)}: serve reads a postgresql:// shared store "
            "(a store file has one process: `analyze --store` / `export --store` read it)",
            file=sys.stderr,
        )
        return 2
    overrides: dict[str, Any] = {}
    for key, value in (("host", host), ("port", port), ("api_token", token)):
        if value is not None:
            overrides[key] = value
    try:
        config = load_config(config_path, **overrides)
        with open_database(url) as conn, conn.transaction():
            apps = [a for (a,) in conn.execute("SELECT DISTINCT app FROM groups ORDER BY 1")]
        app = app or config.app_name or (apps[0] if len(apps) == 1 else None)
        if app is None:
            raise StoreUnusable(
                f"{redact(url)} holds the groups of several apps ({', '.join(apps)}): "
                "name one with --app"
                if apps
                else f"{redact(url)} holds no groups yet: name "
                "the app with --app (its app_name, else its namespace)"
            )
    except ConfigError as exc:
        print(f"error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except StoreUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reader = FleetReader(url, app, config)
    server = MonitorServer(reader, config.host, config.port)
    try:
        server.start()
    except OSError as exc:
        print(f"error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"error-exporter serving the reports of app {app!r} from {redact(url)} on "
        f"{server.url} (/api/v1/errors, /api/v1/export)",
        flush=True,
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        reader.close()
    return 0


def _one_app(apps: list[str], app: str | None, error_id: str) -> str:
    if app is not None:
        if app not in apps:
            raise StoreUnusable(f"no group {error_id} of app {app} in the store")
        return app
    if not apps:
        raise StoreUnusable(f"no group {error_id} in the store")
    if len(apps) > 1:
        raise StoreUnusable(
            f"group {error_id} exists in several apps ({', '.join(apps)}): name one with --app"
        )
    return apps[0]
