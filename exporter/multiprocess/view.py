"""The fleet view of one multiprocess directory: what any worker or the sidecar serves.

``SharedView`` answers the monitor's read API (statistics, analysis, summary, groups, patterns,
plugin health, export, resolve) from the merged prometheus_client files (exact counts) and
the directory's SQLite file (groups with their summed counts and release state, records: the
durable schema), in the same JSON shapes as a single-process monitor (the same
``ErrorGroup.summary``). ``FleetCollector``
is the /metrics side: prometheus_client's MultiProcessCollector plus what only the shared
store knows (distinct groups, the latest ``error_id`` of each app_errors_total series as its
exemplar) and the build info.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Exemplar

from exporter.classify import per_hour
from exporter.config import MonitorConfig
from exporter.metrics.capture_path import exemplar_labels
from exporter.metrics.collectors import HEALTH_VALUE, Published
from exporter.metrics.registry import MonitorRegistry
from exporter.metrics.statistics import statistics
from exporter.model import ErrorRecord, iso_time
from exporter.multiprocess.publisher import PUBLISH_INTERVAL, SYSTEM_COUNTERS, Publisher
from exporter.multiprocess.sqlite_store import SharedStore
from exporter.release import monitor_version
from exporter.store.json_export import export_document
from exporter.store.memory import ExportFilter
from exporter.store.read_protocol import ErrorReader, RecordSource
from exporter.store.settled import ReadOnce

log = logging.getLogger("exporter.multiprocess")
LIVE_SECONDS = 10 * PUBLISH_INTERVAL  # a worker that has not published for this long is gone
SETTLE_TIMEOUT = 2.0  # reads wait at most this long for workers to store queued reports
# ... and stop waiting when nothing progressed for this long (longer than a worker's
# tick plus its idle wait: a worker writes its batch at its next tick)
STALL_SECONDS = 0.75
_PATTERN_LEVEL = {"none": 0, "warning": 1, "error": 2, "critical": 3}
_LEVEL_PATTERN = {v: k for k, v in _PATTERN_LEVEL.items()}
_HEALTH_NAME = {v: k for k, v in HEALTH_VALUE.items()}


Resolve = Callable[[str, str | None], dict[str, Any] | None]  # (error_id, version) -> summary


class SharedView:
    """The monitor read API over every process of one multiprocess directory."""

    def __init__(
        self,
        directory: str | Path,
        config: MonitorConfig | None = None,
        shared: SharedStore | None = None,
        local: Published | None = None,
        groups: GroupSource | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.config = config or MonitorConfig()
        # the sidecar (no local monitor) reads the app the workers recorded
        self.shared = shared or SharedStore(
            self.directory, self.config.store_app if local else None
        )
        self.local = local
        self.namespace = self.config.namespace
        if local is None:  # the sidecar: use the workers' namespace if they recorded one
            with contextlib.suppress(Exception):
                self.namespace = self.shared.meta("namespace") or self.namespace
        self.registry = MonitorRegistry(include_created=False)
        # what /metrics says of the groups: the file's, or (PostgreSQL) the fleet's
        source = groups if groups is not None else self.shared
        self.registry.register(FleetCollector(self.directory, self.namespace, source))
        self._records = SharedRecords(self.shared)
        self.publisher: Publisher | None = None
        # PostgreSQL mode: resolves a group this worker does not hold (its writer's)
        self.resolve_elsewhere: Resolve | None = None
        self._stalled_gap: int | None = None
        self._reading = ReadOnce()

    @property
    def store(self) -> RecordSource:
        """The records the routes stream: every worker's, from the directory's file."""
        return self._records

    @property
    def reader(self) -> ErrorReader:
        """What answers the read API: this view (the file holds every worker's groups)."""
        return self

    # -- worker lifecycle (called by the monitor) -----------------------------------------
    def start(self) -> None:
        if self.publisher is not None:
            self.publisher.start()

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()

    def after_fork_in_child(self, running: bool) -> None:
        self.shared.close()
        if self.publisher is not None:
            self.publisher.after_fork_in_child()
            if running:
                self.publisher.start()

    # -- what the HTTP routes read besides the API methods --------------------------------
    @property
    def running(self) -> bool:
        if self.local is not None:
            return bool(self.local.running)
        return any(w.get("running") for w in self._workers())

    @property
    def queue_depth(self) -> int:
        return sum(int(w.get("queue_depth", 0)) for w in self._workers())

    def note_internal_error(self, exc: BaseException | None = None) -> None:
        if self.local is not None:
            self.local.note_internal_error(exc)
        else:
            log.warning("error-exporter sidecar failure: %r", exc)

    def workers(self) -> list[dict[str, Any]]:
        """The live workers' published state (pid, hostname, queue depth, ...)."""
        return self._workers()

    # -- settling ----------------------------------------------------------------------------
    def settle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait until every error counted by any worker is in the shared store (bounded).

        Counted errors come from the merged counters (written synchronously by the capture
        path), stored ones from the store's sequence; reports dropped on a full queue are
        subtracted. A gap that stops shrinking (a worker killed with reports queued) ends the
        wait early and is remembered, so later reads do not wait for it again.
        """
        if self._reading.active:
            return True  # inside reading(): settled once already
        if self.local is not None:
            with contextlib.suppress(Exception):
                self.local.flush(timeout=timeout)
        deadline = time.monotonic() + timeout
        last_gap: int | None = None
        changed = time.monotonic()
        while True:
            try:
                counters = self._counters()
                gap = int(
                    _total(counters, f"{self.namespace}_errors")
                    - _total(
                        counters, f"{self.namespace}_error_reports_dropped", reason="queue_full"
                    )
                    - self.shared.processed()
                )
            except Exception:
                return False
            if gap <= 0 or gap == self._stalled_gap:
                return gap <= 0
            now = time.monotonic()
            if gap != last_gap:
                last_gap, changed = gap, now
            if now - changed > STALL_SECONDS or now > deadline:
                self._stalled_gap = gap
                return False
            time.sleep(0.01)

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Several reads that should see the same moment: settle once, then read."""
        return self._reading.scope(self.settle)

    # -- the read API (same shapes as ErrorMonitor) ------------------------------------------
    def get_statistics(self) -> dict[str, Any]:
        self.settle()
        counters = self._counters()
        workers = self._workers()
        return statistics(
            _samples(counters, f"{self.namespace}_errors"),
            self._recoveries(counters),
            self.shared.started(),
            unique_errors=self.shared.group_count(),
            dropped_reports=int(_total(counters, f"{self.namespace}_error_reports_dropped")),
            queue_depth=sum(int(w.get("queue_depth", 0)) for w in workers),
            sessions=self._sessions(counters, workers),
            resources=_latest_resources(workers),
            workers=len(workers),
        )

    def get_error_analysis(self, top: int = 10) -> dict[str, Any]:
        with self.reading():
            stats = self.get_statistics()
        counters = self._counters()
        recoveries = self._recoveries(counters)
        sessions = stats["sessions"]
        return {
            "statistics": stats,
            "top_errors": [
                {
                    "error_id": g.report.error_id,
                    "occurrence_count": g.report.occurrence_count,
                    "report": {**g.report.to_dict(), **g.release_state()},
                }
                for g in self.shared.groups("count", top)
            ],
            "total_unique_errors": stats["unique_errors"],
            "session_count": sessions["active"] + sessions["total_ended"],
            "patterns": self._patterns(),
            "sessions": sessions,
            "recovery": {
                "success_rate": stats["recovery_success_rate"],
                "attempts": stats["recovery_attempts"],
                **{k: int(v) for k, v in recoveries.items()},
            },
        }

    def get_error_summary(self) -> dict[str, Any]:
        self.settle()
        counters = self._counters()
        total = 0
        by_type: dict[str, int] = {}
        plugin_counts: dict[str, dict[str, int]] = {}
        for labels, value in _samples(counters, f"{self.namespace}_errors"):
            count = int(value)
            total += count
            error_type = labels.get("error_type", "")
            by_type[error_type] = by_type.get(error_type, 0) + count
            plugin = labels.get("plugin", "")
            if plugin and count:
                types = plugin_counts.setdefault(plugin, {})
                types[error_type] = types.get(error_type, 0) + count
        started = self.shared.started()
        return {
            "session_start": iso_time(started),
            "total_errors": total,
            "error_rate_per_hour": round(per_hour(total, time.time() - started), 2),
            "error_counts_by_type": by_type,
            "plugin_error_counts": plugin_counts,
            "active_patterns": {
                p["error_type"]: p for p in self._patterns() if p["kind"] == "type"
            },
            "recent_errors": [r.to_dict() for r in self.shared.recent_records(20)],
        }

    def get_plugin_health(self, plugin_id: str) -> dict[str, Any]:
        self.settle()
        counters = self._counters()
        counts: dict[str, int] = {}
        for labels, value in _samples(counters, f"{self.namespace}_errors"):
            if labels.get("plugin") == plugin_id and value:
                error_type = labels.get("error_type", "")
                counts[error_type] = counts.get(error_type, 0) + int(value)
        worst, recent = 0, 0
        for worker in self._workers():
            entry = (worker.get("plugins") or {}).get(plugin_id)
            if entry:
                worst = max(worst, HEALTH_VALUE.get(entry.get("status", "healthy"), 0))
                recent += int(entry.get("recent", 0))
        last = self._last_record(plugin_id)
        return {
            "plugin_id": plugin_id,
            "status": _HEALTH_NAME[worst],
            "total_errors": sum(counts.values()),
            "error_types": counts,
            "recent_error_count": recent,
            "last_error": last.to_dict() if last else None,
        }

    def get_patterns(self) -> list[dict[str, Any]]:
        self.settle()
        return self._patterns()

    def list_groups(
        self, sort: str = "count", limit: int | None = None, new_in: str | None = None
    ) -> list[dict[str, Any]]:
        self.settle()
        return [g.summary() for g in self.shared.groups(sort, limit, new_in=new_in)]

    def get_group(self, error_id: str) -> dict[str, Any] | None:
        self.settle()
        with self.shared.read():
            found = self.shared.groups(error_id=error_id)
            if not found:
                return None
            group = found[0]
            occurrences = self.shared.occurrences(error_id, self.config.occurrences_per_group)
        return {
            "group": group.summary(),
            "report": {**group.report.to_dict(), **group.release_state()},
            "occurrences": [r.to_dict() for r in occurrences],
        }

    def resolve_group(self, error_id: str) -> dict[str, Any] | None:
        """Resolved in the version running now, for every worker of the directory.

        A group this worker holds is resolved in its memory first (so its next
        occurrence here is judged against the resolve at once) and written before the
        answer; any other group is resolved in the file itself. The other workers learn
        of it when they next write the group (or within their sync interval), and the
        first occurrence after it regresses the group once, in whichever worker saw it.
        """
        self.settle()
        local = self.local
        version = self.config.app_version  # the monitor's own (set_app_version changes it)
        if local is not None and local.store.resolve(error_id, version) is not None:
            with contextlib.suppress(Exception):
                local.flush(timeout=SETTLE_TIMEOUT)
            found = self.shared.groups(error_id=error_id)
            if found:
                return found[0].summary()
        group = self.shared.resolve(error_id, version)
        return None if group is None else group.summary()

    def clear_old_records(self, max_age_hours: float = 24) -> int:
        """Cleared in the file for every worker, and in this worker's memory (else its next
        write would bring its copies of the cleared groups back)."""
        self.settle()
        cutoff = time.time() - max_age_hours * 3600.0
        if self.local is not None:
            with contextlib.suppress(Exception):
                self.local.store.clear_older_than(cutoff)
        return self.shared.clear_older_than(cutoff)

    def export_data(self, flt: ExportFilter | None = None, **filters: Any) -> dict[str, Any]:
        flt = flt or ExportFilter(**filters)
        with self.reading():
            return export_document(self, self.shared.iter_records(flt), flt.limit, flt.cursor)

    # -- helpers -----------------------------------------------------------------------------
    def _last_record(self, plugin: str) -> ErrorRecord | None:
        return self.shared.last_record(plugin)

    def _counters(self) -> dict[str, Metric]:
        files = metric_files(self.directory, "counter_*.db")
        return {m.name: m for m in MultiProcessCollector.merge(files, accumulate=True)}  # type: ignore[no-untyped-call]

    def _recoveries(self, counters: dict[str, Metric]) -> dict[str, float]:
        totals = {"success": 0.0, "failure": 0.0}
        for labels, value in _samples(counters, f"{self.namespace}_error_recoveries"):
            result = labels.get("result", "")
            if result in totals:
                totals[result] += value
        return totals

    def _workers(self) -> list[dict[str, Any]]:
        try:
            return self.shared.workers(LIVE_SECONDS)
        except Exception:
            return []

    def _sessions(
        self, counters: dict[str, Metric], workers: list[dict[str, Any]]
    ) -> dict[str, Any]:
        ended = {status: 0 for status in ("exited", "errored", "crashed", "abnormal")}
        for labels, value in _samples(counters, f"{self.namespace}_sessions"):
            status = labels.get("status", "")
            if status in ended:
                ended[status] += int(value)
        total = sum(ended.values())
        return {
            "active": sum(int((w.get("sessions") or {}).get("active", 0)) for w in workers),
            "ended": ended,
            "total_ended": total,
            "crash_free_ratio": (1 - ended["crashed"] / total) if total else 1.0,
            "users": sum(int((w.get("sessions") or {}).get("users", 0)) for w in workers),
        }

    def _patterns(self) -> list[dict[str, Any]]:
        """Live workers' active patterns merged per (kind, key): counts summed, the worst
        severity, first and last seen across workers."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for worker in self._workers():
            for pattern in worker.get("patterns") or ():
                key = (pattern.get("kind", "type"), pattern.get("key", ""))
                current = merged.get(key)
                if current is None:
                    merged[key] = dict(pattern)
                    continue
                current["count"] += pattern["count"]
                current["first_seen"] = min(current["first_seen"], pattern["first_seen"])
                current["last_seen"] = max(current["last_seen"], pattern["last_seen"])
                current["affected_plugins"] = sorted(
                    set(current["affected_plugins"]) | set(pattern["affected_plugins"])
                )
                samples = current["sample_messages"]
                for message in pattern["sample_messages"]:
                    if len(samples) < 3 and message not in samples:
                        samples.append(message)
                level = max(
                    _PATTERN_LEVEL.get(current["severity"], 0),
                    _PATTERN_LEVEL.get(pattern["severity"], 0),
                )
                current["severity"] = _LEVEL_PATTERN[level]
        return sorted(merged.values(), key=lambda p: (-p["count"], p["kind"], p["key"]))


class SharedRecords:
    """The parts of ``monitor.store`` the HTTP routes read, over the shared store."""

    def __init__(self, shared: SharedStore) -> None:
        self.shared = shared

    @property
    def groups(self) -> _Count:
        return _Count(self.shared.group_count())

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        return self.shared.iter_records(flt)

    def recent_records(self, count: int) -> list[ErrorRecord]:
        return self.shared.recent_records(count)


class _Count:
    """``len(view.store.groups)`` without loading the groups."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


class GroupSource(Protocol):
    """What /metrics reads of the stored groups: the directory's file
    (:class:`SharedStore`) or the fleet's PostgreSQL
    (:class:`exporter.multiprocess.postgres_mode.PostgresGroups`)."""

    def group_count(self) -> int: ...

    def latest_ids(self) -> dict[tuple[str, str, str, str], tuple[str, float, str | None]]: ...


class FleetCollector:
    """/metrics of a multiprocess directory: merged families plus shared-store families."""

    def __init__(self, directory: str | Path, namespace: str, shared: GroupSource | None) -> None:
        self.directory = str(directory)
        self.ns = namespace
        self.shared = shared
        self.version = monitor_version()
        self._counter_names = {
            self._name(name + "_total"): self._name(name) for name in SYSTEM_COUNTERS
        }

    def _name(self, name: str) -> str:
        return f"{self.ns}_{name}" if self.ns else name

    def describe(self) -> list[Metric]:
        return []  # names vary with what the workers wrote; skip the registry's name check

    def collect(self) -> Iterable[Metric]:
        files = metric_files(self.directory, "*.db")
        errors_name = self._name("errors")
        latest: dict[tuple[str, str, str, str], tuple[str, float, str | None]] = {}
        if self.shared is not None:
            with contextlib.suppress(Exception):
                latest = self.shared.latest_ids()
        for metric in MultiProcessCollector.merge(files, accumulate=True):  # type: ignore[no-untyped-call]
            if metric.name in self._counter_names:
                metric = _as_counter(metric, self._counter_names[metric.name])
            elif metric.name == errors_name and latest:
                _add_exemplars(metric, latest)
            yield metric
        if self.shared is not None:
            with contextlib.suppress(Exception):
                yield GaugeMetricFamily(
                    self._name("unique_errors"),
                    "Distinct error groups held in the shared store.",
                    value=self.shared.group_count(),
                )
        info = InfoMetricFamily(self._name("monitor"), "error-exporter build information.")
        info.add_metric([], {"version": self.version, "python_version": platform.python_version()})
        yield info


def metric_files(directory: str | Path, pattern: str) -> list[str]:
    """The value files of ``directory``, without those a starting process has just created
    and not sized yet (empty: prometheus_client cannot read them). A pool that replaces
    its children often (Celery's ``max_tasks_per_child``) makes that window common."""
    found = []
    for name in glob.glob(os.path.join(directory, pattern)):
        with contextlib.suppress(OSError):  # gone meanwhile (mark_process_dead)
            if os.path.getsize(name) > 0:
                found.append(name)
    return found


def fleet_registry(directory: str | Path, namespace: str = "app") -> MonitorRegistry:
    """A registry exposing every process of ``directory`` (for your own /metrics route)."""
    registry = MonitorRegistry(include_created=False)
    registry.register(FleetCollector(directory, namespace, SharedStore(directory)))
    return registry


def _as_counter(metric: Metric, name: str) -> Metric:
    counter = Metric(name, metric.documentation, "counter")
    counter.samples = list(metric.samples)
    return counter


def _add_exemplars(
    metric: Metric, latest: dict[tuple[str, str, str, str], tuple[str, float, str | None]]
) -> None:
    samples = []
    for sample in metric.samples:
        labels = sample.labels
        key = (
            labels.get("error_type", ""),
            labels.get("component", ""),
            labels.get("plugin", ""),
            labels.get("severity", ""),
        )
        found = latest.get(key) if sample.name.endswith("_total") else None
        if found is not None:
            sample = sample._replace(
                exemplar=Exemplar(exemplar_labels(found[0], found[2]), 1.0, found[1])
            )
        samples.append(sample)
    metric.samples = samples


def _samples(counters: dict[str, Metric], name: str) -> Iterator[tuple[dict[str, str], float]]:
    metric = counters.get(name)
    if metric is None:
        return
    for sample in metric.samples:
        if sample.name.endswith("_total"):
            yield sample.labels, sample.value


def _total(counters: dict[str, Metric], name: str, **match: str) -> float:
    return sum(
        value
        for labels, value in _samples(counters, name)
        if all(labels.get(k) == v for k, v in match.items())
    )


def _latest_resources(workers: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = [w for w in workers if w.get("resources")]
    if not found:
        return None
    return dict(max(found, key=lambda w: w["updated"])["resources"])
