"""The read interface: what the HTTP API, the CLI and the export read of a monitor.

Two backends implement it: :class:`~exporter.local_view.LocalView` (this process's store)
and :class:`~exporter.multiprocess.view.SharedView` (every worker process of a server, from
the shared store). A monitor picks one at construction and answers its read methods from
it; the HTTP layer takes any :class:`ErrorReader`, so a route added to one backend but not
the other is a type error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sized
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from .config import MonitorConfig
from .model import ErrorRecord
from .store import ExportFilter


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

    def list_groups(self, sort: str = "count", limit: int | None = None
                    ) -> list[dict[str, Any]]: ...

    def get_group(self, error_id: str) -> dict[str, Any] | None: ...

    def clear_old_records(self, max_age_hours: float = 24) -> int: ...

    def export_data(self, flt: ExportFilter | None = None, **filters: Any) -> dict[str, Any]: ...
