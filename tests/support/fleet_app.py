"""One process of an app sharing a store, driven line by line on stdin (for the fleet tests).

``python fleet_app.py URL VERSION [APP]``, then one command a line; each answers one
JSON line on stdout:

- ``raise NAME [N]``: N (1) errors of group NAME (one exception type per name), each
  captured with ``record_error``; answers the ids and whether every capture returned
  without raising;
- ``flush``: wait until everything captured is written (the worker's tick follows a flush);
- ``resolve ID``: ``monitor.resolve_group(ID)`` (as the HTTP API does);
- ``metrics``: new / regressed counts by version, drops, store info;
- ``group ID``: the group's summary as this process serves it;
- ``regressions``: the ids the regression callback saw;
- ``quit``: stop the monitor and exit.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from exporter import ErrorMonitor

_TYPES: dict[str, type[RuntimeError]] = {}


def fail(name: str, n: int) -> None:
    """One group per name: its own exception type, raised from this one line."""
    kind = _TYPES.setdefault(name, type(name.title() + "Error", (RuntimeError,), {}))
    raise kind(f"{name}: failure number {n}")


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # what the app would log
    url, version = sys.argv[1], sys.argv[2]
    app = sys.argv[3] if len(sys.argv) > 3 else None
    monitor = ErrorMonitor(
        store_url=url,
        app_version=version,
        app_name=app,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    monitor.start()
    regressions: list[str] = []
    monitor.register_regression_callback(lambda report: regressions.append(report.error_id))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        answer: Any = None
        if words[0] == "raise":
            count = int(words[2]) if len(words) > 2 else 1
            ids, clean, slowest = [], True, 0.0
            for n in range(count):
                started = time.perf_counter()
                try:
                    fail(words[1], n)
                except RuntimeError as exc:
                    try:
                        ids.append(monitor.record_error(exc))
                    except BaseException:
                        clean = False
                slowest = max(slowest, time.perf_counter() - started)
            answer = {"ids": sorted(set(ids)), "clean": clean, "slowest": slowest}
        elif words[0] == "flush":
            answer = monitor.flush(30) and monitor._callbacks.flush(30)
        elif words[0] == "resolve":
            answer = monitor.resolve_group(words[1])
        elif words[0] == "group":
            found = monitor.get_group(words[1])
            answer = None if found is None else found["group"]
        elif words[0] == "regressions":
            answer = regressions
        elif words[0] == "metrics":
            answer = {
                name: _samples(monitor, name)
                for name in (
                    "app_error_groups_new_total",
                    "app_error_groups_regressed_total",
                    "app_error_reports_dropped_total",
                    "app_monitor_store_info",
                    "app_monitor_internal_errors_total",
                )
            }
            from prometheus_client import generate_latest

            answer["text"] = generate_latest(monitor.registry).decode()
        elif words[0] == "quit":
            monitor.stop(5)
            print(json.dumps(True), flush=True)
            return 0
        print(json.dumps(answer, default=str), flush=True)
    monitor.stop(5)
    return 0


def _samples(monitor: ErrorMonitor, name: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in monitor.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[key] = sample.value
    return found


if __name__ == "__main__":
    raise SystemExit(main())
