"""Cost of the HTTP surface, as ratios against baselines measured in the same run.

1. ``/metrics`` (text format, through the WSGI app) with 1,000 and 10,000 ``app_errors_total``
   label sets against the floor: ``prometheus_client.generate_latest`` on a plain
   CollectorRegistry holding the same series (the same counter and histogram families and the
   scrape-time gauges as static Gauges) with ``_created`` off. Target <= 1.1x.
2. The extra cost per scrape of the scrape-time collectors (patterns/plugins/sessions and
   psutil): their collect + render time. Target <= 2 ms.
3. ``/api/v1/export`` of 10,000 records: streamed body vs ``json.dumps(export_data())``, time,
   size (plain and gzip) and peak memory.

    python bench/bench_http.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import logging
import statistics
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client.metrics as pc_metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from exporter.http import make_wsgi_app
from exporter.http.server import serve_app
from exporter.metrics.capture_path import OPERATION_BUCKETS, RECOVERY_BUCKETS
from exporter.metrics.collectors import StateCollector

QUIET = {k: v for k, v in HOOKS_OFF.items() if k != "enable_resource_monitoring"}
SEVERITIES = ("low", "medium", "high", "critical")
USE_MEDIAN = False


def timed(
    fns: dict[str, Callable[[], object]], repeat: int, clock: Callable[[], float] = time.thread_time
) -> dict[str, float]:
    """CPU seconds of each function (best of ``repeat``), run interleaved round by round.

    CPU time of this thread, not wall time: other processes on a shared 2-core machine then
    only disturb the numbers through caches, not by taking the CPU away. Interleaving makes
    drift hit every variant alike; ``--median`` reports medians instead of minimums."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            gc.disable()
            try:
                start = clock()
                fn()
                samples[name].append(clock() - start)
            finally:
                gc.enable()
    pick = statistics.median if USE_MEDIAN else min
    return {name: pick(values) for name, values in samples.items()}


def wsgi_get(app: Any, path: str, query: str = "", **headers: str) -> tuple[str, bytes]:
    """One in-process GET through the WSGI app; returns (status, body)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        **{"HTTP_" + k.upper(): v for k, v in headers.items()},
    }
    status: list[str] = []

    def start_response(line: str, _headers: list[tuple[str, str]]) -> None:
        status.append(line)

    body: Iterable[bytes] = app(environ, start_response)
    return status[0], b"".join(body)


def label_sets(n: int) -> list[tuple[str, str, str, str]]:
    types = max(1, int(n**0.5))
    return [
        (f"Error{i % types}", f"component{i // types}", f"plugin{i % 7}", SEVERITIES[i % 4])
        for i in range(n)
    ]


def make_monitor(n: int) -> ErrorMonitor:
    monitor = ErrorMonitor(**QUIET, label_value_limit=100000, enable_resource_monitoring=True)
    monitor.start()
    for i, (etype, component, plugin, severity) in enumerate(label_sets(n)):
        monitor.metrics.count_error(etype, component, plugin, severity, f"{i:016x}")
        monitor.patterns.observe(etype, f"{i % 50:016x}", "message", plugin)
        if i % 10 == 0:
            monitor.metrics.observe_operation(component, plugin, "op", "ok", 0.01)
    monitor.record_recovery(True, 0.2, "component0", "plugin0")
    return monitor


def floor_registry(monitor: ErrorMonitor) -> CollectorRegistry:
    """A plain registry with the monitor's series as ordinary prometheus_client metrics."""
    registry = CollectorRegistry()
    ns = monitor.config.namespace
    families = {metric.name: metric for metric in monitor.registry.collect()}
    counters = (
        "errors",
        "error_recoveries",
        "error_reports_dropped",
        "monitor_internal_errors",
        "label_values_overflow",
        "sessions",
        "system_disk_read_bytes",
        "system_disk_written_bytes",
        "system_network_sent_bytes",
        "system_network_received_bytes",
    )
    for short in counters:
        source = families.get(f"{ns}_{short}")
        if source is None:
            continue
        names = sorted({k for s in source.samples for k in s.labels})
        counter = Counter(short, source.documentation, names, namespace=ns, registry=registry)
        for sample in source.samples:
            if sample.name.endswith("_total"):
                child = counter.labels(**sample.labels) if names else counter
                child.inc(sample.value)
    for short, buckets in (
        ("error_recovery_duration_seconds", RECOVERY_BUCKETS),
        ("operation_duration_seconds", OPERATION_BUCKETS),
    ):
        source = families[f"{ns}_{short}"]
        names = sorted({k for s in source.samples for k in s.labels} - {"le"})
        hist = Histogram(
            short, source.documentation, names, namespace=ns, registry=registry, buckets=buckets
        )
        for sample in source.samples:
            if sample.name.endswith("_count"):
                for _ in range(int(sample.value)):
                    hist.labels(**sample.labels).observe(0.01)
    for name, source in families.items():
        if source.type not in ("gauge", "info"):
            continue
        names = sorted({k for s in source.samples for k in s.labels})
        gauge = Gauge(name, source.documentation, names, registry=registry)
        for sample in source.samples:
            (gauge.labels(**sample.labels) if names else gauge).set(sample.value)
    return registry


