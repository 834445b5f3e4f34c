"""Caller-thread cost of record_error against a 4-label prometheus_client counter.

Every figure is a ratio against a baseline measured in the same run (the machine is
noisy): the caller's cost is (raise + catch + record_error) minus (raise + catch), with
the worker paused so it does not compete for the GIL; the baseline is
(raise + catch + ``Counter.labels(4 values).inc()``) minus (raise + catch). The total
cost adds the worker's time to drain the same errors. RSS is sampled over 100,000
errors with 10,000 distinct messages.

    python bench/bench_capture.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable

import psutil
from prometheus_client import CollectorRegistry, Counter

from exporter import ErrorMonitor

QUIET = {
    "capture_sys_excepthook": False,
    "capture_threading": False,
    "capture_logging": False,
    "capture_asyncio": False,
    "enable_resource_monitoring": False,
}
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


def caller_cost(sites: list[Callable[[int], None]], n: int, repeats: int) -> dict[str, float]:
    registry = CollectorRegistry()
    counter = Counter("bench_errors", "baseline", ["a", "b", "c", "d"], registry=registry)

    def nothing(exc: BaseException) -> None:
        return None

    def baseline(exc: BaseException) -> None:
        counter.labels("ValueError", "ECUControl", "weather", "medium").inc()

    results: dict[str, list[float]] = {"empty": [], "baseline": [], "record": [], "drain": []}
    for _ in range(repeats):
        monitor = ErrorMonitor(queue_size=n + 10, **QUIET)  # worker not started: paused

        def record(exc: BaseException, monitor: ErrorMonitor = monitor) -> None:
            monitor.record_error(exc, component="ECUControl", plugin="weather")

        results["empty"].append(_loop(sites, n, nothing))
        results["baseline"].append(_loop(sites, n, baseline))
        results["record"].append(_loop(sites, n, record))
        start = time.perf_counter()
        monitor.start()
        monitor.flush(timeout=600)
        results["drain"].append(time.perf_counter() - start)
        monitor.stop()
    empty = min(results["empty"])
    base = (min(results["baseline"]) - empty) / n
    rec = (min(results["record"]) - empty) / n
    drain = statistics.median(results["drain"]) / n
    return {"baseline_us": base * 1e6, "caller_us": rec * 1e6, "worker_us": drain * 1e6,
            "caller_ratio": rec / base, "total_ratio": (rec + drain) / base}


def rss_growth(total: int = 100_000, distinct: int = 10_000) -> list[tuple[int, float]]:
    process = psutil.Process()
    monitor = ErrorMonitor(**QUIET)
    monitor.start()
    site = _make_site(0)
    points = []
    for i in range(total):
        try:
            site(i % distinct)
        except ValueError as exc:
            monitor.record_error(exc, component="ECUControl", context={"i": i})
        if (i + 1) % 10_000 == 0:
            monitor.flush(timeout=60)
            gc.collect()
            points.append((i + 1, process.memory_info().rss / 1e6))
    monitor.stop()
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    n, repeats = (5_000, 3) if args.quick else (20_000, 5)
    print(f"record_error caller-thread cost, traceback {DEPTH} frames, n={n}, best of {repeats}")
    for label, sites in (("1 site", [_make_site(0)]),
                         ("200 sites", [_make_site(i) for i in range(200)])):
        r = caller_cost(sites, n, repeats)
        print(f"  {label:9}: baseline labels().inc() {r['baseline_us']:.2f} us | record_error "
              f"{r['caller_us']:.2f} us -> caller ratio {r['caller_ratio']:.2f}x (target <= 1.0x)"
              f" | worker {r['worker_us']:.1f} us -> total ratio {r['total_ratio']:.2f}x "
              f"(target <= 5x)")
    points = rss_growth(20_000 if args.quick else 100_000, 10_000)
    print("RSS over errors with 10,000 distinct messages (MB): "
          + ", ".join(f"{n // 1000}k={mb:.1f}" for n, mb in points))
    half = points[len(points) // 2][1]
    print(f"  growth in the second half: {points[-1][1] - half:+.1f} MB (flat once buffers full)")
    print(f"  pid {os.getpid()}")


if __name__ == "__main__":
    main()
