"""The scrape-time metric families, defined once: name, help, type, labels, multiprocess
mode and how each value is read from a monitor.

Three consumers use this table: the collector of a single process (``metrics/collectors.py``),
the per-worker publisher of multiprocess mode (``multiprocess/publisher.py``) and the
terminal dashboard (``cli/watch.py``, which labels and formats the resource gauges). The
capture-path families (``app_errors_total`` and friends) live in ``metrics/capture_path.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from exporter.config import MonitorConfig
from exporter.metrics.capture_path import ERROR_LABELS, ErrorMetrics
from exporter.metrics.resources import ResourceSampler
from exporter.patterns import PatternDetector
from exporter.sessions import STATUSES, SessionTracker
from exporter.store.memory import ErrorStore

HEALTH_VALUE = {"healthy": 0, "degraded": 1, "unhealthy": 2}

Sample = tuple[tuple[str, ...], float]  # label values, value

__all__ = [
    "ERROR_LABELS",
    "FAMILIES",
    "HEALTH_VALUE",
    "RESOURCES",
    "STATE",
    "Family",
    "Observed",
    "metric_name",
]


class Observed(Protocol):
    """What the scrape-time families read of a monitor."""

    config: MonitorConfig
    metrics: ErrorMetrics
    resources: ResourceSampler

    @property
    def store(self) -> ErrorStore: ...

    @property
    def patterns(self) -> PatternDetector: ...

    @property
    def sessions(self) -> SessionTracker: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def store_backend(self) -> tuple[str, str]: ...


@dataclass(frozen=True)
class Family:
    """One scrape-time family.

    ``kind`` is ``gauge`` or ``counter`` (a counter's name here has no ``_total``);
    ``mode`` is the prometheus_client multiprocess mode its per-worker gauge uses;
    ``resource`` families exist only while resource monitoring has a reading;
    ``label``/``unit`` say how ``watch`` shows a resource family (empty: not shown);
    ``published``: written by each worker in multiprocess mode (else the serving side
    computes it).
    """

    name: str
    help: str
    kind: str
    read: Callable[[Observed], Iterable[Sample]]
    labels: tuple[str, ...] = ()
    mode: str = "livemax"
    resource: bool = False
    label: str = ""
    unit: str = ""
    published: bool = True


def _pattern_levels(monitor: Observed) -> dict[str, tuple[int, int]]:
    """Per error type label value (capped): (window count, severity level)."""
    limit = monitor.metrics.limiter.value
    merged: dict[str, tuple[int, int]] = {}
    for error_type, (count, level) in monitor.patterns.type_levels().items():
        name = limit("error_type", error_type)
        old_count, old_level = merged.get(name, (0, 0))
        merged[name] = (old_count + count, max(old_level, level))
    return dict(sorted(merged.items()))


def _plugin_health(monitor: Observed) -> Iterable[Sample]:
    limit = monitor.metrics.limiter.value
    worst: dict[str, int] = {}
    for plugin in monitor.store.plugins():
        status, _ = monitor.store.plugin_status(plugin)
        name = limit("plugin", plugin)
        worst[name] = max(worst.get(name, 0), HEALTH_VALUE[status])
    return [((name,), float(value)) for name, value in sorted(worst.items())]


def _one(value: Callable[[Observed], float]) -> Callable[[Observed], Iterable[Sample]]:
    return lambda monitor: [((), float(value(monitor)))]


def _snapshot(attr: str, scale: float = 1.0) -> Callable[[Observed], Iterable[Sample]]:
    def read(monitor: Observed) -> Iterable[Sample]:
        snap = monitor.resources.latest
        return [] if snap is None else [((), float(getattr(snap, attr)) * scale)]

    return read


def _totals(attr: str) -> Callable[[Observed], Iterable[Sample]]:
    def read(monitor: Observed) -> Iterable[Sample]:
        if monitor.resources.latest is None:
            return []
        return [((), float(getattr(monitor.resources.totals, attr)))]

    return read


def _sessions_active(monitor: Observed) -> float:
    monitor.sessions.expire()
    return monitor.sessions.active_count


STATE: tuple[Family, ...] = (
    Family(
        "error_pattern_severity",
        "Pattern severity per error type in the sliding window "
        "(0 none, 1 warning, 2 error, 3 critical).",
        "gauge",
        lambda m: [((k,), float(v[1])) for k, v in _pattern_levels(m).items()],
        ("error_type",),
    ),
    Family(
        "error_pattern_occurrences",
        "Occurrences of each error type in the current pattern window.",
        "gauge",
        lambda m: [((k,), float(v[0])) for k, v in _pattern_levels(m).items()],
        ("error_type",),
        "livesum",
    ),
    Family(
        "plugin_health",
        "Plugin health from its recent errors (0 healthy, 1 degraded, 2 unhealthy).",
        "gauge",
        _plugin_health,
        ("plugin",),
    ),
    Family(
        "unique_errors",
        "Distinct error groups held in memory.",
        "gauge",
        _one(lambda m: len(m.store.groups)),
        published=False,
    ),
    Family(
        "sessions_active",
        "Sessions currently open.",
        "gauge",
        _one(_sessions_active),
        mode="livesum",
    ),
    Family(
        "sessions",
        "Ended sessions by status (exited, errored, crashed, abnormal).",
        "counter",
        lambda m: [((status,), float(m.sessions.ended[status])) for status in STATUSES],
        ("status",),
    ),
    Family(
        "error_queue_depth",
        "Error reports waiting for the worker.",
        "gauge",
        _one(lambda m: m.queue_depth),
        mode="livesum",
    ),
    Family(
        "monitor_store_info",
        "The store backend (memory, file, multiprocess, postgresql) and how far its "
        "release health reaches (process: new / regressed restart with the process; "
        "host; fleet: every process of the app).",
        "gauge",
        lambda m: [(m.store_backend, 1.0)],
        ("backend", "release_scope"),
    ),
)

RESOURCES: tuple[Family, ...] = (
    Family(
        "system_cpu_utilization_ratio",
        "System-wide CPU utilization (0..1).",
        "gauge",
        _snapshot("cpu_percent", 0.01),
        resource=True,
        label="CPU",
        unit="ratio",
    ),
    Family(
        "system_memory_utilization_ratio",
        "System memory in use (0..1).",
        "gauge",
        _snapshot("memory_percent", 0.01),
        resource=True,
        label="Memory",
        unit="ratio",
    ),
    Family(
        "system_memory_used_bytes",
        "System memory used.",
        "gauge",
        _totals("memory_used_bytes"),
        resource=True,
        label="Memory used",
        unit="bytes",
    ),
    Family(
        "system_memory_available_bytes",
        "System memory available.",
        "gauge",
        _totals("memory_available_bytes"),
        resource=True,
        label="Memory free",
        unit="bytes",
    ),
    Family(
        "system_processes",
        "Processes running on the system.",
        "gauge",
        _snapshot("process_count"),
        resource=True,
        label="Processes",
        unit="count",
    ),
    Family(
        "process_threads",
        "Threads in this process.",
        "gauge",
        _snapshot("thread_count"),
        mode="liveall",
        resource=True,
        label="Threads",
        unit="count",
    ),
    Family(
        "process_cpu_utilization_ratio",
        "CPU used by this process, as a ratio of one core.",
        "gauge",
        _snapshot("process_cpu_percent", 0.01),
        mode="liveall",
        resource=True,
        label="Process CPU",
        unit="ratio",
    ),
    Family(
        "process_open_files",
        "Regular files this process has open.",
        "gauge",
        _snapshot("process_open_files"),
        mode="liveall",
        resource=True,
        label="Open files",
        unit="count",
    ),
    Family(
        "system_disk_read_bytes",
        "Bytes read from disks (system-wide).",
        "counter",
        _totals("disk_read_bytes"),
        resource=True,
    ),
    Family(
        "system_disk_written_bytes",
        "Bytes written to disks (system-wide).",
        "counter",
        _totals("disk_written_bytes"),
        resource=True,
    ),
    Family(
        "system_network_sent_bytes",
        "Bytes sent on all interfaces.",
        "counter",
        _totals("network_sent_bytes"),
        resource=True,
    ),
    Family(
        "system_network_received_bytes",
        "Bytes received on all interfaces.",
        "counter",
        _totals("network_received_bytes"),
        resource=True,
    ),
)

FAMILIES: tuple[Family, ...] = STATE + RESOURCES


def metric_name(namespace: str, name: str) -> str:
    return f"{namespace}_{name}" if namespace else name
