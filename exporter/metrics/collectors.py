"""The scrape-time families (``metrics/families.py``) of one process, read when Prometheus asks.

Patterns decay, plugin health and sessions are read at scrape time (no polling thread);
psutil values come from the background sampler's last reading so a scrape never waits for
a CPU-percent interval. The standard ``process_*`` families are left to prometheus_client's
own ProcessCollector.

Imported with the monitor's registry, when a metric object is first needed (see
``ErrorMonitor._own_registry``), not with the monitor.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.metrics.families import FAMILIES, HEALTH_VALUE, Observed, metric_name
from exporter.release import monitor_version

__all__ = [
    "HEALTH_VALUE",
    "Observed",
    "Published",
    "StateCollector",
]


class Published(Observed, Protocol):
    """What a multiprocess worker publishes of its monitor: the observed state and more."""

    @property
    def running(self) -> bool: ...

    def note_internal_error(self, exc: BaseException | None = None) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...


class StateCollector:
    """Every family of ``families.FAMILIES``, read from the monitor at scrape time."""

    def __init__(self, monitor: Observed) -> None:
        self.monitor = monitor
        self.ns = monitor.config.namespace
        self._version: str | None = None  # read at the first scrape, not at start

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = monitor_version()
        return self._version

    def describe(self) -> Iterator[Metric]:
        """The families' names, for the registry's check of duplicates when it registers
        the collector (without this it would read every family once, at the start)."""
        for family in FAMILIES:
            name = metric_name(self.ns, family.name)
            if family.kind == "counter":
                yield CounterMetricFamily(name, family.help, labels=family.labels)
            else:
                yield GaugeMetricFamily(name, family.help, labels=family.labels)
        yield InfoMetricFamily(metric_name(self.ns, "monitor"), "error-exporter build information.")

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        resources = (
            monitor.config.enable_resource_monitoring and monitor.resources.latest is not None
        )
        for family in FAMILIES:
            if family.resource and not resources:
                continue
            name = metric_name(self.ns, family.name)
            metric: Metric
            if family.kind == "counter":
                metric = CounterMetricFamily(name, family.help, labels=family.labels)
            else:
                metric = GaugeMetricFamily(name, family.help, labels=family.labels)
            for labels, value in family.read(monitor):
                metric.add_metric(list(labels), value)
            yield metric
        info = InfoMetricFamily(
            metric_name(self.ns, "monitor"), "error-exporter build information."
        )
        info.add_metric([], {"version": self.version, "python_version": platform.python_version()})
        yield info
