"""The prometheus_client objects of the capture-path metrics: the registry and the families.

Imported only when a metric object is first needed (a scrape or a read on the app's thread,
a start whose configuration has the monitor's threads read them, the worker's tick once
prometheus_client is fully imported by someone else): importing prometheus_client runs
its package ``__init__``, which loads its HTTP exposition (http.server, wsgiref, urllib,
ssl...) and cost about 40 ms of a monitor's start-up. :mod:`.capture_path` counts without
these objects until then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

_CREATED_TYPES = frozenset(("counter", "histogram", "summary"))


class MonitorRegistry(CollectorRegistry):
    """A registry that leaves out ``_created`` series unless asked for.

    prometheus_client can only switch them off process-wide; doing it per registry
    keeps the host app's own metrics untouched.
    """

    def __init__(self, include_created: bool = False) -> None:
        super().__init__(auto_describe=True)
        self.include_created = include_created
        self.before_collect: list[Callable[[], None]] = []

    def collect(self) -> Iterable[Metric]:
        for hook in self.before_collect:
            hook()
        for metric in super().collect():
            samples = metric.samples
            # a family with _created has it last (each child emits it last): O(1) check
            if (
                not self.include_created
                and metric.type in _CREATED_TYPES
                and samples
                and samples[-1].name.endswith("_created")
            ):
                metric.samples = [s for s in samples if not s.name.endswith("_created")]
            yield metric


def _without_created(samples: Iterable[Sample]) -> Iterable[Sample]:
    samples = tuple(samples)
    return samples[:-1] if samples and samples[-1].name == "_created" else samples


class _QuietCounter(Counter):
    """A Counter whose children leave out ``_created`` (for MonitorRegistry).

    Dropping it per child is O(1); letting prometheus_client build the labelled sample and
    filtering it out at scrape time cost about 10% of a /metrics render with 10,000 series.
    """

    def _child_samples(self) -> Iterable[Sample]:
        return _without_created(super()._child_samples())


class _QuietHistogram(Histogram):
    """A Histogram whose children leave out ``_created`` (see _QuietCounter)."""

    def _child_samples(self) -> Iterable[Sample]:
        return _without_created(super()._child_samples())


class Families:
    """The capture-path families of one monitor, registered in ``registry``.

    The error labels and the buckets are :mod:`.capture_path`'s (named there, once: this
    module is imported by it, late, and does not import it back)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str,
        error_labels: Sequence[str],
        operation_buckets: Sequence[float],
        recovery_buckets: Sequence[float],
    ) -> None:
        ns = namespace
        quiet = not getattr(registry, "include_created", True)
        counter: type[Counter] = _QuietCounter if quiet else Counter
        histogram: type[Histogram] = _QuietHistogram if quiet else Histogram
        self.errors = counter(
            "errors",
            "Errors captured, by type, component, plugin and severity.",
            error_labels,
            namespace=ns,
            registry=registry,
        )
        self.recoveries = counter(
            "error_recoveries",
            "Recovery attempts after an error, by result.",
            ["component", "plugin", "result"],
            namespace=ns,
            registry=registry,
        )
        self.recovery_duration = histogram(
            "error_recovery_duration_seconds",
            "Time from an error to its recovery.",
            ["component", "plugin"],
            namespace=ns,
            registry=registry,
            buckets=recovery_buckets,
        )
        self.operation_duration = histogram(
            "operation_duration_seconds",
            "Duration of operations wrapped by handle_errors or capture(), by outcome.",
            ["component", "plugin", "operation", "outcome"],
            namespace=ns,
            registry=registry,
            buckets=operation_buckets,
        )
        # background jobs (integrations/celery.py, rq.py): a retry is not an error
        self.task_retries = counter(
            "task_retries",
            "Task and job retries, by task and the error that caused them.",
            ["component", "operation", "error_type"],
            namespace=ns,
            registry=registry,
        )
        self.dropped = counter(
            "error_reports_dropped",
            "Detailed reports dropped (counts stay exact), by reason.",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        self.internal_errors = counter(
            "monitor_internal_errors",
            "Failures inside the monitor itself (never re-captured).",
            namespace=ns,
            registry=registry,
        )
        self.label_overflow = counter(
            "label_values_overflow",
            "Label values replaced by 'other' because the label reached its value limit.",
            ["label"],
            namespace=ns,
            registry=registry,
        )
        # release health (release.py): groups first seen, and resolved groups seen again
        self.groups_new = counter(
            "error_groups_new",
            "Error groups first seen, by the app version that saw them "
            "first (unknown: no app_version set).",
            ["app_version"],
            namespace=ns,
            registry=registry,
        )
        self.groups_regressed = counter(
            "error_groups_regressed",
            "Resolved error groups seen again, by the app version that saw them again.",
            ["app_version"],
            namespace=ns,
            registry=registry,
        )

    def clear(self) -> None:
        """Every family back to no series (and the unlabelled counter to 0)."""
        for family in (
            self.errors,
            self.recoveries,
            self.recovery_duration,
            self.operation_duration,
            self.task_retries,
            self.dropped,
            self.label_overflow,
            self.groups_new,
            self.groups_regressed,
        ):
            family.clear()
        self.internal_errors._value.set(0)  # no public reset for an unlabelled counter