def bench_metrics(n: int, repeat: int) -> dict[str, float]:
    monitor = make_monitor(n)
    try:
        app = make_wsgi_app(monitor)
        floor = floor_registry(monitor)
        status, body = wsgi_get(app, "/metrics")
        assert status.startswith("200"), status
        created_default = pc_metrics._use_created

        def created_off(fn: Callable[[], object]) -> Callable[[], object]:
            def run() -> object:
                pc_metrics.disable_created_metrics()
                try:
                    return fn()
                finally:
                    pc_metrics._use_created = created_default

            return run

        extra = CollectorRegistry(auto_describe=False)
        extra.register(StateCollector(monitor))  # every scrape-time family, one table
        collectors = (StateCollector(monitor),)
        t = timed(
            {
                "floor": created_off(lambda: generate_latest(floor)),
                "app": lambda: wsgi_get(app, "/metrics"),
                "app_created_off": created_off(lambda: wsgi_get(app, "/metrics")),
            },
            repeat,
        )
        t.update(
            timed(
                {
                    "collectors": lambda: generate_latest(extra),
                    "collect_only": lambda: [list(c.collect()) for c in collectors],
                },
                repeat * 5,
            )
        )
        return {"series": float(n), "bytes": float(len(body)), **t}
    finally:
        monitor.stop(timeout=2.0)


def bench_export(records: int, repeat: int) -> dict[str, float]:
    monitor = ErrorMonitor(  # every occurrence kept one by one: no storm budget, no coalescing
        **QUIET,
        max_records=records,
        enable_resource_monitoring=False,
        queue_size=records + 10,
        occurrence_budget_per_second=10**9,
        backlog_coalescing=False,
    )
    monitor.start()
    try:
        for i in range(records):
            try:
                raise ValueError(f"bad value {i}")
            except ValueError as exc:
                monitor.record_error(
                    exc,
                    component=f"c{i % 10}",
                    plugin=f"p{i % 5}",
                    context={"i": i, "user": f"u{i % 100}"},
                )
        assert monitor.flush(60.0)
        app = make_wsgi_app(monitor)
        query = f"limit={records}"
        status, body = wsgi_get(app, "/api/v1/export", query)
        assert status.startswith("200"), status
        assert len(json.loads(body)["all_records"]) == records
        _, zipped = wsgi_get(app, "/api/v1/export", query, ACCEPT_ENCODING="gzip")
        assert gzip.decompress(zipped)

        def giant() -> bytes:
            return json.dumps(monitor.export_data(limit=records), default=str).encode()

        server = serve_app(app)
        url = f"{server.url}/api/v1/export?{query}"
        try:
            t = timed(
                {
                    "stream": lambda: wsgi_get(app, "/api/v1/export", query),
                    "stream_gzip": lambda: wsgi_get(
                        app, "/api/v1/export", query, ACCEPT_ENCODING="gzip"
                    ),
                    "giant": giant,
                },
                repeat,
            )
            # the server thread does the work: count the CPU of the whole process
            t.update(
                timed(
                    {
                        "http": lambda: http_get(url, {}),
                        "http_gzip": lambda: http_get(url, {"Accept-Encoding": "gzip"}),
                    },
                    repeat,
                    time.process_time,
                )
            )
        finally:
            server.stop()
        peak_stream = peak_memory(lambda: _drain(app, query))
        peak_giant = peak_memory(giant)
        return {
            "records": float(records),
            "bytes": float(len(body)),
            "gzip_bytes": float(len(zipped)),
            **t,
            "peak_stream": peak_stream,
            "peak_giant": peak_giant,
        }
    finally:
        monitor.stop(timeout=2.0)


