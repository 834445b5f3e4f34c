"""The in-memory store that remembers what changed since the last write to the file.

The worker keeps using the ordinary :class:`~exporter.store.memory.ErrorStore` (the read model of
every API route, the export and the collectors); this subclass notes, under the store's
lock, which groups changed, which left memory, and which records were added. The durable
writer takes that batch on the worker's next tick. Nothing here touches the disk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.model import ErrorRecord, ErrorReport
from exporter.store.memory import ErrorGroup, ErrorStore


@dataclass
class Changes:
    """What the next write must do; taken whole by :meth:`TrackingStore.take_changes`."""

    groups: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    records: list[tuple[int, ErrorRecord]] = field(default_factory=list)
    cleared_before: float | None = None  # clear_old_records: records and groups up to it
    # for a shared store, which adds rather than replaces: occurrences since the last
    # write and the latest of them, per group; resolves done here (when, version)
    counts: dict[str, int] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    resolved: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)  # ended since the last write

    def __bool__(self) -> bool:
        return bool(
            self.groups
            or self.removed
            or self.records
            or self.counts
            or self.resolved
            or self.sessions
            or self.cleared_before is not None
        )

    def seen(self, error_id: str, count: int, when: float) -> None:
        self.counts[error_id] = self.counts.get(error_id, 0) + count
        self.latest[error_id] = max(self.latest.get(error_id, when), when)


class SessionLedger:
    """The sessions this process ended that the store does not have yet.

    Sessions live in the monitor's tracker, not in the error store, so a backend asks this
    ledger for what ended since its last successful write (:meth:`due`) and tells it what
    was written (:meth:`written`); a failed write leaves them due for the next one.
    """

    def __init__(self, ended: Callable[[], dict[str, int]]) -> None:
        self._ended = ended
        self._written: dict[str, int] = {}

    def due(self) -> dict[str, int]:
        try:
            ended = dict(self._ended())
        except Exception:  # a tracker being replaced (a fork): next tick
            return {}
        return {
            status: count - self._written.get(status, 0)
            for status, count in ended.items()
            if count > self._written.get(status, 0)
        }

    def written(self, added: dict[str, int]) -> None:
        for status, count in added.items():
            self._written[status] = self._written.get(status, 0) + count

    def reset(self) -> None:
        """A forked child counts its own sessions from zero."""
        self._written = {}


class TrackingStore(ErrorStore):
    """An :class:`ErrorStore` that records its changes for the durable writer."""

    def __init__(self, base: ErrorStore) -> None:
        super().__init__(
            base.max_groups,
            base.max_records,
            base.occurrences_per_group,
            base.max_users_per_group,
            base.health_window,
            base.degraded_threshold,
            base.unhealthy_threshold,
            on_evict=base.on_evict,
        )
        self.changes = Changes()
        self.on_change = self.mark_changed  # a resolve (release health), from any thread

    def continue_sequence(self, last_seq: int) -> None:
        """Records of this run follow those already in the file (export cursors hold)."""
        self._seq = itertools.count(last_seq + 1)

    def mark_changed(self, error_id: str) -> None:
        """A group changed outside ``add`` (e.g. resolved): write it at the next tick."""
        with self.lock:
            if error_id in self.groups:
                self.changes.groups.add(error_id)

    def resolve(
        self, error_id: str, version: str | None, when: float | None = None
    ) -> ErrorGroup | None:
        with self.lock:
            group = super().resolve(error_id, version, when)
            if group is not None and group.resolved_at is not None:
                self.changes.resolved.setdefault(
                    error_id, (group.resolved_at, group.resolved_version)
                )
            return group

    def take_changes(self) -> Changes:
        with self.lock:
            taken, self.changes = self.changes, Changes()
            return taken

    def give_back(self, changes: Changes, max_records: int) -> int:
        """A write failed: keep its changes for the next one (at most ``max_records``
        records; returns how many older ones were given up)."""
        with self.lock:
            pending = self.changes
            live = set(self.groups)  # what left memory since stays deleted
            pending.groups |= changes.groups & live
            pending.removed |= changes.removed - pending.groups
            pending.records[:0] = [
                (seq, record) for seq, record in changes.records if record.error_id in live
            ]
            for error_id, count in changes.counts.items():
                pending.seen(error_id, count, changes.latest.get(error_id, 0.0))
            for error_id, resolve in changes.resolved.items():
                pending.resolved.setdefault(error_id, resolve)
            if changes.cleared_before is not None:
                pending.cleared_before = max(pending.cleared_before or 0.0, changes.cleared_before)
            return self.trim_pending(max_records)

    def trim_pending(self, max_records: int) -> int:
        """Keep at most ``max_records`` unwritten records (the newest); returns how many
        older ones were given up."""
        with self.lock:
            records = self.changes.records
            excess = len(records) - max_records
            if excess > 0:
                del records[:excess]
            return max(excess, 0)

    # -- the writes of ErrorStore, noted ----------------------------------------------------
    def add(self, report: ErrorReport, record: ErrorRecord) -> tuple[ErrorGroup, bool]:
        with self.lock:
            doomed: list[str] = []
            if report.error_id not in self.groups:  # the least recently seen may make room
                excess = len(self.groups) + 1 - self.max_groups
                doomed = list(itertools.islice(self.groups, max(excess, 0)))
            group, is_new = super().add(report, record)
            changes = self.changes
            gone = {e for e in doomed if e not in self.groups}
            if gone:
                self._removed(gone)
            changes.groups.add(report.error_id)
            changes.removed.discard(report.error_id)
            changes.seen(report.error_id, 1, report.timestamp)
            if group.records and group.records[-1][1] is record:
                changes.records.append(group.records[-1])
            return group, is_new

    def add_to_group(self, error_id: str, plugin: str, count: int, last_seen: float) -> bool:
        with self.lock:
            stored = super().add_to_group(error_id, plugin, count, last_seen)
            if stored:
                self.changes.groups.add(error_id)
                self.changes.seen(error_id, count, last_seen)
            return stored

    def mark_recovery(self, error_id: str | None, success: bool) -> None:
        with self.lock:
            super().mark_recovery(error_id, success)
            if error_id and error_id in self.groups:
                self.changes.groups.add(error_id)

    def clear_older_than(self, cutoff: float) -> int:
        with self.lock:
            before = set(self.groups)
            cleared = super().clear_older_than(cutoff)
            changes = self.changes
            self._removed(before - set(self.groups))
            changes.cleared_before = max(changes.cleared_before or 0.0, cutoff)
            changes.records = [
                (seq, record)
                for seq, record in changes.records
                if record.timestamp.timestamp() > cutoff
            ]
            return cleared

    def forget(self, error_ids: list[str]) -> None:
        """Groups the file's retention pruned: gone from memory too (not written back)."""
        with self.lock:
            for error_id in error_ids:
                group = self.groups.pop(error_id, None)
                if group is not None:
                    self.record_count -= len(group.records)
            self._removed(set(error_ids))

    def _removed(self, gone: set[str]) -> None:
        """Groups that left memory: deleted from the file, their pending records with them."""
        if not gone:
            return
        changes = self.changes
        changes.groups -= gone
        changes.removed |= gone
        if any(record.error_id in gone for _, record in changes.records):
            changes.records = [
                (seq, record) for seq, record in changes.records if record.error_id not in gone
            ]
