"""``error-exporter export``: the JSON export of a running app, written atomically.

The API pages large exports with ``next_cursor``; this follows the cursor and merges the
records, so the file has the same shape as ``ErrorMonitor.export_to_file`` and
``analyze --file`` reads either. The file appears complete or not at all (temporary file
in the same directory, then ``os.replace``) and is readable only by its owner, because
error reports can carry user ids and request context.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from exporter.cli.client import ApiClient, ApiError
from exporter.store.json_export import document_text, write_atomic

PAGE_SIZE = 1000
MAX_PAGES = 100000  # a server that always returns a cursor must not loop us forever


def pages(
    client: ApiClient, filters: dict[str, Any], limit: int | None, page_size: int = PAGE_SIZE
) -> Iterator[dict[str, Any]]:
    """Each page of /api/v1/export, following next_cursor; stops at ``limit`` records."""
    cursor = None
    fetched = 0
    for _ in range(MAX_PAGES):
        size = page_size if limit is None else min(page_size, limit - fetched)
        if size <= 0:
            return
        page = client.export_page(**filters, limit=size, cursor=cursor)
        records = page.get("all_records")
        if not isinstance(records, list):
            raise ApiError(f"{client.url_for('/api/v1/export')} returned no all_records list")
        fetched += len(records)
        yield page
        cursor = page.get("next_cursor")
        if not cursor or not records:
            return
    raise ApiError(f"{client.url_for('/api/v1/export')} kept returning next_cursor")


def collect(
    client: ApiClient,
    filters: dict[str, Any],
    limit: int | None,
    on_page: Callable[[int, int | None], None] | None = None,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """The merged export: the first page's fields, every page's records."""
    merged: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for page in pages(client, filters, limit, page_size):
        if merged is None:
            merged = {k: v for k, v in page.items() if k != "next_cursor"}
        records.extend(page["all_records"])
        if on_page is not None:
            on_page(len(records), _expected_total(merged, limit))
    assert merged is not None  # pages() yields at least once or raises
    merged["all_records"] = records[:limit] if limit is not None else records
    return merged


def _expected_total(page: dict[str, Any], limit: int | None) -> int | None:
    """How many records to expect, when the server says (for the progress bar)."""
    for holder in (page, page.get("summary") or {}):
        value = holder.get("total_records") if isinstance(holder, dict) else None
        if isinstance(value, int):
            return min(value, limit) if limit is not None else value
    return limit


def write_atomically(path: str, data: dict[str, Any]) -> None:
    """Write the export like the monitor's own file export: atomic, mode 0600."""
    write_atomic(path, document_text(data) + "\n", make_parents=False)


def export(
    client: ApiClient,
    output: str,
    filters: dict[str, Any],
    limit: int | None,
    page_size: int = PAGE_SIZE,
) -> int:
    """Fetch and write; returns the number of records written (raises ApiError/OSError)."""
    if sys.stderr.isatty():
        console = Console(file=sys.stderr)
        columns = (
            TextColumn("exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("export", total=None)

            def on_page(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            data = collect(client, filters, limit, on_page, page_size)
    else:
        data = collect(client, filters, limit, page_size=page_size)
    write_atomically(output, data)
    return len(data["all_records"])
