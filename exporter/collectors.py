"""Gauges computed at scrape time from the monitor's state (no polling thread).

Patterns decay, plugin health and sessions are read when Prometheus asks; psutil values
come from the background sampler's last reading so a scrape never waits for a CPU-percent
interval. The standard ``process_*`` families are left to prometheus_client's own
ProcessCollector.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from .config import MonitorConfig
from .metrics import ErrorMetrics
from .patterns import PatternDetector
from .resources import ResourceSampler
from .sessions import STATUSES, SessionTracker
from .store import ErrorStore

HEALTH_VALUE = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("error-exporter")
    except Exception:
        return "unknown"



class Observed(Protocol):
    """What the scrape-time collectors read of a monitor."""

    config: MonitorConfig
    metrics: ErrorMetrics
    resources: ResourceSampler

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def store(self) -> ErrorStore: ...

    @property
    def patterns(self) -> PatternDetector: ...

    @property
    def sessions(self) -> SessionTracker: ...

    @property
    def queue_depth(self) -> int: ...


class Published(Observed, Protocol):
    """What a multiprocess worker publishes of its monitor: the observed state and more."""

    @property
    def running(self) -> bool: ...

    def note_internal_error(self, exc: BaseException | None = None) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...

class MonitorStateCollector:
    """Patterns, plugin health, uniques, sessions, queue depth and build info."""

    def __init__(self, monitor: Observed) -> None:
        self.monitor = monitor
        self.ns = monitor.config.namespace
        self.version = _version()

    def _name(self, name: str) -> str:
        return f"{self.ns}_{name}" if self.ns else name

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        limit = monitor.metrics.limiter.value
        severity = GaugeMetricFamily(
            self._name("error_pattern_severity"),
            "Pattern severity per error type in the sliding window "
            "(0 none, 1 warning, 2 error, 3 critical).",
            labels=["error_type"],
        )
        occurrences = GaugeMetricFamily(
            self._name("error_pattern_occurrences"),
            "Occurrences of each error type in the current pattern window.",
            labels=["error_type"],
        )
        merged: dict[str, tuple[int, int]] = {}
        for error_type, (count, level) in monitor.patterns.type_levels().items():
            name = limit("error_type", error_type)
            old_count, old_level = merged.get(name, (0, 0))
            merged[name] = (old_count + count, max(old_level, level))
        for name, (count, level) in sorted(merged.items()):
            severity.add_metric([name], level)
            occurrences.add_metric([name], count)
        yield severity
        yield occurrences

        health = GaugeMetricFamily(
            self._name("plugin_health"),
            "Plugin health from its recent errors (0 healthy, 1 degraded, 2 unhealthy).",
            labels=["plugin"],
        )
        worst: dict[str, int] = {}
        for plugin in monitor.store.plugins():
            status, _ = monitor.store.plugin_status(plugin)
            name = limit("plugin", plugin)
            worst[name] = max(worst.get(name, 0), HEALTH_VALUE[status])
        for name, value in sorted(worst.items()):
            health.add_metric([name], value)
        yield health

        yield GaugeMetricFamily(
            self._name("unique_errors"), "Distinct error groups held in memory.",
            value=len(monitor.store.groups),
        )
        sessions = monitor.sessions
        sessions.expire()
        yield GaugeMetricFamily(
            self._name("sessions_active"), "Sessions currently open.", value=sessions.active_count
        )
        ended = CounterMetricFamily(
            self._name("sessions"),
            "Ended sessions by status (exited, errored, crashed, abnormal).",
            labels=["status"],
        )
        for status in STATUSES:
            ended.add_metric([status], sessions.ended[status])
        yield ended
        yield GaugeMetricFamily(
            self._name("error_queue_depth"), "Error reports waiting for the worker.",
            value=monitor.queue_depth,
        )
        info = InfoMetricFamily(self._name("monitor"), "error-exporter build information.")
        info.add_metric([], {"version": self.version,
                             "python_version": platform.python_version()})
        yield info


class ResourceCollector:
    """psutil readings from the background sampler."""

    def __init__(self, monitor: Observed) -> None:
        self.monitor = monitor
        self.ns = monitor.config.namespace

    def _name(self, name: str) -> str:
        return f"{self.ns}_{name}" if self.ns else name

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        if not monitor.config.enable_resource_monitoring:
            return
        snap = monitor.resources.latest
        if snap is None:
            return
        totals = monitor.resources.totals
        gauges = (
            ("system_cpu_utilization_ratio", "System-wide CPU utilization (0..1).",
             snap.cpu_percent / 100.0),
            ("system_memory_utilization_ratio", "System memory in use (0..1).",
             snap.memory_percent / 100.0),
            ("system_memory_used_bytes", "System memory used.", totals.memory_used_bytes),
            ("system_memory_available_bytes", "System memory available.",
             totals.memory_available_bytes),
            ("system_processes", "Processes running on the system.", snap.process_count),
            ("process_threads", "Threads in this process.", snap.thread_count),
            ("process_cpu_utilization_ratio",
             "CPU used by this process, as a ratio of one core.", snap.process_cpu_percent / 100.0),
            ("process_open_files", "Regular files this process has open.", snap.process_open_files),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(self._name(name), doc, value=value)
        counters = (
            ("system_disk_read_bytes", "Bytes read from disks (system-wide).",
             totals.disk_read_bytes),
            ("system_disk_written_bytes", "Bytes written to disks (system-wide).",
             totals.disk_written_bytes),
            ("system_network_sent_bytes", "Bytes sent on all interfaces.",
             totals.network_sent_bytes),
            ("system_network_received_bytes", "Bytes received on all interfaces.",
             totals.network_received_bytes),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(self._name(name), doc, value=value)


def register_collectors(monitor: Observed) -> None:
    monitor.registry.register(MonitorStateCollector(monitor))
    monitor.registry.register(ResourceCollector(monitor))

