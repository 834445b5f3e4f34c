"""The store of a monitor in a worker process: its own share in memory, the records of
every worker read from the directory's file.

The worker keeps its in-memory groups (the read model of what it alone saw: patterns,
plugin health) and writes them to the file each tick (:mod:`exporter.store.durable.sqlite_shared`);
the records it serves (``/api/v1/export``, the recent errors of the summary) are those of
every worker of the directory, so any worker's route streams the same export.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.model import ErrorRecord
from exporter.multiprocess.sqlite_store import SharedStore
from exporter.store.durable.tracking import TrackingStore
from exporter.store.memory import ErrorStore, ExportFilter


class DirectoryStore(TrackingStore):
    """A :class:`TrackingStore` whose records are read from the shared file."""

    def __init__(self, base: ErrorStore, shared: SharedStore) -> None:
        super().__init__(base)
        # a group leaving this worker's memory stays in the file (what the readers serve):
        # nothing is dropped, so nothing is counted; the file's own bounds are counted when
        # its retention prunes (store_max_records, store_retention)
        self.on_evict = None
        self.shared = shared

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]:
        return self.shared.iter_records(flt)

    def recent_records(self, count: int) -> list[ErrorRecord]:
        return self.shared.recent_records(count)
