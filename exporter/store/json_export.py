"""JSON export to files: atomic, private, bounded in number.

A reader never sees a half-written file (temp file in the same directory, fsync, then
``os.replace``), the file is created 0600 because reports can hold what the scrubber
did not recognise, and auto-exports keep at most ``max_export_files`` files.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from exporter.config import ConfigError
from exporter.model import ErrorRecord, iso_text, iso_time, json_text

AUTO_EXPORT_GLOB = "errors_*.json"
# The parts of an export that describe every error the monitor counted, whatever the filters:
# only ``all_records`` is filtered. The document says so in its ``global`` key.
GLOBAL_PARTS = ("summary", "statistics", "analysis")


def document_text(data: Any) -> str:
    """An export document as written to a file: indented, its text kept readable."""
    return json_text(data, indent=2, ascii_only=False)


class ExportWriteError(OSError):
    """An export file could not be written. The message names the file the user asked for
    and the cause in their terms, never the temporary file beside it: a bare
    ``No such file or directory: '/proc/.x.json.k2j9.tmp'`` names a file nobody asked for
    and a cause (a missing file) that is not the problem. ``errno`` is the system's."""

    def __init__(self, target: Path, reason: str, code: int | None) -> None:
        super().__init__(code, reason, str(target))
        self.target = target
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write export to {self.target}: {self.reason}"


_KINDS: dict[type[OSError], type[ExportWriteError]] = {}


def export_write_error(target: Path, reason: str, code: int | None) -> ExportWriteError:
    """The error, also of the built-in kind its errno makes (PermissionError,
    FileNotFoundError...), so ``except PermissionError`` around an export still works."""
    kind = type(OSError(code, reason)) if code is not None else OSError
    if kind is OSError:
        return ExportWriteError(target, reason, code)
    cls = _KINDS.get(kind)
    if cls is None:
        cls = _KINDS.setdefault(
            kind,
            type(f"ExportWrite{kind.__name__}", (ExportWriteError, kind), {"__module__": __name__}),
        )
    return cls(target, reason, code)


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_PERMISSION = {errno.EACCES, errno.EPERM}


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def why_no_file(directory: Path, exc: OSError, create_missing: bool) -> str:
    """Why no file could be created in ``directory`` (``exc`` is what the system said)."""
    text = exc.strerror or str(exc)
    if not directory.exists():
        ancestor = _nearest_existing(directory)
        if not ancestor.is_dir():
            return f"{ancestor} is not a directory"
        if not create_missing:
            return f"the directory {directory} does not exist"
        return f"cannot create the directory {directory}: {_why_not_here(ancestor, exc, text)}"
    if not directory.is_dir():
        return f"{directory} is not a directory"
    return _why_not_here(directory, exc, text)


def _why_not_here(directory: Path, exc: OSError, text: str) -> str:
    """An existing directory refused a new entry: the system's reason, in words."""
    if exc.errno in _NO_PERMISSION:
        return f"no permission to create files in {directory} ({text})"
    if exc.errno == errno.EROFS:
        return f"{directory} is on a read-only file system"
    if exc.errno in _NO_SPACE:
        return f"no space left on the device of {directory} ({text})"
    if exc.errno == errno.ENOENT:  # it exists, yet "no such file": /proc, /sys and the like
        return f"the directory {directory} does not accept new files ({text})"
    return f"cannot create a file in {directory} ({text})"


def _why_not_written(target: Path, exc: OSError) -> str:
    text = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return f"no space left on the device of {target.parent} ({text})"
    if exc.errno == errno.EISDIR or target.is_dir():
        return f"{target} is a directory; name a file in it"
    if exc.errno in _NO_PERMISSION:
        return f"no permission to replace {target} ({text})"
    return f"writing it failed ({text})"


def write_atomic(
    path: str | Path, text: str | Iterable[str], mode: int = 0o600, make_parents: bool = True
) -> Path:
    """Write text (or chunks of text) to ``path`` atomically with ``mode`` permissions.

    ``make_parents`` creates missing directories (as the aggregator's export did); the CLI
    turns it off so a mistyped ``-o`` path is an error, not a new directory tree. Every
    failure is an :class:`ExportWriteError` naming ``path`` and the cause.
    """
    target = Path(path)
    if target.is_dir():
        raise export_write_error(
            target,
            f"{target} is a directory; name a file in it (e.g. {target / 'errors.json'})",
            errno.EISDIR,
        )
    try:
        if make_parents:
            target.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # when a file is written, not at import

        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        reason = why_no_file(target.parent, exc, make_parents)
        raise export_write_error(target, reason, exc.errno) from exc
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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and not isinstance(exc, ExportWriteError):
            raise export_write_error(target, _why_not_written(target, exc), exc.errno) from exc
        raise
    return target


def check_export_path(path: str | None) -> None:
    """Fail fast on an ``export_path`` no auto-export could be written to: a ConfigError
    naming the key and the cause, at construction, rather than a counted ``export_failed``
    drop at the first pattern, hours later.

    A missing directory is fine when it can be created (the first auto-export creates it,
    as the aggregator did). Whether files can be created is tried, not guessed from
    permission bits: root passes every ``os.access`` check, and /proc refuses files anyway.
    """
    if not path:
        return
    directory = Path(path)
    probe_in = directory if directory.exists() else _nearest_existing(directory)
    try:
        if not probe_in.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe_in))
        import tempfile

        fd, probe = tempfile.mkstemp(prefix=".error-exporter-probe-", suffix=".tmp", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = why_no_file(directory, exc, True)
        raise ConfigError(
            f"export_path: auto-exports cannot be written to {path}: {reason}"
        ) from None


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
    reader: ExportReader,
    records: Iterable[tuple[int, ErrorRecord]],
    limit: int | None,
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