def http_get(url: str, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        body: bytes = response.read()
    return body


def _drain(app: Any, query: str) -> int:
    """Read the streamed body chunk by chunk, as a socket writer would."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/export", "QUERY_STRING": query}
    size = 0
    for chunk in app(environ, lambda *a: None):
        size += len(chunk)
    return size


def peak_memory(fn: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--median", action="store_true", help="report medians, not minimums")
    args = parser.parse_args()
    global USE_MEDIAN
    USE_MEDIAN = args.median
    logging.getLogger("exporter").setLevel(logging.ERROR)  # pattern warnings are expected here
    repeat = 5 if args.quick else 21
    print("/metrics (text format, in-process WSGI call) vs generate_latest floor; CPU ms")
    print(
        f"{'series':>7} {'bytes':>9} {'floor ms':>9} {'app ms':>8} {'ratio':>6} "
        f"{'app ms*':>8} {'ratio*':>6}"
    )
    worst = 0.0
    collector_ms: list[float] = []
    for n in (1000, 10000):
        r = bench_metrics(n, repeat if n == 1000 else max(5, repeat // 2))
        ratio, ratio_off = r["app"] / r["floor"], r["app_created_off"] / r["floor"]
        worst = max(worst, ratio)
        collector_ms.append(r["collectors"] * 1000)
        print(
            f"{n:>7} {int(r['bytes']):>9} {r['floor'] * 1e3:>9.2f} {r['app'] * 1e3:>8.2f} "
            f"{ratio:>5.2f}x {r['app_created_off'] * 1e3:>8.2f} {ratio_off:>5.2f}x"
        )
        print(
            f"        scrape-time collectors: collect {r['collect_only'] * 1e3:.3f} ms, "
            f"collect+render {r['collectors'] * 1e3:.3f} ms"
        )
    print(
        "  * with prometheus_client's _created series switched off process-wide, as in the "
        "floor;\n    without *, the process default (the monitor drops _created itself)"
    )
    print(
        f"  worst ratio {worst:.2f}x (target <= 1.10x); collectors worst "
        f"{max(collector_ms):.3f} ms (target <= 2 ms)"
    )
    records = 10000
    e = bench_export(records, 3 if args.quick else 7)
    print(f"\n/api/v1/export of {records} records (in-process WSGI call); CPU ms")
    print(
        f"  streamed:       {e['stream'] * 1e3:8.1f} ms  {e['bytes'] / 1e6:6.2f} MB  "
        f"peak Python memory {e['peak_stream'] / 1e6:6.1f} MB"
    )
    print(f"  streamed gzip:  {e['stream_gzip'] * 1e3:8.1f} ms  {e['gzip_bytes'] / 1e6:6.2f} MB")
    print(
        f"  over HTTP:      {e['http'] * 1e3:8.1f} ms  (GET on the stdlib server, loopback; "
        "process CPU, client included)"
    )
    print(f"  over HTTP gzip: {e['http_gzip'] * 1e3:8.1f} ms")
    print(
        f"  one string:     {e['giant'] * 1e3:8.1f} ms  (json.dumps(export_data()))  "
        f"peak Python memory {e['peak_giant'] / 1e6:6.1f} MB"
    )
    print(
        f"  streamed / one string: time {e['stream'] / e['giant']:.2f}x, "
        f"peak memory {e['peak_stream'] / e['peak_giant']:.2f}x"
    )


if __name__ == "__main__":
    main()
