"""Bounded in-memory store: error groups, their occurrence records, plugin health.

Written only by the worker thread, read by API calls under the same lock. What belongs
to a **group** (counts, first/last seen, affected users, the highest severity, the
components and plugins seen) is aggregated on :class:`ErrorGroup`; each **occurrence**
keeps its own record and its own report (message, context, severity, component...).

Memory is bounded by ``error_buffer_size`` groups (least recently seen evicted first) and
``max_records`` occurrence records in all. Records are kept per group, so a storm of one
error never evicts another group's occurrences: when the bound is reached, the record
dropped is the oldest of the group holding the most.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.classify import per_hour, priority
from exporter.model import SEVERITY_RANK, ErrorRecord, ErrorReport, ErrorSeverity, iso_time
from exporter.patterns import WindowCount

MAX_PLUGINS = 1000
MAX_SEEN_LABELS = 50  # components / plugins listed per group
HEALTH_STATUS = ("healthy", "degraded", "unhealthy")


@dataclass
class ErrorGroup:
    """All occurrences of one signature: the counts, and the latest occurrence's report."""

    report: ErrorReport
    users: set[str] = field(default_factory=set)
    records: deque[tuple[int, ErrorRecord]] = field(default_factory=deque)
    recoveries: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    max_severity: str = "low"
    components: dict[str, int] = field(default_factory=dict)
    plugins: dict[str, int] = field(default_factory=dict)
    coalesced: int = 0  # counted, but not kept one by one (a storm over its budget)
    # release health: which app versions saw it, and whether it was resolved / came back
    first_seen_version: str | None = None
    last_seen_version: str | None = None
    resolved_at: float | None = None  # set by resolve; cleared when it is seen again
    resolved_version: str | None = None  # the app version running when it was resolved
    regressed: bool = False  # seen again after it was resolved
    regressed_at: float | None = None

    @property
    def occurrences(self) -> list[ErrorRecord]:
        return [record for _, record in self.records]

    def summary(self) -> dict[str, Any]:
        """The group's JSON shape: times ISO-8601 in UTC (``*_epoch`` beside); no plugin is null."""
        from exporter.model import iso_time, trace_frames

        r = self.report
        return {
            "error_id": r.error_id,
            "error_type": r.error_type,
            "error_message": r.error_message,
            "severity": self.max_severity,
            "last_severity": r.severity.value,
            "priority": r.priority.value,
            "component": r.component,
            "plugin": r.plugin or None,
            "operation": r.operation,
            "components": list(self.components),
            "plugins": list(self.plugins),
            "file_path": r.file_path,
            "line_number": r.line_number,
            "function_name": r.function_name,
            "frames": trace_frames(r.stack_trace),
            "occurrence_count": r.occurrence_count,
            "coalesced_occurrences": self.coalesced,
            "first_occurrence": iso_time(r.first_occurrence),
            "first_occurrence_epoch": r.first_occurrence,
            "last_occurrence": iso_time(r.last_occurrence),
            "last_occurrence_epoch": r.last_occurrence,
            "frequency_per_hour": r.frequency_per_hour,
            "affected_users": r.affected_users,
            **self.release_state(),
        }

    def release_state(self) -> dict[str, Any]:
        """Which versions saw it, whether it is resolved, whether it came back after that."""
        return {
            "first_seen_version": self.first_seen_version,
            "last_seen_version": self.last_seen_version,
            "resolved": self.resolved_at is not None,
            "resolved_at": iso_time(self.resolved_at),
            "resolved_at_epoch": self.resolved_at,
            "resolved_version": self.resolved_version,
            "regressed": self.regressed,
            "regressed_at": iso_time(self.regressed_at),
            "regressed_at_epoch": self.regressed_at,
        }

    def seen_in(self, version: str | None, when: float) -> bool:
        """An occurrence at ``when`` in ``version``; True when it regresses the group
        (resolved before ``when``: an occurrence queued before the resolve does not)."""
        if version is not None:
            self.last_seen_version = version
            if self.first_seen_version is None:
                self.first_seen_version = version
        if self.resolved_at is None or when <= self.resolved_at:
            return False
        self.resolved_at = None  # resolved_version stays: the release that thought it fixed
        self.regressed = True
        self.regressed_at = when
        return True

    def resolve(self, version: str | None, when: float) -> None:
        """Marked resolved (twice: the first time stands); a regression is over."""
        if self.resolved_at is None:
            self.resolved_at = when
            self.resolved_version = version
        self.regressed = False
        self.regressed_at = None


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
        # release health: the version of coalesced counts (they carry no report), what to
        # call when a resolved group comes back (worker thread, under the lock), and when a
        # group's release state changes outside ``add`` (a resolve, on an HTTP thread)
        self.version_at: Callable[[float], str | None] = _no_version
        self.on_regress: Callable[[ErrorGroup, ErrorReport], None] | None = None
        self.on_change: Callable[[str], None] | None = None
        self.max_groups = max_groups
        self.max_records = max_records
        self.occurrences_per_group = occurrences_per_group
        self.max_users_per_group = max_users_per_group
        self.health_window = health_window
        self.degraded_threshold = degraded_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.on_evict = on_evict
        self.groups: OrderedDict[str, ErrorGroup] = OrderedDict()
        self.record_count = 0
        self._seq = itertools.count(1)
        self.plugin_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._plugin_windows: dict[str, WindowCount] = {}
        self._plugin_last: dict[str, ErrorRecord] = {}
        self.started = time.time()
        self.lock = threading.RLock()

    def after_fork(self) -> None:
        """Another thread of the parent may have held the lock at the fork."""
        self.lock = threading.RLock()

    # -- writing (worker thread) -------------------------------------------------------
    def add(self, report: ErrorReport, record: ErrorRecord) -> tuple[ErrorGroup, bool]:
        """Merge one occurrence into its group; ``report`` (the occurrence's own) gets the
        group's counts and becomes the group's latest. Returns the group and whether it is new."""
        with self.lock:
            error_id = report.error_id
            groups = self.groups
            group = groups.get(error_id)
            is_new = group is None
            timestamp = report.timestamp
            version = self.version_at(timestamp)  # as its report's environment says
            severity = record.severity  # a str: the enum's .value costs more
            if group is None:
                group = ErrorGroup(report, max_severity=report.severity.value)
                groups[error_id] = group
                self._evict_groups()
                group.seen_in(version, timestamp)
            else:
                groups.move_to_end(error_id)
                previous = group.report
                # min / max: an urgent occurrence may be stored before an earlier one
                # (as conditionals: the builtins' calls cost more; same value, same ties)
                earlier, later = previous.first_occurrence, report.first_occurrence
                report.first_occurrence = later if later < earlier else earlier
                earlier, later = previous.last_occurrence, report.last_occurrence
                report.last_occurrence = later if later > earlier else earlier
                report.occurrence_count = previous.occurrence_count + 1
                report.recovery_attempted = previous.recovery_attempted
                report.recovery_successful = previous.recovery_successful
                if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK[group.max_severity]:
                    group.max_severity = severity
                group.report = report
                # seen_in does nothing without a version or a resolve (then no call at all)
                if (version is not None or group.resolved_at is not None) and group.seen_in(
                    version, timestamp
                ):
                    self._regressed(group, report)
            # _seen for the component and the plugin, inline (once per error)
            label = report.component
            if label:
                seen = group.components
                if label in seen:
                    seen[label] += 1
                elif len(seen) < MAX_SEEN_LABELS:
                    seen[label] = 1
            label = report.plugin
            if label:
                seen = group.plugins
                if label in seen:
                    seen[label] += 1
                elif len(seen) < MAX_SEEN_LABELS:
                    seen[label] = 1
            users = group.users
            if report.user_id and len(users) < self.max_users_per_group:
                users.add(str(report.user_id))
            # _refresh(group, severity), inline
            report.affected_users = affected = len(users)
            seconds = report.last_occurrence - report.first_occurrence
            report.frequency_per_hour = frequency = (
                float(report.occurrence_count)  # _frequency's first hour, inline
                if seconds <= 3600.0
                else round(per_hour(report.occurrence_count, seconds), 3)
            )
            report.priority = priority(severity, frequency, affected)
            # _keep, inline up to the bound
            group.records.append((next(self._seq), record))
            self.record_count += 1
            if self.record_count > self.max_records:  # the steady state of a busy store
                # _drop_one, inline: from whoever holds more than a fair share, this group first
                share = self.max_records // len(groups) or 1
                victim = group if len(group.records) > share else self._largest()
                victim.records.popleft()
                self.record_count -= 1
            plugin = record.plugin_id
            if plugin and self._count_plugin_errors(
                plugin, record.error_type, 1, record.timestamp.timestamp()
            ):  # _count_plugin, inline
                self._plugin_last[plugin] = record
            return group, is_new

    def add_coalesced(
        self, error_id: str, plugin: str, error_type: str, count: int, last_seen: float
    ) -> bool:
        """Occurrences counted on the caller but not queued one by one (storm budget).

        Plugin counts always; the group's counts only when the group is in the store
        (False: its first occurrence is still queued, or was dropped or evicted), for
        :meth:`add_to_group` to apply later.
        """
        with self.lock:
            if plugin:
                self._count_plugin_errors(plugin, error_type, count, last_seen)
            return self.add_to_group(error_id, plugin, count, last_seen)

    def add_to_group(self, error_id: str, plugin: str, count: int, last_seen: float) -> bool:
        """Coalesced occurrences into their group's counts; False when it is not stored."""
        with self.lock:
            group = self.groups.get(error_id)
            if group is None:
                return False
            report = group.report
            report.occurrence_count += count
            report.timestamp = report.last_occurrence = max(report.last_occurrence, last_seen)
            group.coalesced += count
            _seen(group.plugins, plugin)
            self._refresh(group)
            if group.seen_in(self.version_at(last_seen), last_seen):
                self._regressed(group, report)  # no report of its own: the group's latest
            return True

    def _regressed(self, group: ErrorGroup, report: ErrorReport) -> None:
        if self.on_regress is not None:
            self.on_regress(group, report)

    def resolve(
        self, error_id: str, version: str | None, when: float | None = None
    ) -> ErrorGroup | None:
        """Mark a group resolved (None: no such group); seen again, it is a regression."""
        with self.lock:
            group = self.groups.get(error_id)
            if group is None:
                return None
            group.resolve(version, time.time() if when is None else when)
        if self.on_change is not None:
            self.on_change(error_id)
        return group

    @staticmethod
    def _refresh(group: ErrorGroup, severity: str | None = None) -> None:
        report = group.report
        report.affected_users = len(group.users)
        report.frequency_per_hour = _frequency(
            report.occurrence_count, report.last_occurrence - report.first_occurrence
        )
        report.priority = priority(
            report.severity.value if severity is None else severity,
            report.frequency_per_hour,
            report.affected_users,
        )

    def _largest(self) -> ErrorGroup:
        return max(self.groups.values(), key=lambda g: len(g.records))

    def _evict_groups(self) -> None:
        evicted = 0
        while len(self.groups) > self.max_groups:
            _, group = self.groups.popitem(last=False)
            self.record_count -= len(group.records)
            evicted += 1
        if evicted and self.on_evict is not None:
            self.on_evict(evicted)

    def _count_plugin_errors(self, plugin: str, error_type: str, count: int, when: float) -> bool:
        window = self._plugin_windows.get(plugin)
        if window is None:
            if len(self._plugin_windows) >= MAX_PLUGINS:
                return False
            window = self._plugin_windows[plugin] = WindowCount(self.health_window)
        self.plugin_counts[plugin][error_type] += count
        window.add(when, count)
        return True

    def mark_recovery(self, error_id: str | None, success: bool) -> None:
        with self.lock:
            group = self.groups.get(error_id or "")
            if group is None:
                return
            group.report.recovery_attempted = True
            group.report.recovery_successful = success
            group.recoveries["success" if success else "failure"] += 1

    def clear_older_than(self, cutoff: float) -> int:
        """Drop occurrence records older than ``cutoff`` (``clear_old_records``)."""
        with self.lock:
            cleared = 0
            for group in self.groups.values():
                while group.records and group.records[0][1].timestamp.timestamp() <= cutoff:
                    group.records.popleft()
                    cleared += 1
            self.record_count -= cleared
            stale = [e for e, g in self.groups.items() if g.report.last_occurrence <= cutoff]
            for error_id in stale:
                self.record_count -= len(self.groups.pop(error_id).records)
            return cleared

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

    def group_list(
        self, sort: str = "count", limit: int | None = None, new_in: str | None = None
    ) -> list[ErrorGroup]:
        """Groups by count or last seen; ``new_in``: only those first seen in that version."""
        with self.lock:
            groups = list(self.groups.values())
        if new_in is not None:
            groups = [g for g in groups if g.first_seen_version == new_in]
        if sort == "last_seen":
            groups.sort(key=lambda g: g.report.last_occurrence, reverse=True)
        else:
            groups.sort(key=lambda g: g.report.occurrence_count, reverse=True)
        return groups[:limit] if limit is not None else groups

    def group_detail(self, error_id: str) -> dict[str, Any] | None:
        """One group: summary, latest occurrence's full report and recent occurrences."""
        with self.lock:
            group = self.groups.get(error_id)
            if group is None:
                return None
            recent = list(group.records)[-self.occurrences_per_group :]
            return {
                "group": group.summary(),
                "report": {**group.report.to_dict(), **group.release_state()},
                "occurrences": [r.to_dict() for _, r in recent],
            }

    def _all_records(self) -> list[tuple[int, ErrorRecord]]:
        with self.lock:
            chunks = [list(g.records) for g in self.groups.values()]
        return list(heapq.merge(*chunks))

    @property
    def records(self) -> list[tuple[int, ErrorRecord]]:
        """Every record kept, oldest first (seq, record)."""
        return self._all_records()

    def recent_records(self, count: int) -> list[ErrorRecord]:
        return [r for _, r in self._all_records()[-count:]] if count > 0 else []

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        for seq, record in self._all_records():
            if seq > flt.cursor and flt.matches(record):
                yield seq, record

    def session_start_iso(self) -> str:
        return iso_time(self.started) or ""


def _frequency(count: int, seconds: float) -> float:
    """``round(per_hour(count, seconds), 3)``. Within the first hour per_hour divides by
    one hour (a burst is not a rate): the count itself, which rounding cannot change (and
    ``round`` to 3 digits is the costliest step of a group's update)."""
    if seconds <= 3600.0:
        return float(count)
    return round(per_hour(count, seconds), 3)


def _no_version(moment: float) -> str | None:
    return None


def _seen(seen: dict[str, int], value: str) -> None:
    if not value:
        return
    if value in seen:
        seen[value] += 1
    elif len(seen) < MAX_SEEN_LABELS:
        seen[value] = 1


__all__ = ["ErrorGroup", "ErrorSeverity", "ErrorStore", "ExportFilter"]
