"""Load: error storms, scrapes during a storm, and a soak. Counts exact, memory bounded.

An error monitor is used exactly when things go wrong, so it has to hold when the app throws
errors as fast as it can. What these tests hold the monitor to:

* ``app_errors_total`` equals the number of record calls exactly, however many detailed
  reports had to be dropped, and every drop is counted: processed + dropped + coalesced ==
  recorded;
* memory stays within what the configured buffers allow (RSS before, during and after);
* nothing deadlocks (every thread joins, the queue flushes) and the app's own threads keep
  running (a ticker thread's largest gap is measured and printed);
* concurrent ``/metrics`` scrapes and ``/api/v1/export`` calls during a storm all complete with
  well-formed bodies;
* a few minutes of steady mixed work with the resource sampler on leaves RSS and the thread
  count flat (the slope is printed).

Timing bounds are deliberately generous (CI machines are slow and shared); the measured
figures are printed (``pytest -s``) for the "Guarantees" page (docs/guarantees.md).
"""

from __future__ import annotations

import gc
import gzip
import http.client
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families
from support.monitoring import dropped, errors_total, internal_errors

from exporter import ErrorMonitor
from exporter.config import MonitorConfig

pytestmark = pytest.mark.slow

MB = 1024 * 1024
KB = 1024
STORM_SECONDS = float(os.environ.get("ERROR_EXPORTER_STORM_SECONDS", "4"))
SOAK_SECONDS = float(os.environ.get("ERROR_EXPORTER_SOAK_SECONDS", "150"))
RAISING_THREADS = 8
LOGGING_THREADS = 2
JOIN_TIMEOUT = 60.0  # "no deadlock": everything must be back well within this
TICK_SECONDS = 0.005
# Generous: ten CPU-bound threads make a 5 ms sleeper wait for the GIL for hundreds of ms
# whether or not they record errors (the test measures that baseline too and prints it).

# What one buffered item may cost at most, to turn the configured buffer sizes into an RSS
# budget. Deliberately pessimistic: a queued item keeps its exception, traceback and frames
# alive; a stored group holds a full report (stack trace up to 64 KiB, plus its lines).
PER_QUEUED_ITEM = 32 * KB
PER_CALLBACK_ITEM = 2 * KB
PER_RECORD = 16 * KB
PER_GROUP = 192 * KB
SLACK = 96 * MB  # thread stacks, allocator arenas, imports done lazily during the run

STORM_CONFIG: dict[str, Any] = {
    "queue_size": 2000,
    "callback_queue_size": 500,
    "max_records": 1000,
    "error_buffer_size": 200,
    "occurrences_per_group": 10,
    "capture_logging": True,
}


def report(name: str, **values: Any) -> None:
    """Print one measured figure line (collected for docs/guarantees.md)."""
    text = ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"\n[load] {name}: {text}")


def memory_budget(config: MonitorConfig) -> int:
    """The most the monitor's configured buffers may add to RSS, generously."""
    return (
        config.queue_size * PER_QUEUED_ITEM
        + config.callback_queue_size * PER_CALLBACK_ITEM
        + config.max_records * PER_RECORD
        + config.error_buffer_size * PER_GROUP
        + SLACK
    )


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


# -- the app's side of a storm -------------------------------------------------------------------

ERROR_TYPES: list[type[Exception]] = [
    ValueError,
    KeyError,
    TypeError,
    RuntimeError,
    OSError,
    LookupError,
    ZeroDivisionError,
    AttributeError,
]


def fail_in_db(n: int) -> None:
    raise ERROR_TYPES[n % len(ERROR_TYPES)](f"query {n} failed")


def fail_in_api(n: int) -> None:
    raise ERROR_TYPES[(n + 3) % len(ERROR_TYPES)](f"request {n} failed")


def fail_deep(n: int, depth: int = 20) -> None:
    if depth:
        fail_deep(n, depth - 1)
    raise ValueError(f"deep {n}")


