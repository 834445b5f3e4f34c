"""The ``error-exporter`` command line: demo, watch, analyze, export, check-config.

The few formatting helpers that ``watch`` and ``analyze`` share live here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console

SPARK_CHARS = "▁▂▃▄▅▆▇█"


class PipeConsole(Console):
    """A rich Console that lets ``main`` treat a closed pipe (``| head``) as success.

    Rich's default exits with status 1 when the reader goes away; a report that was read
    as far as the reader wanted is not a failure.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("stdout closed by the reader")
SEVERITY_STYLES = {
    "low": "green",
    "medium": "yellow",
    "high": "red",
    "critical": "bold white on red",
    "warning": "yellow",
    "error": "red",
    "healthy": "green",
    "degraded": "yellow",
    "unhealthy": "bold white on red",
}


def sparkline(values: Sequence[float]) -> str:
    """Unicode sparkline of a series; empty input gives an empty string."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARK_CHARS[0] * len(values)
    last = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[min(last, round(v / top * last))] for v in values)


def bar(value: float, maximum: float, width: int = 20) -> str:
    """A horizontal bar of full and partial blocks, ``value`` out of ``maximum``."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = round(min(value / maximum, 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")


def to_epoch(value: Any) -> float | None:
    """Seconds since the epoch from a float or an ISO 8601 string (both appear in exports)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def age(value: Any, now: float | None = None) -> str:
    """'12s', '5m', '3h' or '2d' since a timestamp; '-' when unknown."""
    stamp = to_epoch(value)
    if stamp is None:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def shorten(text: Any, width: int) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def location(group: dict[str, Any]) -> str:
    """'file.py:42 function' of a group summary or report; '-' when unknown."""
    path = group.get("file_path") or ""
    if not path:
        return "-"
    short = "/".join(str(path).replace("\\", "/").split("/")[-2:])
    line = group.get("line_number")
    where = f"{short}:{line}" if line else short
    func = group.get("function_name")
    return f"{where} {func}" if func else where


def where(group: dict[str, Any]) -> str:
    """'component/plugin' of a group, whichever parts are set."""
    parts = [str(group.get("component") or ""), str(group.get("plugin") or "")]
    return "/".join(p for p in parts if p) or "-"
