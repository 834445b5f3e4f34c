"""``export --store PATH`` and ``analyze --store PATH``: a durable store read without an app.

The file is opened read-only (``mode=ro``; WAL lets it be read while a live process writes
it) and loaded into an ordinary in-memory store, which a monitor that is never started
reads: the document is built by the very code of the live export (``export_data``), so it
has the same shape. A file of an older schema version is read through an in-memory copy
migrated there (the file itself is never written); a newer one is refused.

What only a live process knows starts empty offline: patterns, sessions and plugin health.
The statistics are computed from the stored groups: each group's occurrence count under
its latest occurrence's labels, its recoveries under its component and plugin.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exporter.config import MonitorConfig
from exporter.durable import schema
from exporter.durable.file import load_into
from exporter.store import ErrorStore

NO_LIMIT = 2**62  # the offline store holds everything in the file


class StoreUnusable(Exception):
    """The store file is missing, damaged or newer than this error-exporter (exit 2)."""


@contextlib.contextmanager
def open_read_only(path: str) -> Iterator[sqlite3.Connection]:
    """The store at ``path`` for reading, at the current schema version."""
    if not Path(path).is_file():
        raise StoreUnusable(f"{path}: no such store file (is store_path right?)")
    try:
        conn = schema.connect(path, read_only=True)
    except sqlite3.Error as exc:
        raise StoreUnusable(f"{path}: cannot open the store ({exc})") from None
    try:
        found = _version(conn, path)
        schema.check_version(path, found, schema.written_by(conn))
        if found < schema.SCHEMA_VERSION:  # migrate a private copy; the file stays as it is
            copy = sqlite3.connect(":memory:", isolation_level=None)
            conn.backup(copy)
            conn.close()
            conn = copy
            schema.migrate(conn, found)
        yield conn
    except schema.StoreError as exc:
        raise StoreUnusable(str(exc)) from None
    except sqlite3.Error as exc:
        raise StoreUnusable(f"{path}: cannot read the store ({exc})") from None
    finally:
        conn.close()


def _version(conn: sqlite3.Connection, path: str) -> int:
    try:
        found = schema.version_of(conn)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise StoreUnusable(f"{path}: not a readable error store ({exc})") from None
    if found == 0 or not {"groups", "records"} <= tables:
        raise StoreUnusable(f"{path}: not an error-exporter store (no groups and records "
                            "tables)")
    return found


def load_store(path: str) -> ErrorStore:
    """Everything the file holds, in an unbounded in-memory store."""
    store = ErrorStore(NO_LIMIT, NO_LIMIT)
    with open_read_only(path) as conn:
        try:
            load_into(conn, store)
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            raise StoreUnusable(f"{path}: cannot read the store ({exc})") from None
    firsts = [g.report.first_occurrence for g in store.groups.values()]
    if firsts:
        store.started = min(firsts)
    return store


def offline_monitor(path: str) -> Any:
    """A monitor that is never started, reading the store at ``path``."""
    from exporter.monitor import ErrorMonitor
    from exporter.multiprocess import ENV_VAR, multiproc_dir

    if multiproc_dir() is not None:
        # prometheus_client, imported in multiprocess mode, would write this reader's counts
        # into that directory (a live server's) and the monitor would read the directory
        raise StoreUnusable(f"{ENV_VAR} is set in this environment: unset it to read a store "
                            "file offline (it would add this command's counts to that "
                            "directory's metrics)")
    store = load_store(path)
    quiet = MonitorConfig(enable_resource_monitoring=False, capture_sys_excepthook=False,
                          capture_threading=False, capture_logging=False,
                          capture_asyncio=False)
    monitor = ErrorMonitor(quiet)
    monitor.store = store
    metrics = monitor.metrics
    limit = metrics.limiter.value
    for group in store.groups.values():
        report = group.report
        labels = (limit("error_type", report.error_type), limit("component", report.component),
                  limit("plugin", report.plugin), report.severity.value)
        metrics.errors.labels(*labels).inc(report.occurrence_count)
        for result, count in group.recoveries.items():
            if count:
                metrics.recoveries.labels(labels[1], labels[2], result).inc(count)
    return monitor


def export_data(path: str, **filters: Any) -> dict[str, Any]:
    """The export document of the store at ``path`` (the live export's shape).

    ``filters`` as the CLI takes them (``since`` / ``until`` as epoch or ISO-8601 text).
    """
    from exporter.http.params import parse_time

    wanted = {k: v for k, v in filters.items() if v is not None}
    for key in ("since", "until"):
        if isinstance(wanted.get(key), str):
            wanted[key] = parse_time(wanted[key])
    monitor = offline_monitor(path)
    return dict(monitor.export_data(**wanted))


def report_from_store(path: str) -> dict[str, Any]:
    """The ``analyze`` report of the store at ``path`` (as ``analyze --file`` builds it)."""
    from exporter.cli.analyze import build_report

    data = export_data(path)
    report = build_report(data["analysis"], data["statistics"], None, data["all_records"],
                          path)
    report["exported_at"] = data.get("exported_at")
    return report


def export_command(store: str, output: str, filters: dict[str, Any], limit: int | None) -> int:
    """``export --store``: write the store's export to ``output``; returns the exit code."""
    import sys

    from exporter.cli.export import write_atomically

    try:
        data = export_data(store, **filters, limit=limit)
    except StoreUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data.pop("next_cursor", None)  # the whole store in one document
    try:
        write_atomically(output, data)
    except OSError as exc:
        print(f"error: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(data['all_records'])} records from {store} to {output}", flush=True)
    return 0