SITES: list[Callable[[int], None]] = [fail_in_db, fail_in_api, fail_deep]


@dataclass
class Ticker:
    """The app's own thread: sleeps 5 ms at a time and remembers its largest gap."""

    max_gap: float = 0.0
    ticks: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last = time.perf_counter()
        while not self.stop.is_set():
            time.sleep(TICK_SECONDS)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now


@dataclass
class RssSampler:
    """Samples RSS every 50 ms while running; keeps the peak."""

    peak: int = 0
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        process = psutil.Process()
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, int(process.memory_info().rss))
            self.samples += 1


@dataclass
class Storm:
    """Raising threads and logging threads hammering one monitor until ``stop`` is set."""

    monitor: ErrorMonitor
    logger: logging.Logger
    raising_threads: int = RAISING_THREADS
    logging_threads: int = LOGGING_THREADS
    stop: threading.Event = field(default_factory=threading.Event)
    recorded: list[int] = field(default_factory=list)
    logged: list[int] = field(default_factory=list)
    missing_ids: list[int] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recorded = [0] * self.raising_threads
        self.logged = [0] * self.logging_threads
        self.missing_ids = [0] * self.raising_threads

    def raise_and_record(self, index: int) -> None:
        monitor, stop = self.monitor, self.stop
        calls = missing = 0
        try:
            while not stop.is_set():
                site = SITES[calls % len(SITES)]
                try:
                    site(calls)
                except Exception as exc:
                    error_id = monitor.record_error(
                        exc,
                        component=f"component-{index % 4}",
                        plugin=f"plugin-{calls % 3}",
                        operation="storm",
                        context={"n": calls, "thread": index},
                    )
                    calls += 1
                    if error_id is None:
                        missing += 1
                if calls % 97 == 0:
                    monitor.add_breadcrumb(f"step {calls}", component="storm")
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            self.failures.append(exc)
        finally:
            self.recorded[index] = calls
            self.missing_ids[index] = missing

    def log_errors(self, index: int) -> None:
        logger, stop = self.logger, self.stop
        calls = 0
        try:
            while not stop.is_set():
                try:
                    fail_in_api(calls)
                except Exception:
                    logger.exception("request %d failed", calls, extra={"component": "logs"})
                    calls += 1
                if calls % 50 == 0:
                    logger.info("progress %d", calls)  # a breadcrumb, not an error
        except BaseException as exc:  # pragma: no cover
            self.failures.append(exc)
        finally:
            self.logged[index] = calls

    def start(self) -> None:
        for i in range(self.raising_threads):
            self.threads.append(
                threading.Thread(
                    target=self.raise_and_record, args=(i,), name=f"storm-raise-{i}", daemon=True
                )
            )
        for i in range(self.logging_threads):
            self.threads.append(
                threading.Thread(
                    target=self.log_errors, args=(i,), name=f"storm-log-{i}", daemon=True
                )
            )
        for thread in self.threads:
            thread.start()

    def finish(self) -> float:
        """Stop and join every thread; returns the seconds the joins took."""
        self.stop.set()
        started = time.perf_counter()
        for thread in self.threads:
            thread.join(JOIN_TIMEOUT)
        stuck = [t.name for t in self.threads if t.is_alive()]
        assert not stuck, f"storm threads did not finish (deadlock?): {stuck}"
        assert not self.failures, self.failures
        return time.perf_counter() - started

    @property
    def total_calls(self) -> int:
        return sum(self.recorded) + sum(self.logged)


