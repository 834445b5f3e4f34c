"""What copying an occurrence's context costs the caller (the report shows it as it was).

Each occurrence queued in detail has its context and metadata copied on the caller's thread
(``exporter.capture.context_copy``), within the scrubber's caps; a coalesced repeat copies
nothing. This
prints, against a 4-label ``Counter.labels(...).inc()`` measured in the same run (the
machine is noisy), the median over interleaved rounds of:

- the copy alone, for no context, a small context and a large one (at the default caps:
  100 items per container, depth 6);
- ``record_error`` with each context, every occurrence queued in detail, with the worker
  paused (it does not compete for the GIL while the caller is timed);
- the worker's time per occurrence to drain them (its scrubber walks the copy).

    python bench/bench_context.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench_capture import QUIET as HOOKS_OFF  # run as a script: bench/ is on the path
from prometheus_client import CollectorRegistry, Counter

from exporter import ErrorMonitor

QUIET = {  # every occurrence queued in detail: each one's context is copied
    **HOOKS_OFF,
    "backlog_coalescing": False,
    "occurrence_budget_per_second": 10**9,
    "queue_size": 1_000_000,
    "max_records": 1_000_000,
}


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int
    price: float


def small_context() -> dict[str, Any]:
    return {"order_id": 1234, "user": "u-42", "items": [1, 2, 3], "retry": False}


def large_context() -> dict[str, Any]:
    return {
        "order": {
            "id": 1234,
            "lines": [Line(f"sku-{i}", i, 9.99) for i in range(50)],
            "address": {"street": "Main St 1", "city": "Springfield", "zip": "12345"},
        },
        "headers": [(f"x-header-{i}", "v" * 40) for i in range(40)],
        "tags": {f"tag{i}" for i in range(30)},
        "history": [{"step": i, "ok": i % 3 != 0, "note": "n" * 20} for i in range(100)],
    }


CONTEXTS: dict[str, Callable[[], Any]] = {
    "none": lambda: None,
    "small": small_context,
    "large": large_context,
}


def timed(n: int, action: Callable[[], object]) -> float:
    """Seconds per call of ``action`` over ``n`` calls (gc off while timing)."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            action()
        return (time.perf_counter() - start) / n
    finally:
        gc.enable()


def raised_errors(n: int) -> list[BaseException]:
    """``n`` exceptions raised at one site (a fresh object each: one is recorded once)."""
    out: list[BaseException] = []
    for _ in range(n):
        try:
            raise ValueError("checkout failed")
        except ValueError as exc:
            out.append(exc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    args = parser.parse_args()
    n, rounds = (1_000, 3) if args.quick else (5_000, 7)

    counter = Counter("bench", "baseline", ["a", "b", "c", "d"], registry=CollectorRegistry())
    results: dict[str, list[float]] = {"baseline": []}
    for _ in range(rounds):
        results["baseline"].append(
            timed(n, lambda: counter.labels("ValueError", "api", "", "medium").inc())
        )
        for name, make in CONTEXTS.items():
            context = make()
            monitor = ErrorMonitor(**QUIET)  # type: ignore[arg-type]
            snapshot = monitor.scrubber.snapshot
            results.setdefault(f"copy {name}", []).append(
                timed(n, lambda c=context, s=snapshot: s(c))
            )  # type: ignore[misc]
            errors = iter(raised_errors(n))
            # the worker is not started: it does not compete for the GIL while timed
            results.setdefault(f"record_error {name}", []).append(
                timed(
                    n,
                    lambda c=context, m=monitor, e=errors: m.record_error(  # type: ignore[misc]
                        next(e), component="api", context=c
                    ),
                )
            )
            start = time.perf_counter()
            monitor.start()
            monitor.flush(600)
            results.setdefault(f"worker {name}", []).append((time.perf_counter() - start) / n)
            monitor.stop()

    base = statistics.median(results.pop("baseline"))
    print(f"baseline Counter.labels(4).inc(): {base * 1e6:.2f} us (n={n}, {rounds} rounds)")
    print(f"{'case':<22}{'us':>9}{'x baseline':>12}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:<22}{median * 1e6:>9.2f}{median / base:>12.2f}")


if __name__ == "__main__":
    main()
