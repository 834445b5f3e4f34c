"""Memory pinned by queued error reports: peak RSS growth with the monitor minus without.

A failing request's traceback holds every frame of the request and every local in them. If
what ``record_error`` queues for the worker kept the exception (or its traceback), each
queued report would keep its request's locals alive until the worker got to it. Measured:

A. 4 threads x 1,500 requests; each request holds a 200 KB local (written, so resident),
   calls a helper that raises, catches the error and records it (``context={"request": i}``,
   the body is not in the context).
B. The same while the report worker is busy: first one error is recorded whose context holds
   an object whose ``repr`` sleeps 1.5 s (the worker scrubs context values), then A runs.

Modes: ``none`` (the same code without ``record_error``), ``monitor`` (a started monitor,
defaults) and ``monitor-unbudgeted`` (``occurrence_budget_per_second`` unlimited: with the
default budget most repeats of one group are only counted on the caller and never queued,
so only this mode puts all 6,000 reports on the queue). Each measurement runs in a fresh
subprocess (allocator state does not carry over), modes interleaved, 3 rounds, medians.
Peak = max(RSS sampled every 5 ms, VmHWM reset at the baseline, ``ru_maxrss`` when the
scenario raised it); growth = peak - RSS just before the scenario (after imports, monitor
start and a warm-up). Target: monitor - none within 64 MB.

    python bench/bench_pinned_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from exporter.config import HOOKS_OFF

MODES = ("none", "monitor", "monitor-unbudgeted")
TARGET_MB = 64.0
THREADS = 4
QUIET: dict[str, Any] = {**HOOKS_OFF, "serve": False}


class SlowRepr:
    """A context value that keeps the report worker busy while it scrubs it: ``seconds``,
    or (``seconds <= 0``, for the tests) until ``release`` is set."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.release = threading.Event()

    def __repr__(self) -> str:
        if self.seconds > 0:
            time.sleep(self.seconds)
        else:
            self.release.wait(120)
        return f"SlowRepr({self.seconds})"


def _fail(i: int, size: int) -> None:
    raise ValueError(f"request {i} failed with a {size}-byte body")


class PeakSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds; keeps the maximum."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.rss()
        self.samples = 0
        self._done = threading.Event()

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.rss())
            self.samples += 1
            self._done.wait(self.interval)

    def finish(self) -> int:
        self._done.set()
        self.join()
        self.peak = max(self.peak, self.rss())
        return self.peak


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KB on Linux


