"""Caller-thread cost of record_error against a 4-label prometheus_client counter.

Every figure is a ratio against a baseline measured in the same run (the machine is
noisy): the caller's cost is (raise + catch + record_error) minus (raise + catch), with
the worker paused so it does not compete for the GIL; the baseline is
(raise + catch + ``Counter.labels(4 values).inc()``) minus (raise + catch). The total
cost adds the worker's time to drain the same errors. Each figure is the median over
interleaved rounds. RSS growth is measured over 100,000 errors with 10,000 distinct
messages, at default settings and with every occurrence queued in detail.

    python bench/bench_capture.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
from prometheus_client import CollectorRegistry, Counter

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF

QUIET = HOOKS_OFF
DEPTH = 10


def _make_site(index: int) -> Callable[[int], None]:
    """A call chain DEPTH frames deep whose innermost function is unique to this site."""
    lines = [f"def leaf_{index}(i):\n    raise ValueError(f'bad value {{i}} at site {index}')"]
    for d in range(1, DEPTH):
        callee = f"leaf_{index}" if d == 1 else f"level_{index}_{d - 1}"
        lines.append(f"def level_{index}_{d}(i):\n    return {callee}(i)")
    source = "\n".join(lines)
    namespace: dict[str, object] = {}
    exec(compile(source, f"<bench-site-{index}>", "exec"), namespace)
    return namespace[f"level_{index}_{DEPTH - 1}"]  # type: ignore[return-value]


def _loop(
    sites: list[Callable[[int], None]], n: int, action: Callable[[BaseException], object]
) -> float:
    count = len(sites)
    gc.disable()
    try:
        start = time.perf_counter()
        for i in range(n):
            try:
                sites[i % count](i)
            except ValueError as exc:
                action(exc)
        return time.perf_counter() - start
    finally:
        gc.enable()


def _warm(monitor: ErrorMonitor, sites: list[Callable[[int], None]]) -> None:
    """Sign each site once (no error recorded): the steady state of an app whose error
    sites are known. A new site's first signature is a one-time cost, not per error."""
    for site in sites:
        try:
            site(0)
        except ValueError as exc:
            monitor.signer.site(ValueError, exc.__traceback__)  # type: ignore[arg-type]


def caller_cost(
    sites: list[Callable[[int], None]], n: int, rounds: int, **options: object
) -> dict[str, float]:
    """Median over interleaved rounds; each round times the empty loop, the baseline and
    record_error back to back (so noise hits all three alike), then the worker's drain."""
    registry = CollectorRegistry()
    counter = Counter("bench_errors", "baseline", ["a", "b", "c", "d"], registry=registry)

    def nothing(exc: BaseException) -> None:
        return None

    def baseline(exc: BaseException) -> None:
        counter.labels("ValueError", "ECUControl", "weather", "medium").inc()

    base_us, caller_us, worker_us, caller_ratio, total_ratio = [], [], [], [], []
    for _ in range(rounds):
        monitor = ErrorMonitor(queue_size=n + 10, **QUIET, **options)  # type: ignore[arg-type]
        # (the worker is not started: paused while the caller is timed)
        _warm(monitor, sites)

        def record(exc: BaseException, monitor: ErrorMonitor = monitor) -> None:
            monitor.record_error(exc, component="ECUControl", plugin="weather")

        empty = _loop(sites, n, nothing)
        base = (_loop(sites, n, baseline) - empty) / n
        rec = (_loop(sites, n, record) - empty) / n
        start = time.perf_counter()
        monitor.start()
        monitor.flush(timeout=600)
        drain = (time.perf_counter() - start) / n
        monitor.stop()
        base_us.append(base * 1e6)
        caller_us.append(rec * 1e6)
        worker_us.append(drain * 1e6)
        caller_ratio.append(rec / base)
        total_ratio.append((rec + drain) / base)
    median = statistics.median
    return {
        "baseline_us": median(base_us),
        "caller_us": median(caller_us),
        "worker_us": median(worker_us),
        "caller_ratio": median(caller_ratio),
        "total_ratio": median(total_ratio),
    }


def rss_growth(total: int, distinct: int, **options: object) -> tuple[float, float]:
    """(retained, peak) RSS growth in MB over ``total`` errors with ``distinct`` messages,
    from a started monitor that has seen the site once, to after the last report is stored."""
    process = psutil.Process()
    monitor = ErrorMonitor(**QUIET, **options)  # type: ignore[arg-type]
    monitor.start()
    site = _make_site(0)
    try:
        site(0)
    except ValueError as exc:
        monitor.record_error(exc)
    monitor.flush(timeout=60)
    gc.collect()
    start = peak = process.memory_info().rss
    for i in range(total):
        try:
            site(i % distinct)
        except ValueError as exc:
            monitor.record_error(exc, component="ECUControl", context={"i": i})
        if i % 5000 == 0:
            peak = max(peak, process.memory_info().rss)
    monitor.flush(timeout=120)
    gc.collect()
    end = process.memory_info().rss
    monitor.stop()
    return (end - start) / 1e6, (max(peak, end) - start) / 1e6


def _rss_in_child(total: int, options: dict[str, object]) -> tuple[float, float]:
    """rss_growth in a fresh interpreter: this one's allocator already grew for the rounds."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", json.dumps([total, options])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    retained, peak = json.loads(out)
    return float(retained), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        total, options = json.loads(args.rss_child)
        print(json.dumps(rss_growth(total, 10_000, **options)))
        return
    n, rounds = (5_000, 3) if args.quick else (20_000, 7)
    print(
        f"record_error cost, traceback {DEPTH} frames, n={n}, median of {rounds} interleaved rounds"
    )
    every: dict[str, object] = {"backlog_coalescing": False}
    # (label, sites, options, caller target, whole-error target): issue 23's targets
    cases: tuple[tuple[str, list[Callable[[int], None]], dict[str, object], str, str], ...] = (
        ("1 site (a storm of one error)", [_make_site(0)], {}, "<= 1.5x", "<= 3x"),
        ("200 sites", [_make_site(i) for i in range(200)], {}, "none", "none"),
        (
            "200 sites, every occurrence queued (backlog_coalescing off)",
            [_make_site(i) for i in range(200)],
            every,
            "<= 2.5x",
            "<= 5x",
        ),
    )
    for label, sites, options, caller_target, total_target in cases:
        r = caller_cost(sites, n, rounds, **options)
        print(
            f"  {label}:\n    baseline labels().inc() {r['baseline_us']:.2f} us | "
            f"record_error {r['caller_us']:.2f} us -> caller ratio {r['caller_ratio']:.2f}x "
            f"(target {caller_target}) | worker {r['worker_us']:.1f} us -> total ratio "
            f"{r['total_ratio']:.2f}x (target {total_target})"
        )
    total = 20_000 if args.quick else 100_000
    rss_cases: tuple[tuple[str, dict[str, object]], ...] = (
        ("default settings", {}),
        ("every occurrence queued", {"occurrence_budget_per_second": 10**9, **every}),
    )
    for label, rss_options in rss_cases:
        retained, peak = _rss_in_child(total, rss_options)
        print(
            f"RSS over {total:,} errors, 10,000 distinct messages, {label} (fresh process): "
            f"retained {retained:+.1f} MB, peak {peak:+.1f} MB (target: retained <= 16 MB)"
        )


if __name__ == "__main__":
    main()
