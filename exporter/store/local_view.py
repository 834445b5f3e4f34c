"""The in-process backend of the read interface: this process's store, counters and sessions.

Every read first *settles*: it waits (bounded) until the reports queued before it are in
the store, so a read right after ``record_error`` sees that error. A read made of other
reads (the export) settles once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exporter.classify import per_hour
from exporter.config import MonitorConfig
from exporter.metrics.capture_path import ErrorMetrics
from exporter.metrics.resources import ResourceSampler
from exporter.metrics.statistics import breakdown, statistics
from exporter.pipeline.background_queue import BackgroundQueue
from exporter.pipeline.ingest import Pipeline
from exporter.store.json_export import export_document
from exporter.store.memory import ErrorStore, ExportFilter
from exporter.store.settled import ReadOnce

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

READ_SETTLE_SECONDS = 2.0  # the longest a read waits for reports queued before it


class LocalView:
    """Reads of one process's monitor (an :class:`~exporter.store.read_protocol.ErrorReader`)."""

    def __init__(
        self,
        config: MonitorConfig,
        registry: Callable[[], CollectorRegistry],
        pipeline: Pipeline,
        metrics: ErrorMetrics,
        resources: ResourceSampler,
        reports: BackgroundQueue,
        is_running: Callable[[], bool],
        note_internal_error: Callable[[BaseException | None], None],
    ) -> None:
        self.config = config
        self._registry = registry
        self._pipeline = pipeline
        self._metrics = metrics
        self._resources = resources
        self._reports = reports
        self._is_running = is_running
        self._note = note_internal_error
        self._reading = ReadOnce()
        # a shared store: resolve a group this process has not seen, in the database
        self.resolve_elsewhere: Callable[[str, str | None], dict[str, Any] | None] | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """The monitor's registry: made at the first read of it, not before (``registry``
        is the monitor's maker, see ``ErrorMonitor._own_registry``)."""
        return self._registry()

    @property
    def store(self) -> ErrorStore:
        return self._pipeline.store

    @property
    def running(self) -> bool:
        return self._is_running()

    @property
    def queue_depth(self) -> int:
        return self._reports.depth

    def note_internal_error(self, exc: BaseException | None = None) -> None:
        self._note(exc)

    def _settle(self) -> None:
        if self._reading.active:
            return
        if self._reports.alive:  # also covers the item the worker has popped but not stored
            self._reports.flush(READ_SETTLE_SECONDS)

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Several reads that should see the same moment: settle once, then read."""
        return self._reading.scope(self._settle)

    def get_statistics(self) -> dict[str, Any]:
        """``ErrorMonitoringService``'s statistics shape, from the exact counters."""
        self._settle()
        store, metrics = self.store, self._metrics
        latest = self._resources.latest
        return statistics(
            metrics.error_totals(),
            metrics.recovery_totals(),
            store.started,
            unique_errors=len(store.groups),
            dropped_reports=int(metrics.dropped_total()),
            queue_depth=self.queue_depth,
            sessions=self._pipeline.sessions.summary(),
            resources=latest.to_dict() if latest else None,
        )

    def get_error_analysis(self, top: int = 10) -> dict[str, Any]:
        """``ErrorMonitoringService``'s analysis shape: statistics, top errors, sessions."""
        with self.reading():
            stats = self.get_statistics()
        sessions, patterns = self._pipeline.sessions, self._pipeline.patterns
        groups = self.store.group_list("count", top)
        return {
            "statistics": stats,
            "top_errors": [
                {
                    "error_id": g.report.error_id,
                    "occurrence_count": g.report.occurrence_count,
                    "report": {**g.report.to_dict(), **g.release_state()},
                }
                for g in groups
            ],
            "total_unique_errors": len(self.store.groups),
            "session_count": sessions.active_count + sum(sessions.ended.values()),
            "patterns": [p.to_dict() for p in patterns.active()],
            "sessions": sessions.summary(),
            "recovery": {
                "success_rate": stats["recovery_success_rate"],
                "attempts": stats["recovery_attempts"],
                **{k: int(v) for k, v in self._metrics.recovery_totals().items()},
            },
        }

    def get_error_summary(self) -> dict[str, Any]:
        """``ErrorAggregator``'s summary shape (total_errors is the exact count)."""
        self._settle()
        store = self.store
        stats_total, by = breakdown(self._metrics.error_totals())
        with store.lock:
            plugin_counts = {k: dict(v) for k, v in store.plugin_counts.items()}
        return {
            "session_start": store.session_start_iso(),
            "total_errors": stats_total,
            "error_rate_per_hour": round(per_hour(stats_total, time.time() - store.started), 2),
            "error_counts_by_type": by["type"],
            "plugin_error_counts": plugin_counts,
            "active_patterns": {
                p.error_type: p.to_dict() for p in self._pipeline.patterns.active("type")
            },
            "recent_errors": [r.to_dict() for r in store.recent_records(20)],
        }

    def get_plugin_health(self, plugin_id: str) -> dict[str, Any]:
        """``ErrorAggregator``'s plugin health shape."""
        self._settle()
        return self.store.plugin_health(plugin_id)

    def get_patterns(self) -> list[dict[str, Any]]:
        self._settle()
        return [p.to_dict() for p in self._pipeline.patterns.active()]

    def list_groups(
        self, sort: str = "count", limit: int | None = None, new_in: str | None = None
    ) -> list[dict[str, Any]]:
        self._settle()
        return [g.summary() for g in self.store.group_list(sort, limit, new_in)]

    def get_group(self, error_id: str) -> dict[str, Any] | None:
        """One group: summary, latest occurrence's full report and recent occurrences."""
        self._settle()
        return self.store.group_detail(error_id)

    def resolve_group(self, error_id: str) -> dict[str, Any] | None:
        """Resolved in the version running now; settled first so the summary is current."""
        self._settle()
        version = self._pipeline.builder.app_version
        group = self.store.resolve(error_id, version)
        if group is None:
            fallback = self.resolve_elsewhere
            return None if fallback is None else fallback(error_id, version)
        with self.store.lock:
            return group.summary()

    def clear_old_records(self, max_age_hours: float = 24) -> int:
        """Drop records (and groups) older than ``max_age_hours``; returns records cleared."""
        self._settle()
        return self.store.clear_older_than(time.time() - max_age_hours * 3600.0)

    def export_data(self, flt: ExportFilter | None = None, **filters: Any) -> dict[str, Any]:
        """``ErrorAggregator``'s export shape plus statistics, analysis and a paging cursor."""
        flt = flt or ExportFilter(**filters)
        with self.reading():
            return export_document(self, self.store.iter_records(flt), flt.limit, flt.cursor)
