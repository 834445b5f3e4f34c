"""The ``error-exporter`` command line: demo, watch, analyze, export, check-config.

The few formatting helpers that ``watch`` and ``analyze`` share live here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich import box as boxes
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

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


def told_apart(groups: Sequence[dict[str, Any]]) -> list[str]:
    """The location of each group; groups raised at the same place get their nearest
    differing caller in front: 'load_ecu (ecu.py:12) → app/conf.py:9 parse'.

    The differing part comes first so that a narrow column, cut at its end, still shows it.
    """
    where = [location(g) for g in groups]
    frames = [
        [
            (f.get("file_path"), f.get("line_number"), f.get("function_name"))
            for f in g.get("frames") or ()
            if isinstance(f, dict)
        ]
        for g in groups
    ]
    out = list(where)
    for i, mine in enumerate(frames):
        others = [frames[j] for j in range(len(groups)) if j != i and where[j] == where[i]]
        if where[i] == "-" or not others:
            continue
        here = (groups[i].get("file_path"), groups[i].get("line_number"))
        start = next((d + 1 for d, f in enumerate(mine) if f[:2] == here), 0)
        for depth in range(start, len(mine)):
            if all(depth >= len(o) or o[depth] != mine[depth] for o in others):
                path, line, function = mine[depth]
                name = str(path or "").replace("\\", "/").rsplit("/", 1)[-1]
                caller = f"{function} ({name}:{line})" if function else f"{name}:{line}"
                skipped = "… → " if depth > start else ""
                out[i] = f"{caller} → {skipped}{where[i]}"
                break
    return out


@dataclass
class Col:
    """A column of a :class:`FitTable`.

    ``priority`` 0 is never dropped; higher numbers are dropped first when the width is short.
    ``flex`` columns take what is left (at least ``min_width``); the others get their content's
    width up to ``cap``, and never less than their header: headers are never cut.
    """

    header: str
    priority: int = 0
    min_width: int = 0
    cap: int | None = None
    flex: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def floor(self) -> int:
        return max(self.min_width, Text(self.header).cell_len, 1)


class FitTable:
    """A rich table that fits its width: columns shrink, then drop by priority.

    Rich alone shrinks every column evenly when a table is too wide, so a four-letter header
    becomes "co…"; this decides the widths first, from the width it is given.
    """

    def __init__(self, columns: Sequence[Col], rows: Sequence[Sequence[Any]], **table: Any) -> None:
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]
        self.table = table

    def _overhead(self, count: int) -> int:
        box = self.table.get("box", boxes.HEAVY_HEAD)
        edge = 2 if box is not None and self.table.get("show_edge", True) else 0
        return count * 2 + (max(count - 1, 0) if box is not None else 0) + edge

    def widths(self, width: int) -> dict[int, int]:
        """Column index -> width for the kept columns (flexible ones: their minimum)."""
        kept = list(range(len(self.columns)))
        while (
            len(kept) > 1
            and sum(self.columns[i].floor for i in kept) + self._overhead(len(kept)) > width
        ):
            droppable = [i for i in kept if self.columns[i].priority > 0]
            if not droppable:
                break
            kept.remove(max(droppable, key=lambda i: (self.columns[i].priority, i)))
        sizes = {}
        for i in kept:
            col = self.columns[i]
            if col.flex:
                sizes[i] = col.floor
                continue
            content = max((_cell_len(row[i]) for row in self.rows if i < len(row)), default=0)
            natural = max(col.floor, content)
            sizes[i] = min(natural, max(col.cap, col.floor)) if col.cap else natural
        excess = sum(sizes.values()) + self._overhead(len(kept)) - width
        while excess > 0:  # shrink the widest fixed column above its floor, one cell at a time
            slack = [
                i for i in kept if not self.columns[i].flex and sizes[i] > self.columns[i].floor
            ]
            if not slack:
                break
            widest = max(slack, key=lambda i: sizes[i] - self.columns[i].floor)
            sizes[widest] -= 1
            excess -= 1
        return sizes

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)

    def build(self, width: int) -> Table:
        sizes = self.widths(width)
        flexible = any(self.columns[i].flex for i in sizes)
        table = Table(
            expand=flexible or bool(self.table.get("expand")),
            **{k: v for k, v in self.table.items() if k != "expand"},
        )
        for i, size in sizes.items():
            col = self.columns[i]
            options = {"no_wrap": True, "overflow": "ellipsis", **col.options}
            if col.flex:
                table.add_column(col.header, ratio=1, min_width=size, **options)
            else:
                table.add_column(col.header, width=size, **options)
        for row in self.rows:
            table.add_row(*(row[i] if i < len(row) else "" for i in sizes))
        return table


def _cell_len(value: Any) -> int:
    if isinstance(value, Text):
        return max((line.cell_len for line in value.split()), default=0)
    if isinstance(value, str):
        return max((Text(line).cell_len for line in value.splitlines()), default=0)
    return 0


class FitRow:
    """Panels side by side while each gets ``min_width`` columns, else fewer per row."""

    def __init__(self, *panels: RenderableType, min_width: int = 36) -> None:
        self.panels = panels
        self.min_width = min_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        per_row = max(1, min(len(self.panels), options.max_width // self.min_width))
        for start in range(0, len(self.panels), per_row):
            grid = Table.grid(expand=True, padding=(0, 1))
            chunk = self.panels[start : start + per_row]
            for _ in range(per_row):
                grid.add_column(ratio=1)
            grid.add_row(*chunk, *([""] * (per_row - len(chunk))))
            yield grid
