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
from typing import Any

AUTO_EXPORT_GLOB = "errors_*.json"


def dumps(data: Any, indent: int | None = 2) -> str:
    """JSON text for export data; anything left non-JSON becomes its ``str``."""
    return json.dumps(data, indent=indent, default=str, ensure_ascii=False)


def write_atomic(path: str | Path, text: str | Iterable[str], mode: int = 0o600) -> Path:
    """Write text (or chunks of text) to ``path`` atomically with ``mode`` permissions."""
    target = Path(path)
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
