"""/api/v1/export as a stream of JSON chunks.

The body has the same keys and values as ``ErrorMonitor.export_data`` (a test holds the two
together), but the records are encoded in batches as the client reads them, so 10,000 records
never sit in memory as one list of dicts plus one giant string. The summary, statistics and
analysis are computed before the first byte, so a failure there is still a clean JSON 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exporter.model import json_text
from exporter.store.json_export import export_head
from exporter.store.memory import ExportFilter
from exporter.store.read_protocol import ErrorReader, ReadThroughView

BATCH = 500


def export_chunks(monitor: ErrorReader, flt: ExportFilter, batch: int = BATCH) -> Iterator[bytes]:
    """The export document, in chunks; the caller has validated ``flt``."""
    with monitor.reading():  # one bounded wait for queued reports, not one per part
        head = export_head(monitor)
    opening = json_text(head)[:-1] + ',"all_records":['
    return _body(monitor, flt, batch, opening.encode("ascii"))


def _body(monitor: ErrorReader, flt: ExportFilter, batch: int, opening: bytes) -> Iterator[bytes]:
    yield opening
    pending: list[dict[str, Any]] = []
    last_seq = flt.cursor
    next_cursor: int | None = None
    separator = ""
    # a monitor reads its records from the backend it chose (a shared store: the fleet's)
    source = monitor.view.store if isinstance(monitor, ReadThroughView) else monitor.store
    for written, (seq, record) in enumerate(source.iter_records(flt)):
        if flt.limit is not None and written >= flt.limit:
            next_cursor = last_seq
            break
        pending.append(record.to_dict())
        last_seq = seq
        if len(pending) >= batch:
            yield (separator + json_text(pending)[1:-1]).encode("ascii")
            separator = ","
            pending = []
    if pending:
        yield (separator + json_text(pending)[1:-1]).encode("ascii")
    yield ('],"next_cursor":' + json_text(next_cursor) + "}").encode("ascii")
