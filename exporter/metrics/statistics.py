"""``ErrorMonitoringService``'s statistics shape, computed from ``app_errors_total`` samples.

One computation for the single-process monitor and the multiprocess view, so the numbers
of ``/api/v1/statistics`` and the metrics can never disagree.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from exporter.classify import per_hour
from exporter.config import SEVERITIES

BREAKDOWN = (
    ("severity", "severity"),
    ("component", "component"),
    ("type", "error_type"),
    ("plugin", "plugin"),
)
ErrorTotals = Iterable[tuple[Mapping[str, str], float]]


def breakdown(totals: ErrorTotals) -> tuple[int, dict[str, dict[str, int]]]:
    """The total and the counts by severity, component, type and plugin."""
    by: dict[str, dict[str, int]] = {key: {} for key, _ in BREAKDOWN}
    total = 0
    for labels, value in totals:
        count = int(value)
        total += count
        for key, label in BREAKDOWN:
            name = labels.get(label, "")
            by[key][name] = by[key].get(name, 0) + count
    return total, by


def statistics(
    totals: ErrorTotals, recoveries: Mapping[str, float], started: float, **extra: Any
) -> dict[str, Any]:
    """The statistics document; ``extra`` keys (uniques, drops, sessions...) are appended."""
    total, by = breakdown(totals)
    attempts = recoveries["success"] + recoveries["failure"]

    return {
        "total_errors": total,
        "errors_by_severity": {s: by["severity"].get(s, 0) for s in reversed(SEVERITIES)},
        "errors_by_component": by["component"],
        "errors_by_type": by["type"],
        "errors_by_plugin": {k: v for k, v in by["plugin"].items() if k},  # no plugin: not one
        "recovery_success_rate": (recoveries["success"] / attempts) if attempts else None,
        "recovery_attempts": int(attempts),
        "average_errors_per_hour": round(per_hour(total, time.time() - started), 2),
        **extra,
    }
