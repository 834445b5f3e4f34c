"""The read interface: what the HTTP API, the CLI and the export read of a monitor.

Two backends implement it: :class:`~exporter.store.local_view.LocalView` (this process's store)
and :class:`~exporter.multiprocess.view.SharedView` (every worker process of a server, from
the shared store). A monitor picks one at construction and answers its read methods from
it; the HTTP layer takes any :class:`ErrorReader`, so a route added to one backend but not
the other is a type error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sized
from typing import TYPE_CHECKING, Any, Protocol

from exporter.config import MonitorConfig
from exporter.model import ErrorRecord
from exporter.store.memory import ExportFilter

if TYPE_CHECKING:  # imported when a metric object is first needed, not with the monitor
    from prometheus_client import CollectorRegistry


class NotSupported(Exception):
    """This backend cannot do what was asked (the HTTP API answers 501 with the message)."""


class RecordSource(Protocol):
    """Where the streamed export reads occurrence records from."""

    @property
    def groups(self) -> Sized: ...

    def iter_records(self, flt: ExportFilter) -> Iterator[tuple[int, ErrorRecord]]: ...

    def recent_records(self, count: int) -> list[ErrorRecord]: ...


class ErrorReader(Protocol):
    """Everything a reader of errors may ask; implemented by both backends."""

    config: MonitorConfig

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def store(self) -> RecordSource: ...

    @property
    def running(self) -> bool: ...

    @property
    def queue_depth(self) -> int: ...

    def note_internal_error(self, exc: BaseException | None = None) -> None: ...

    def reading(self) -> contextlib.AbstractContextManager[None]: ...

    def get_statistics(self) -> dict[str, Any]: ...

    def get_error_analysis(self, top: int = 10) -> dict[str, Any]: ...

    def get_error_summary(self) -> dict[str, Any]: ...

    def get_plugin_health(self, plugin_id: str) -> dict[str, Any]: ...

    def get_patterns(self) -> list[dict[str, Any]]: ...

    def list_groups(
        self, sort: str = "count", limit: int | None = None, new_in: str | None = None
    ) -> list[dict[str, Any]]: ...

    def get_group(self, error_id: str) -> dict[str, Any] | None: ...

    def resolve_group(self, error_id: str) -> dict[str, Any] | None: ...

    def clear_old_records(self, max_age_hours: float = 24) -> int: ...

    def export_data(self, flt: ExportFilter | None = None, **filters: Any) -> dict[str, Any]: ...


class ReadThroughView:
    """The read methods of a monitor, answered by the backend it chose (``view``)."""

    view: ErrorReader

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Several reads that should see the same moment: settle once, then read."""
        return self.view.reading()

    def get_statistics(self) -> dict[str, Any]:
        """``ErrorMonitoringService``'s statistics shape, from the exact counters."""
        return self.view.get_statistics()

    def get_error_analysis(self, top: int = 10) -> dict[str, Any]:
        """``ErrorMonitoringService``'s analysis shape: statistics, top errors, sessions."""
        return self.view.get_error_analysis(top)

    def get_error_summary(self) -> dict[str, Any]:
        """``ErrorAggregator``'s summary shape (total_errors is the exact count)."""
        return self.view.get_error_summary()

    def get_plugin_health(self, plugin_id: str) -> dict[str, Any]:
        """``ErrorAggregator``'s plugin health shape."""
        return self.view.get_plugin_health(plugin_id)

    def get_patterns(self) -> list[dict[str, Any]]:
        return self.view.get_patterns()

    def list_groups(
        self, sort: str = "count", limit: int | None = None, new_in: str | None = None
    ) -> list[dict[str, Any]]:
        """Group summaries; ``new_in``: only the groups first seen in that app version."""
        return self.view.list_groups(sort, limit, new_in)

    def get_group(self, error_id: str) -> dict[str, Any] | None:
        """One group: summary, latest occurrence's full report and recent occurrences."""
        return self.view.get_group(error_id)

    def resolve_group(self, error_id: str) -> dict[str, Any] | None:
        """Mark a group resolved; its summary, or None for an unknown id. Seen again
        afterwards, the group is a regression (``register_regression_callback``); in
        multiprocess mode, for every worker of the directory."""
        return self.view.resolve_group(error_id)

    def clear_old_records(self, max_age_hours: float = 24) -> int:
        """Drop records (and groups) older than ``max_age_hours``; returns records cleared."""
        return self.view.clear_old_records(max_age_hours)

    def export_data(self, flt: ExportFilter | None = None, **filters: Any) -> dict[str, Any]:
        """``ErrorAggregator``'s export shape plus statistics, analysis and a paging cursor."""
        return self.view.export_data(flt, **filters)
