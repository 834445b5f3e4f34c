"""JSON export to files: atomic, private, bounded in number.

A reader never sees a half-written file (temp file in the same directory, fsync, then
``os.replace``), the file is created 0600 because reports can hold what the scrubber
did not recognise, and auto-exports keep at most ``max_export_files`` files.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .model import ErrorRecord, iso_text, iso_time

AUTO_EXPORT_GLOB = "errors_*.json"
# The parts of an export that describe every error the monitor counted, whatever the filters:
# only ``all_records`` is filtered. The document says so in its ``global`` key.
GLOBAL_PARTS = ("summary", "statistics", "analysis")


def dumps(data: Any, indent: int | None = 2) -> str:
    """JSON text for export data; anything left non-JSON becomes its ``str``."""
    return json.dumps(data, indent=indent, default=str, ensure_ascii=False)


def write_atomic(
    path: str | Path, text: str | Iterable[str], mode: int = 0o600, make_parents: bool = True
) -> Path:
    """Write text (or chunks of text) to ``path`` atomically with ``mode`` permissions.

    ``make_parents`` creates missing directories (as the aggregator's export did); the CLI
    turns it off so a mistyped ``-o`` path is an error, not a new directory tree.
    """
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            if isinstance(text, str):
                handle.write(text)
            else:
                for chunk in text:
                    handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


def auto_export_path(directory: str | Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S_%f")
    return Path(directory) / f"errors_{stamp}.json"


def prune(directory: str | Path, keep: int) -> list[Path]:
    """Delete the oldest auto-export files beyond ``keep``; returns what was deleted."""
    files = sorted(Path(directory).glob(AUTO_EXPORT_GLOB))
    doomed = files[: max(len(files) - keep, 0)]
    for path in doomed:
        with contextlib.suppress(OSError):
            path.unlink()
    return doomed


class ExportReader(Protocol):
    """What an export document is read from: a monitor, or the multiprocess view."""

    def get_error_summary(self) -> dict[str, Any]: ...

    def get_statistics(self) -> dict[str, Any]: ...

    def get_error_analysis(self) -> dict[str, Any]: ...


def export_head(reader: ExportReader) -> dict[str, Any]:
    """Everything of the export document but the records and the cursor, in key order."""
    summary = dict(reader.get_error_summary())
    if "session_start" in summary:
        summary["session_start"] = iso_text(summary["session_start"])
    return {
        "exported_at": iso_time(datetime.now()),
        "global": list(GLOBAL_PARTS),
        "summary": summary,
        "statistics": reader.get_statistics(),
        "analysis": reader.get_error_analysis(),
    }


def export_document(
    reader: ExportReader, records: Iterable[tuple[int, ErrorRecord]], limit: int | None,
    cursor: int,
) -> dict[str, Any]:
    """``ErrorAggregator``'s export shape plus statistics, analysis and a paging cursor (one page).

    ``next_cursor`` is the sequence number to pass back for the next page, None at the end.
    ``summary``, ``statistics`` and ``analysis`` describe every error (``global`` lists them);
    only ``all_records`` is filtered.
    """
    page: list[dict[str, Any]] = []
    next_cursor = None
    last_seq = cursor
    for seq, record in records:
        if limit is not None and len(page) >= limit:
            next_cursor = last_seq
            break
        page.append(record.to_dict())
        last_seq = seq
    head = export_head(reader)
    return {
        "exported_at": head["exported_at"],
        "global": head["global"],
        "summary": head["summary"],
        "all_records": page,
        "statistics": head["statistics"],
        "analysis": head["analysis"],
        "next_cursor": next_cursor,
    }
