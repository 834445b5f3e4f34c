"""The store of a monitor in a worker process: in memory as usual, written through to SQLite.

The monitor thread keeps using the in-memory groups, and every occurrence it stores (and
every count a storm coalesced) is also written to the shared database.
Records are read back from the shared database, so ``/api/v1/export`` served by any worker
streams the records of all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..model import ErrorRecord, ErrorReport
from ..store import ErrorGroup, ErrorStore, ExportFilter
from .sqlite_store import SharedStore


class SharedErrorStore(ErrorStore):
    """ErrorStore + write-through to a SharedStore; records are read from the shared one."""

    def __init__(
        self,
        shared: SharedStore,
        local: ErrorStore,
        on_evict: Callable[[int], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        # Local evictions are invisible in this mode (the export reads the shared store), so
        # only evictions from the shared store count as dropped reports.
        super().__init__(
            local.max_groups, local.max_records, local.occurrences_per_group,
            local.max_users_per_group, local.health_window, local.degraded_threshold,
            local.unhealthy_threshold, on_evict=None,
        )
        self.shared = shared
        self.on_shared_evict = on_evict
        self.on_error = on_error

    def add(self, report: ErrorReport, record: ErrorRecord) -> tuple[ErrorGroup, bool]:
        group, is_new = super().add(report, record)
        self._write(lambda: self.shared.add(report, record, report.user_id))
        return group, is_new

    def add_to_group(self, error_id: str, plugin: str, count: int, last_seen: float) -> bool:
        if not super().add_to_group(error_id, plugin, count, last_seen):
            return False
        self._write(lambda: self.shared.add_coalesced(error_id, count, last_seen))
        return True

    def mark_recovery(self, error_id: str | None, success: bool) -> None:
        super().mark_recovery(error_id, success)
        if error_id:
            self._write(lambda: self.shared.mark_recovery(error_id, success))

    def clear_older_than(self, cutoff: float) -> int:
        super().clear_older_than(cutoff)
        return self.shared.clear_older_than(cutoff)

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        return self.shared.iter_records(flt)

    def recent_records(self, count: int) -> list[ErrorRecord]:
        return self.shared.recent_records(count)

    def _write(self, operation: Callable[[], int | None]) -> None:
        try:
            evicted = operation()
        except Exception as exc:  # the worker must go on: count it, keep the local copy
            if self.on_error is not None:
                self.on_error(exc)
            return
        if evicted and self.on_shared_evict is not None:
            self.on_shared_evict(evicted)