@pytest.fixture
def storm_logger() -> Iterator[Callable[[ErrorMonitor], logging.Logger]]:
    """A logger the monitor's logging hook sees (it hooks where loggers dispatch records).

    It does not propagate to the root logger: pytest's log capture would otherwise keep every
    one of the storm's records (with its traceback) in memory and distort RSS.
    """
    made: list[tuple[logging.Logger, logging.Handler]] = []

    def wire(monitor: ErrorMonitor) -> logging.Logger:
        assert monitor.config.capture_logging
        logger = logging.getLogger(f"storm.app.{id(monitor)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        quiet = logging.NullHandler()  # the app prints nothing (else: Python's last resort)
        logger.addHandler(quiet)
        made.append((logger, quiet))
        return logger

    yield wire
    for logger, quiet in made:
        logger.removeHandler(quiet)
        logger.propagate = True


# -- the storm -----------------------------------------------------------------------------------


def plain_storm_ticker_gap(seconds: float) -> tuple[float, int]:
    """The same number of threads raising and catching, without a monitor: the GIL baseline."""
    stop = threading.Event()
    ticker = Ticker(stop=stop)

    def spin(index: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                SITES[n % len(SITES)](n)
            except Exception:
                n += 1

    threads = [
        threading.Thread(target=spin, args=(i,), daemon=True)
        for i in range(RAISING_THREADS + LOGGING_THREADS)
    ]
    threads.append(threading.Thread(target=ticker.run, daemon=True))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    return ticker.max_gap, ticker.ticks


def test_error_storm_counts_exactly_within_memory_budget(make_monitor, storm_logger):
    baseline_gap, baseline_ticks = plain_storm_ticker_gap(min(STORM_SECONDS, 2.0))
    monitor = make_monitor(**STORM_CONFIG)
    logger = storm_logger(monitor)
    budget = memory_budget(monitor.config)
    gc.collect()
    rss_before = rss()

    ticker, sampler = Ticker(), RssSampler(peak=rss_before)
    helpers = [
        threading.Thread(target=ticker.run, name="app-ticker", daemon=True),
        threading.Thread(target=sampler.run, name="rss-sampler", daemon=True),
    ]
    for thread in helpers:
        thread.start()
    storm = Storm(monitor, logger)
    started = time.perf_counter()
    storm.start()
    time.sleep(STORM_SECONDS)
    join_seconds = storm.finish()
    storm_seconds = time.perf_counter() - started
    flush_started = time.perf_counter()
    flushed = monitor.flush(timeout=JOIN_TIMEOUT)
    flush_seconds = time.perf_counter() - flush_started
    ticker.stop.set()
    sampler.stop.set()
    for thread in helpers:
        thread.join(JOIN_TIMEOUT)
    gc.collect()
    rss_after = rss()

    calls = storm.total_calls
    counted = errors_total(monitor)
    queue_drops = dropped(monitor, "queue_full")
    coalesced = dropped(monitor, "coalesced")
    processed = monitor._reports.processed  # items the worker handled (no recoveries here)
    report(
        "storm",
        seconds=storm_seconds,
        calls=calls,
        recorded=sum(storm.recorded),
        logged=sum(storm.logged),
        per_second=calls / storm_seconds,
        counted=counted,
        processed=processed,
        dropped_queue_full=queue_drops,
        coalesced=coalesced,
        dropped_callback_queue_full=dropped(monitor, "callback_queue_full"),
        store_evicted=dropped(monitor, "store_evicted"),
        internal_errors=internal_errors(monitor),
        join_seconds=join_seconds,
        flush_seconds=flush_seconds,
    )
    report(
        "storm_rss_mb",
        before=rss_before / MB,
        peak_during=sampler.peak / MB,
        after=rss_after / MB,
        growth_peak=(sampler.peak - rss_before) / MB,
        budget=budget / MB,
        samples=sampler.samples,
    )
    report(
        "storm_ticker",
        max_gap_ms=ticker.max_gap * 1000,
        ticks=ticker.ticks,
        tick_ms=TICK_SECONDS * 1000,
        baseline_max_gap_ms=baseline_gap * 1000,
        baseline_ticks=baseline_ticks,
    )

    assert flushed, "the queue did not drain after the storm"
    assert calls > 1000, "the storm hardly ran"
    assert sum(storm.missing_ids) == 0, "record_error returned None for a real error"
    assert counted == calls, f"app_errors_total {counted} != {calls} calls"
    assert processed + queue_drops + coalesced == calls, (processed, queue_drops, calls)
    assert monitor.queue_depth == 0
    assert internal_errors(monitor) == 0
    assert monitor.get_statistics()["total_errors"] == calls
    assert sampler.peak - rss_before < budget, (sampler.peak - rss_before) / MB
    assert rss_after - rss_before < budget, (rss_after - rss_before) / MB
    assert ticker.ticks > 0  # the app's own thread kept running (its gaps are reported above)
    # what was recorded is readable and consistent
    assert len(monitor.store.records) <= monitor.config.max_records
    assert len(monitor.store.groups) <= monitor.config.error_buffer_size
    exported = json.loads(json.dumps(monitor.export_data(limit=100)))
    assert exported["summary"]["total_errors"] == calls


def test_storm_with_a_tiny_queue_drops_reports_but_never_counts(make_monitor):
    """A queue of 10 under 8 threads: most reports dropped, every error still counted."""
    monitor = make_monitor(queue_size=10, callback_queue_size=1)
    received: list[str] = []
    monitor.register_error_callback(lambda report: received.append(report.error_id))
    storm = Storm(monitor, logging.getLogger("unused"), logging_threads=0)
    storm.start()
    time.sleep(min(STORM_SECONDS, 2.0))
    storm.finish()
    assert monitor.flush(timeout=JOIN_TIMEOUT)
    calls = storm.total_calls
    queue_drops = dropped(monitor, "queue_full")
    coalesced = dropped(monitor, "coalesced")
    processed = monitor._reports.processed
    report(
        "tiny_queue_storm",
        calls=calls,
        processed=processed,
        dropped_queue_full=queue_drops,
        coalesced=coalesced,
        dropped_callback_queue_full=dropped(monitor, "callback_queue_full"),
        callbacks_run=len(received),
    )
    assert errors_total(monitor) == calls
    assert processed + queue_drops + coalesced == calls
    assert queue_drops > 0, "a 10-item queue under 8 threads must overflow"
    assert monitor.get_statistics()["dropped_reports"] >= queue_drops


# -- HTTP during a storm -----------------------------------------------------------------------

CLIENT_THREADS = 6
REQUESTS_PER_CLIENT = 50
REQUEST_KINDS = ("metrics", "openmetrics_gzip", "export", "export_page", "errors", "healthz")


def fetch(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()  # raises IncompleteRead on a truncated body
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def check_response(
    kind: str, status: int, headers: dict[str, str], body: bytes, max_records: int
) -> None:
    """A complete, well-formed answer for this kind of request."""
    assert status == 200, (kind, status, body[:300])
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body), kind
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    if kind == "metrics":
        families = {f.name for f in text_string_to_metric_families(body.decode("utf-8"))}
        assert {"app_errors", "app_error_reports_dropped", "app_error_queue_depth"} <= families
    elif kind == "openmetrics_gzip":
        text = body.decode("utf-8")
        assert text.endswith("# EOF\n")
        assert "app_errors" in {f.name for f in parse_om(text)}
    elif kind in ("export", "export_page"):
        document = json.loads(body)
        assert {
            "exported_at",
            "summary",
            "all_records",
            "statistics",
            "analysis",
            "next_cursor",
        } <= set(document)
        assert len(document["all_records"]) <= max_records
        if kind == "export_page":
            assert len(document["all_records"]) <= 50
    elif kind == "errors":
        document = json.loads(body)
        assert isinstance(document["errors"], list) and document["total"] >= 0
    else:
        assert json.loads(body)["status"] == "ok"


def test_scrapes_and_exports_during_a_storm_are_complete(make_monitor, storm_logger):
    monitor = make_monitor(serve=True, port=0, **STORM_CONFIG)
    host, port = monitor.server.host, monitor.server.port
    # A lighter storm than above: the server's threads share the GIL with it, and each
    # request should still finish in a reasonable time on a small CI machine.
    storm = Storm(monitor, storm_logger(monitor), raising_threads=2, logging_threads=1)
    requests = {
        "metrics": ("/metrics", {}),
        "openmetrics_gzip": (
            "/metrics",
            {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"},
        ),
        "export": ("/api/v1/export", {"Accept-Encoding": "gzip"}),
        "export_page": ("/api/v1/export?limit=50&severity=medium", {}),
        "errors": ("/api/v1/errors?sort=last_seen&limit=20", {}),
        "healthz": ("/healthz", {}),
    }
    done: dict[str, int] = dict.fromkeys(REQUEST_KINDS, 0)
    failures: list[str] = []
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {kind: [] for kind in REQUEST_KINDS}
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(index)
        for _ in range(REQUESTS_PER_CLIENT):
            kind = rng.choice(REQUEST_KINDS)
            path, headers = requests[kind]
            started = time.perf_counter()
            try:
                status, response_headers, body = fetch(host, port, path, headers)
                check_response(kind, status, response_headers, body, monitor.config.max_records)
            except Exception as exc:
                with lock:
                    failures.append(f"{kind}: {exc!r}")
                continue
            with lock:
                done[kind] += 1
                latencies.append(time.perf_counter() - started)
                by_kind[kind].append(time.perf_counter() - started)

    storm.start()
    time.sleep(0.3)  # the storm is under way before the first request
    clients = [
        threading.Thread(target=client, args=(i,), name=f"http-client-{i}", daemon=True)
        for i in range(CLIENT_THREADS)
    ]
    started = time.perf_counter()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(JOIN_TIMEOUT * 3)
    http_seconds = time.perf_counter() - started
    stuck = [t.name for t in clients if t.is_alive()]
    storm.finish()
    assert monitor.flush(timeout=JOIN_TIMEOUT)

    total = sum(done.values())
    latencies.sort()
    report(
        "http_during_storm",
        requests=total,
        failed=len(failures),
        clients=CLIENT_THREADS,
        seconds=http_seconds,
        storm_calls=storm.total_calls,
        p50_ms=latencies[len(latencies) // 2] * 1000 if latencies else -1.0,
        max_ms=latencies[-1] * 1000 if latencies else -1.0,
        **done,
    )
    report(
        "http_during_storm_max_ms_by_kind",
        **{kind: max(values) * 1000 for kind, values in by_kind.items() if values},
    )
    assert not stuck, f"HTTP clients never finished: {stuck}"
    assert not failures, failures[:10]
    assert total == CLIENT_THREADS * REQUESTS_PER_CLIENT
    assert errors_total(monitor) == storm.total_calls
    assert internal_errors(monitor) == 0
    # the server still answers, and the final scrape agrees with the exact count
    status, _, body = fetch(host, port, "/metrics", {})
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    scraped = sum(s.value for s in families["app_errors"].samples if s.name == "app_errors_total")
    assert status == 200 and int(scraped) == storm.total_calls


# -- soak ------------------------------------------------------------------------------------------


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


def test_soak_rss_and_threads_stay_flat(make_monitor):
    """Minutes of steady mixed work (errors, sessions, breadcrumbs, recoveries, operations,
    scrapes, exports) with the resource sampler on: RSS and thread count do not grow."""
    monitor = make_monitor(
        serve=True,
        port=0,
        enable_resource_monitoring=True,
        resource_check_interval=0.5,
        max_records=500,
        error_buffer_size=100,
        pattern_threshold=20,
        pattern_window_minutes=0.5,
        session_timeout=5.0,
    )
    host, port = monitor.server.host, monitor.server.port
    process = psutil.Process()
    warmup = min(30.0, SOAK_SECONDS / 4)
    stop = threading.Event()
    counts = {"scrapes": 0, "exports": 0, "http": 0}  # written by the reader only
    errors, sessions = [0, 0], [0, 0]  # one slot per app worker: no lost updates
    failures: list[BaseException] = []

    def app_worker(index: int) -> None:
        rng = random.Random(index)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                with monitor.session(user_id=f"user-{rng.randrange(50)}"):
                    sessions[index] += 1
                    monitor.add_breadcrumb(f"step {n}", component="soak", data={"n": n})
                    started = time.perf_counter()
                    try:
                        SITES[n % len(SITES)](n + index)
                    except Exception as exc:
                        error_id = monitor.record_error(
                            exc,
                            component=f"c{n % 5}",
                            plugin=f"p{n % 7}",
                            context={"n": n, "payload": "x" * rng.randrange(500)},
                            user_id=f"user-{rng.randrange(50)}",
                        )
                        errors[index] += 1
                        monitor.observe_operation(
                            "soak", "", "step", False, time.perf_counter() - started
                        )
                        if n % 3 == 0:
                            monitor.record_recovery(
                                n % 2 == 0, 0.01, component="soak", error_id=error_id
                            )
                time.sleep(0.001)  # steady, not flat out: ~1000 errors/s per worker at most
        except BaseException as exc:  # pragma: no cover
            failures.append(exc)

    def reader() -> None:
        try:
            while not stop.wait(0.2):
                generate_latest(monitor.registry)
                counts["scrapes"] += 1
                if counts["scrapes"] % 5 == 0:
                    status, _, body = fetch(host, port, "/metrics", {})
                    assert status == 200 and b"app_errors_total" in body
                    counts["http"] += 1
                if counts["scrapes"] % 10 == 0:
                    status, _, body = fetch(host, port, "/api/v1/export?limit=200", {})
                    assert status == 200 and json.loads(body)["all_records"] is not None
                    monitor.export_data(limit=100)
                    counts["exports"] += 1
        except BaseException as exc:  # pragma: no cover
            failures.append(exc)

    threads = [
        threading.Thread(target=app_worker, args=(i,), name=f"soak-app-{i}", daemon=True)
        for i in range(2)
    ]
    threads.append(threading.Thread(target=reader, name="soak-reader", daemon=True))
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    samples: list[tuple[float, float, int]] = []  # seconds, RSS MB, threads
    while (elapsed := time.perf_counter() - started) < SOAK_SECONDS:
        time.sleep(2.0)
        samples.append((elapsed, process.memory_info().rss / MB, process.num_threads()))
        assert not failures, failures
    stop.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not [t.name for t in threads if t.is_alive()]
    assert not failures, failures
    assert monitor.flush(timeout=JOIN_TIMEOUT)

    steady = [s for s in samples if s[0] >= warmup]
    rss_slope = slope_per_minute([(t, mb) for t, mb, _ in steady])
    thread_counts = [n for _, _, n in steady]
    rss_values = [mb for _, mb, _ in steady]
    report(
        "soak",
        seconds=time.perf_counter() - started,
        warmup_seconds=warmup,
        errors=sum(errors),
        sessions=sum(sessions),
        scrapes=counts["scrapes"],
        http_requests=counts["http"],
        exports=counts["exports"],
        rss_start_mb=rss_values[0],
        rss_end_mb=rss_values[-1],
        rss_min_mb=min(rss_values),
        rss_max_mb=max(rss_values),
        rss_slope_mb_per_min=rss_slope,
        threads_min=min(thread_counts),
        threads_max=max(thread_counts),
        thread_slope_per_min=slope_per_minute([(t, n) for t, _, n in steady]),
        sampler_failures=monitor.resources.failures,
    )
    assert sum(errors) > 1000 and counts["scrapes"] > 10
    assert errors_total(monitor) == sum(errors)
    assert abs(rss_slope) < 8.0, f"RSS grows {rss_slope:.2f} MB/min in steady state"
    assert max(rss_values) - min(rss_values) < 64, "RSS swings by more than 64 MB"
    assert max(thread_counts) - min(thread_counts) <= 4, thread_counts
    assert monitor.resources.latest is not None, "the sampler never produced a reading"
    assert internal_errors(monitor) == 0
