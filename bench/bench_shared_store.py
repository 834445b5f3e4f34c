"""Eight processes, one PostgreSQL: is every occurrence counted, how late, at what cost.

A real PostgreSQL is started in a temp directory (the tests' own fixture code), then 8
processes of one app each capture errors from 40 code locations into the shared store:

- **steady**: each process at a fixed rate (``--rate`` a second) for ``--seconds``;
- **storm**: each process as fast as it can for ``--seconds`` (the storm budget coalesces
  repeats: counted exactly on their groups, not kept one record each).

Checked: the occurrence counts in the database add up to exactly what was captured.
Measured: each batch's transaction time (one per process per tick, 4 a second), write
lag from capture to row (p50 / p99, from each record's capture time to
its insert, clock_timestamp() on the same host), rows and bytes per million occurrences
(``pg_total_relation_size`` of groups + records), and the rate one database absorbed
(occurrences captured by the fleet / seconds until the last one was in the database).

    python bench/bench_shared_store.py [--quick] [--processes 8] [--seconds 10] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SITES = 40


def _sites() -> list[Any]:
    """One function per code location: each raises its own group."""
    found = []
    for index in range(SITES):
        namespace: dict[str, Any] = {}
        exec(
            compile(
                f"def site(i):\n    raise ValueError(f'failure {{i}} at site {index}')",
                f"<bench-shared-{index}>",
                "exec",
            ),
            namespace,
        )
        found.append(namespace["site"])
    return found


def worker(
    url: str, version: str, rate: float, seconds: float, start_at: float, results: Any
) -> None:
    from exporter import ErrorMonitor
    from exporter.store.durable.postgres_store import MultiWriterBackend

    batch_seconds: list[float] = []  # how long each batch's transaction took (bench only)
    attempt = MultiWriterBackend._attempt

    def timed(self: Any, changes: Any, groups: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return attempt(self, changes, groups)
        finally:
            batch_seconds.append(time.perf_counter() - t0)

    MultiWriterBackend._attempt = timed  # type: ignore[method-assign]
    monitor = ErrorMonitor(
        store_url=url,
        app_version=version,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    monitor.start()
    sites = _sites()
    captured = 0
    while time.time() < start_at:
        time.sleep(0.01)
    began = time.monotonic()
    slowest = 0.0
    while time.monotonic() - began < seconds:
        if rate > 0:
            due = began + captured / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        site = sites[captured % SITES]
        t0 = time.perf_counter()
        try:
            site(captured)
        except ValueError as exc:
            monitor.record_error(exc)
        slowest = max(slowest, time.perf_counter() - t0)
        captured += 1
    monitor.stop(timeout=60)
    results.put({"captured": captured, "slowest_capture_s": slowest, "batches": batch_seconds})


def run_phase(
    server: Any, name: str, processes: int, rate: float, seconds: float
) -> dict[str, Any]:
    url = server.new_database()
    # create the schema once, then note each record's insert time (bench-only column)
    from exporter.store.durable import postgres_database as db

    conn = db.connect(url)
    db.ensure_schema(conn, "bench", "bench")
    conn.close()
    server.sql(
        url,
        "ALTER TABLE records ADD COLUMN written_at DOUBLE PRECISION "
        "DEFAULT extract(epoch FROM clock_timestamp())",
    )
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 3.0  # every process started and connected first
    procs = [
        ctx.Process(target=worker, args=(url, "1.0", rate, seconds, start_at, results))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    captured = sum(r["captured"] for r in reports)
    in_db, groups = server.sql(
        url, "SELECT coalesce(sum(occurrence_count), 0), count(*) FROM groups"
    )[0]
    records, last_written = server.sql(url, "SELECT count(*), max(written_at) FROM records")[0]
    lags = sorted(lag for (lag,) in server.sql(url, "SELECT written_at - ts FROM records"))
    size = server.sql(
        url, "SELECT pg_total_relation_size('groups') + pg_total_relation_size('records')"
    )[0][0]
    elapsed = float(last_written) - start_at if last_written else float("nan")
    per_million = 1_000_000 / max(captured, 1)
    batches = sorted(b for r in reports for b in r["batches"])
    return {
        "phase": name,
        "processes": processes,
        "captured": captured,
        "counted_in_db": int(in_db),
        "exact": int(in_db) == captured,
        "groups": int(groups),
        "records": int(records),
        "write_lag_p50_ms": round(1000 * statistics.median(lags), 1) if lags else None,
        "write_lag_p99_ms": round(1000 * lags[int(0.99 * (len(lags) - 1))], 1) if lags else None,
        "rows_per_million": round((records + groups) * per_million),
        "bytes_per_million": round(size * per_million),
        "occurrences_per_second_absorbed": round(captured / elapsed) if elapsed > 0 else None,
        "records_per_second_written": round(records / elapsed) if elapsed > 0 else None,
        "batches": len(batches),
        "batch_transaction_p50_ms": round(1000 * statistics.median(batches), 1),
        "batch_transaction_p99_ms": round(1000 * batches[int(0.99 * (len(batches) - 1))], 1),
        "slowest_capture_ms": round(1000 * max(r["slowest_capture_s"] for r in reports), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s phases, 4 processes")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=200.0, help="steady errors a second, per process"
    )
    args = parser.parse_args()
    if args.quick:
        args.processes, args.seconds = 4, 2.0
    sys.path.insert(0, str(HERE.parent / "tests"))
    from support.postgres import start_server, stop_server

    server = start_server()
    failed = 0
    try:
        for name, rate in (("steady", args.rate), ("storm", 0.0)):
            figures = run_phase(server, name, args.processes, rate, args.seconds)
            print(json.dumps(figures), flush=True)
            if not figures["exact"]:
                print(
                    f"FAIL: {name}: {figures['counted_in_db']} counted in the database, "
                    f"{figures['captured']} captured",
                    flush=True,
                )
                failed = 1
    finally:
        stop_server(server)
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