def _reset_hwm() -> bool:
    """Reset this process's peak-RSS mark (VmHWM; Linux >= 4.0). False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _hwm() is not None
    except OSError:
        return False


def _hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def child(mode: str, scenario: str, requests: int, size: int, busy: float) -> dict[str, Any]:
    """One measurement (run in its own process): JSON-able figures."""
    from exporter import ErrorMonitor  # imported in every mode: the same modules loaded

    monitor: Any = None
    if mode != "none":
        options: dict[str, Any] = dict(QUIET)
        if mode == "monitor-unbudgeted":
            options["occurrence_budget_per_second"] = 10**9
            options["backlog_coalescing"] = False  # every occurrence queued, up to the queue
        monitor = ErrorMonitor(**options).start()

    def request(i: int) -> None:
        body = b"x" * size  # every page written: resident, not a lazily zeroed mapping
        try:
            _fail(i, len(body))
        except ValueError as exc:
            if monitor is not None:
                monitor.record_error(exc, context={"request": i})

    def worker(start: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        for i in range(start, start + requests):
            request(i)

    for i in range(-20, 0):  # warm-up: the group, its labels and caches exist before baseline
        request(i)
    if monitor is not None:
        monitor.flush(timeout=30)
    gc.collect()
    sampler = PeakSampler()
    maxrss_start = _maxrss()
    hwm_reset = _reset_hwm()
    baseline = sampler.rss()
    sampler.start()
    started = time.perf_counter()
    slow = SlowRepr(busy)
    if scenario == "B" and monitor is not None:
        try:
            raise RuntimeError("slow context")
        except RuntimeError as exc:
            monitor.record_error(exc, context={"slow": slow})
    barrier = threading.Barrier(THREADS)
    threads = [
        threading.Thread(target=worker, args=(t * requests, barrier)) for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests_seconds = time.perf_counter() - started
    depth_after_requests = monitor.queue_depth if monitor is not None else 0
    slow.release.set()
    flushed = monitor.flush(timeout=120) if monitor is not None else True
    peak = sampler.finish()
    # ru_maxrss is the process's lifetime peak, and Linux starts a child's at its parent's
    # RSS (kept across fork and exec): it bounds the scenario only if the scenario raised it.
    maxrss = _maxrss()
    hwm = _hwm() if hwm_reset else None  # this mm's peak since the reset: exact
    candidates = [peak]
    if maxrss > maxrss_start:
        candidates.append(maxrss)
    if hwm is not None:
        candidates.append(hwm)
    out: dict[str, Any] = {
        "mode": mode,
        "scenario": scenario,
        "baseline_mb": baseline / 1e6,
        "sampled_growth_mb": (peak - baseline) / 1e6,
        "maxrss_growth_mb": (maxrss - baseline) / 1e6 if maxrss > maxrss_start else None,
        "hwm_growth_mb": (hwm - baseline) / 1e6 if hwm is not None else None,
        "growth_mb": (max(candidates) - baseline) / 1e6,
        "samples": sampler.samples,
        "requests_s": requests_seconds,
        "queue_depth_after_requests": depth_after_requests,
        "flushed": flushed,
    }
    if monitor is not None:
        stats = monitor.get_statistics()
        groups = monitor.list_groups()
        counted = stats["errors_by_type"].get("ValueError", 0) - 20  # minus the warm-up
        group = next(g for g in groups if g["error_type"] == "ValueError")
        out.update(
            counted=counted,
            total_errors=stats["total_errors"],
            groups=stats["unique_errors"],
            detailed=group["occurrence_count"] - group.get("coalesced_occurrences", 0) - 20,
            coalesced=group.get("coalesced_occurrences", 0),
            dropped=stats["dropped_reports"],
        )
        monitor.stop(timeout=5)
    return out


def measure(mode: str, scenario: str, requests: int, size: int, busy: float) -> dict[str, Any]:
    """``child`` in a fresh interpreter."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        mode,
        scenario,
        "--requests",
        str(requests),
        "--size",
        str(size),
        "--busy",
        str(busy),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests per thread")
    parser.add_argument(
        "--median",
        action="store_true",
        help="accepted for bench/run.py; medians are always reported",
    )
    parser.add_argument("--rounds", type=int, default=3, help="subprocesses per mode")
    parser.add_argument("--requests", type=int, default=None, help="requests per thread")
    parser.add_argument("--size", type=int, default=200_000, help="bytes of each request's local")
    parser.add_argument(
        "--busy",
        type=float,
        default=1.5,
        help="seconds the worker is busy in B (0: until the requests are done)",
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    requests = args.requests or (500 if args.quick else 1_500)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], requests, args.size, args.busy)))
        return

    total = THREADS * requests
    print(
        f"peak RSS growth, {THREADS} threads x {requests:,} failing requests holding a "
        f"{args.size // 1000} KB local; fresh subprocess each, median of {args.rounds}"
    )
    worst = 0.0
    for scenario, label in (("A", "A worker free"), ("B", f"B worker busy {args.busy:g} s")):
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                runs[mode].append(measure(mode, scenario, requests, args.size, args.busy))
        median = {mode: statistics.median(r["growth_mb"] for r in runs[mode]) for mode in MODES}
        cells = []
        for mode in MODES:
            each = ", ".join(f"{r['growth_mb']:.0f}" for r in runs[mode])
            cells.append(f"{mode} {median[mode]:+.1f} MB ({each})")
        print(f"  {label}: " + " | ".join(cells))
        for mode in MODES[1:]:
            difference = median[mode] - median["none"]
            worst = max(worst, difference)
            last = runs[mode][-1]
            ratio = median[mode] / median["none"] if median["none"] > 0 else float("inf")
            print(
                f"    {mode:18}: minus none {difference:+.1f} MB ({ratio:.1f}x none) "
                f"target: within {TARGET_MB:.0f} MB -> "
                f"{'ok' if difference <= TARGET_MB else 'OVER'} | counted {last['counted']:,}"
                f"/{total:,}, groups {last['groups']}, queued in detail {last['detailed']:,}, "
                f"coalesced {last['coalesced']:,}, dropped_reports {last['dropped']:,} (counts "
                f"coalesced), queue after "
                f"requests {last['queue_depth_after_requests']:,}, requests took "
                f"{last['requests_s']:.2f} s"
            )
    print(f"  largest monitor-minus-none: {worst:+.1f} MB (target: within {TARGET_MB:.0f} MB)")


if __name__ == "__main__":
    main()
