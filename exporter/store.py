"""Bounded in-memory store: error groups, occurrence records, plugin health.

Written only by the worker thread, read by API calls under the same lock. Memory is
bounded by ``error_buffer_size`` groups (least recently seen evicted first),
``max_records`` occurrence records (oldest dropped first) and small per-group caps.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .classify import priority
from .model import ErrorRecord, ErrorReport
from .patterns import WindowCount

MAX_PLUGINS = 1000
HEALTH_STATUS = ("healthy", "degraded", "unhealthy")


@dataclass
class ErrorGroup:
    """All occurrences of one signature: the latest report plus counts."""

    report: ErrorReport
    users: set[str] = field(default_factory=set)
    occurrences: deque[ErrorRecord] = field(default_factory=deque)
    recoveries: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    built_at: float = 0.0

    def summary(self) -> dict[str, Any]:
        r = self.report
        return {
            "error_id": r.error_id,
            "error_type": r.error_type,
            "error_message": r.error_message,
            "severity": r.severity.value,
            "priority": r.priority.value,
            "component": r.component,
            "plugin": r.plugin,
            "operation": r.operation,
            "file_path": r.file_path,
            "line_number": r.line_number,
            "function_name": r.function_name,
            "occurrence_count": r.occurrence_count,
            "first_occurrence": r.first_occurrence,
            "last_occurrence": r.last_occurrence,
            "frequency_per_hour": r.frequency_per_hour,
            "affected_users": r.affected_users,
        }


@dataclass
class ExportFilter:
    """Filters shared by the file export, the API and the CLI."""

    since: float | None = None
    until: float | None = None
    severity: str | None = None
    component: str | None = None
    plugin: str | None = None
    error_type: str | None = None
    limit: int | None = None
    cursor: int = 0

    def matches(self, record: ErrorRecord) -> bool:
        ts = record.timestamp.timestamp()
        return (
            (self.since is None or ts >= self.since)
            and (self.until is None or ts <= self.until)
            and (self.severity is None or record.severity == self.severity)
            and (self.component is None or record.component == self.component)
            and (self.plugin is None or (record.plugin_id or "") == self.plugin)
            and (self.error_type is None or record.error_type == self.error_type)
        )


class ErrorStore:
    """Groups and records, bounded; thread-safe reads."""

    def __init__(
        self,
        max_groups: int,
        max_records: int,
        occurrences_per_group: int = 10,
        max_users_per_group: int = 1000,
        health_window: float = 300.0,
        degraded_threshold: int = 1,
        unhealthy_threshold: int = 5,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        self.max_groups = max_groups
        self.occurrences_per_group = occurrences_per_group
        self.max_users_per_group = max_users_per_group
        self.health_window = health_window
        self.degraded_threshold = degraded_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.on_evict = on_evict
        self.groups: OrderedDict[str, ErrorGroup] = OrderedDict()
        self.records: deque[tuple[int, ErrorRecord]] = deque(maxlen=max_records)
        self._seq = itertools.count(1)
        self.plugin_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._plugin_windows: dict[str, WindowCount] = {}
        self._plugin_last: dict[str, ErrorRecord] = {}
        self.started = time.time()
        self.lock = threading.RLock()

    # -- writing (worker thread) -------------------------------------------------------
    def add(self, report: ErrorReport, record: ErrorRecord) -> tuple[ErrorGroup, bool]:
        """Merge one occurrence into its group; returns the group and whether it is new."""
        with self.lock:
            group = self.groups.get(report.error_id)
            is_new = group is None
            if group is None:
                group = ErrorGroup(report, occurrences=deque(maxlen=self.occurrences_per_group))
                self.groups[report.error_id] = group
                self._evict()
            else:
                self.groups.move_to_end(report.error_id)
                previous = group.report
                report.first_occurrence = previous.first_occurrence
                report.occurrence_count = previous.occurrence_count + 1
                report.recovery_attempted = previous.recovery_attempted
                report.recovery_successful = previous.recovery_successful
                group.report = report
            group.built_at = report.timestamp
            self._count(group, record, report.user_id)
            return group, is_new

    def add_occurrence(self, group: ErrorGroup, record: ErrorRecord, user_id: str | None) -> None:
        """A repeat occurrence without a new full report: counts and the record only."""
        with self.lock:
            report = group.report
            report.occurrence_count += 1
            report.timestamp = report.last_occurrence = record.timestamp.timestamp()
            if self.groups.get(report.error_id) is group:
                self.groups.move_to_end(report.error_id)
            self._count(group, record, user_id)

    def _count(self, group: ErrorGroup, record: ErrorRecord, user_id: str | None) -> None:
        report = group.report
        if user_id and len(group.users) < self.max_users_per_group:
            group.users.add(str(user_id))
        report.affected_users = len(group.users)
        hours = max((report.last_occurrence - report.first_occurrence) / 3600.0, 1.0)
        report.frequency_per_hour = round(report.occurrence_count / hours, 3)
        report.priority = priority(
            report.severity.value, report.frequency_per_hour, report.affected_users
        )
        group.occurrences.append(record)
        self.records.append((next(self._seq), record))
        if record.plugin_id:
            self._count_plugin(record)

    def _evict(self) -> None:
        evicted = 0
        while len(self.groups) > self.max_groups:
            self.groups.popitem(last=False)
            evicted += 1
        if evicted and self.on_evict is not None:
            self.on_evict(evicted)

    def _count_plugin(self, record: ErrorRecord) -> None:
        plugin = record.plugin_id or ""
        if plugin not in self._plugin_windows and len(self._plugin_windows) >= MAX_PLUGINS:
            return
        self.plugin_counts[plugin][record.error_type] += 1
        window = self._plugin_windows.setdefault(plugin, WindowCount(self.health_window))
        window.add(record.timestamp.timestamp())
        self._plugin_last[plugin] = record

    def mark_recovery(self, error_id: str | None, success: bool) -> None:
        with self.lock:
            group = self.groups.get(error_id or "")
            if group is None:
                return
            group.report.recovery_attempted = True
            group.report.recovery_successful = success
            group.recoveries["success" if success else "failure"] += 1

    def clear_older_than(self, cutoff: float) -> int:
        """Drop occurrence records older than ``cutoff`` (seed 003's clear_old_records)."""
        with self.lock:
            before = len(self.records)
            kept = [(s, r) for s, r in self.records if r.timestamp.timestamp() > cutoff]
            self.records.clear()
            self.records.extend(kept)
            stale = [e for e, g in self.groups.items() if g.report.last_occurrence <= cutoff]
            for error_id in stale:
                del self.groups[error_id]
            return before - len(self.records)

    # -- reading ---------------------------------------------------------------------
    def plugin_status(self, plugin: str, now: float | None = None) -> tuple[str, int]:
        """(healthy | degraded | unhealthy, errors in the health window)."""
        now = time.time() if now is None else now
        with self.lock:
            window = self._plugin_windows.get(plugin)
            recent = window.expire(now) if window is not None else 0
        if recent >= self.unhealthy_threshold:
            return "unhealthy", recent
        if recent >= self.degraded_threshold:
            return "degraded", recent
        return "healthy", recent

    def plugins(self) -> list[str]:
        with self.lock:
            return list(self._plugin_windows)

    def plugin_health(self, plugin: str) -> dict[str, Any]:
        status, recent = self.plugin_status(plugin)
        with self.lock:
            counts = dict(self.plugin_counts.get(plugin, {}))
            last = self._plugin_last.get(plugin)
        return {
            "plugin_id": plugin,
            "status": status,
            "total_errors": sum(counts.values()),
            "error_types": counts,
            "recent_error_count": recent,
            "last_error": last.to_dict() if last else None,
        }

    def group_list(self, sort: str = "count", limit: int | None = None) -> list[ErrorGroup]:
        with self.lock:
            groups = list(self.groups.values())
        if sort == "last_seen":
            groups.sort(key=lambda g: g.report.last_occurrence, reverse=True)
        else:
            groups.sort(key=lambda g: g.report.occurrence_count, reverse=True)
        return groups[:limit] if limit is not None else groups

    def recent_records(self, count: int) -> list[ErrorRecord]:
        with self.lock:
            return [r for _, r in list(self.records)[-count:]]

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        with self.lock:
            snapshot = list(self.records)
        for seq, record in snapshot:
            if seq > flt.cursor and flt.matches(record):
                yield seq, record

    def session_start_iso(self) -> str:
        return datetime.fromtimestamp(self.started).isoformat()
