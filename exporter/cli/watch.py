"""``error-exporter watch``: a live view of a running monitor, over its HTTP API.

It polls the JSON API (and /metrics for resources when the statistics carry none), keeps
the last good data on screen when the app goes away, and says so, because the app being
restarted is exactly when someone is watching. ``--no-rich`` prints one plain line per
refresh for pipes and logs. The demo uses the same loop against its own server.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from exporter.cli import (
    SEVERITY_STYLES,
    Col,
    FitRow,
    FitTable,
    PipeConsole,
    age,
    shorten,
    sparkline,
    told_apart,
    where,
)
from exporter.cli.client import ApiClient, ApiError, AuthRequired
from exporter.cli.release_view import current_release, marker, regressed
from exporter.metrics.families import RESOURCES

TOP_LIMIT = 8
RECENT_LIMIT = 50
NEW_GROUPS_KEPT = 8
PATTERNS_SHOWN = 8
_PATTERN_RANK = {"warning": 1, "error": 2, "critical": 3}
PANEL_TITLES = (
    "Error rate",
    "Top errors",
    "New groups",
    "Active patterns",
    "Plugin health",
    "Resources",
)

_FORMATS: dict[str, Callable[[float], str]] = {
    "ratio": lambda v: f"{v * 100:.1f}%",
    "bytes": lambda v: f"{v / 2**20:.0f} MiB",
    "count": lambda v: f"{v:.0f}",
}
# (metric name without namespace, label, how to show the sample value), from metrics/families.py
_RESOURCE_METRICS = tuple((f.name, f.label, _FORMATS[f.unit]) for f in RESOURCES if f.label)
# keys of a ResourceSnapshot dict (``ErrorMonitoringService``'s shape) in statistics["resources"]
_RESOURCE_KEYS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("cpu_percent", "CPU", lambda v: f"{v:.1f}%"),
    ("memory_percent", "Memory", lambda v: f"{v:.1f}%"),
    ("memory_used_mb", "Memory used", lambda v: f"{v:.0f} MiB"),
    ("memory_available_mb", "Memory free", lambda v: f"{v:.0f} MiB"),
    ("process_cpu_percent", "Process CPU", lambda v: f"{v:.1f}%"),
    ("thread_count", "Threads", lambda v: f"{v:.0f}"),
    ("process_open_files", "Open files", lambda v: f"{v:.0f}"),
    ("process_count", "Processes", lambda v: f"{v:.0f}"),
)


@dataclass
class Snapshot:
    """What one refresh fetched."""

    taken_at: float
    statistics: dict[str, Any]
    top: list[dict[str, Any]]
    new_groups: list[dict[str, Any]]
    patterns: list[dict[str, Any]]
    plugins: dict[str, dict[str, Any]]
    resources: dict[str, str]
    rate: float | None
    fresh: list[dict[str, Any]] = field(default_factory=list)  # new in this refresh
    release: str | None = None  # the release groups are NEW in (release_view.py)
    regressed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class WatchState:
    """What the view remembers between refreshes: rates, seen groups, plugins, last data."""

    url: str
    last_total: float | None = None
    last_time: float | None = None
    rates: deque[float] = field(default_factory=lambda: deque(maxlen=40))
    seen: set[str] = field(default_factory=set)
    new_groups: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=NEW_GROUPS_KEPT))
    plugins: set[str] = field(default_factory=set)
    baseline: bool = False
    last: Snapshot | None = None
    problem: str | None = None  # set while the connection is lost
    good_polls: int = 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def resources_from_statistics(stats: dict[str, Any]) -> dict[str, str]:
    """The latest resource snapshot carried by /api/v1/statistics, if any."""
    res = stats.get("resources")
    if isinstance(res, dict) and isinstance(res.get("latest"), dict):
        res = res["latest"]
    if not isinstance(res, dict):
        return {}
    shown = {}
    for key, label, fmt in _RESOURCE_KEYS:
        value = _number(res.get(key))
        if value is not None:
            shown[label] = fmt(value)
    return shown


def resources_from_metrics(text: str) -> dict[str, str]:
    """The app_system_* / app_process_* gauges of a /metrics page (any namespace)."""
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for suffix, _, _ in _RESOURCE_METRICS:
                if (
                    (family.name == suffix or family.name.endswith("_" + suffix))
                    and family.samples
                    and not family.name.startswith("process_")
                ):
                    values.setdefault(suffix, family.samples[0].value)
    except ValueError:  # a page that is not the text format: show nothing rather than die
        return {}
    return {
        label: fmt(values[suffix]) for suffix, label, fmt in _RESOURCE_METRICS if suffix in values
    }


def poll(client: ApiClient, state: WatchState, now: float | None = None) -> Snapshot:
    """Fetch one refresh worth of data and fold it into ``state``; raises ApiError."""
    stats = client.statistics()
    top = client.errors(sort="count", limit=TOP_LIMIT)
    recent = client.errors(sort="last_seen", limit=RECENT_LIMIT)
    patterns = client.patterns()
    now = time.monotonic() if now is None else now

    total = _number(stats.get("total_errors"))
    rate = None
    if total is not None:
        if (
            state.last_total is not None
            and state.last_time is not None
            and total >= state.last_total
            and now > state.last_time
        ):
            rate = (total - state.last_total) / (now - state.last_time)
            state.rates.append(rate)
        state.last_total, state.last_time = total, now

    fresh = []
    for group in recent + top:
        error_id = str(group.get("error_id", ""))
        if error_id and error_id not in state.seen:
            state.seen.add(error_id)
            if state.baseline:
                state.new_groups.appendleft(group)
                fresh.append(group)
    state.baseline = True

    by_plugin = stats.get("errors_by_plugin")
    if isinstance(by_plugin, dict):
        state.plugins.update(str(p) for p in by_plugin if p)
    state.plugins.update(str(g["plugin"]) for g in recent + top if g.get("plugin"))
    plugins = {name: client.plugin_health(name) for name in sorted(state.plugins)}

    resources = resources_from_statistics(stats)
    if not resources:
        resources = resources_from_metrics(client.metrics_text())

    shown = list({str(g.get("error_id")): g for g in recent + top}.values())
    snap = Snapshot(
        time.time(),
        stats,
        top,
        list(state.new_groups),
        patterns,
        plugins,
        resources,
        rate,
        fresh,
        current_release(shown),
        regressed(shown),
    )
    state.last, state.problem = snap, None
    state.good_polls += 1
    return snap


# -- plain output ---------------------------------------------------------------------


def ranked_patterns(patterns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worst first: by pattern severity, then by count."""
    return sorted(
        patterns,
        key=lambda p: (-_PATTERN_RANK.get(str(p.get("severity")), 0), -float(p.get("count") or 0)),
    )


def plain_line(snap: Snapshot) -> str:
    """One pipe-friendly line: key=value fields, lists comma-separated."""
    stats = snap.statistics
    stamp = datetime.fromtimestamp(snap.taken_at).strftime("%H:%M:%S")
    rate = "-" if snap.rate is None else f"{snap.rate:.1f}/s"
    groups = stats.get("total_unique_errors", stats.get("unique_errors", len(snap.top)))
    top = ",".join(f"{g.get('error_type')}x{g.get('occurrence_count')}" for g in snap.top[:3])
    new = ",".join(f"{g.get('error_type')}@{where(g)}" for g in snap.fresh[:3])
    worst: dict[str, str] = {}
    for p in ranked_patterns(snap.patterns):
        worst.setdefault(str(p.get("error_type") or p.get("key")), str(p.get("severity")))
    patterns = ",".join(f"{name}:{sev}" for name, sev in list(worst.items())[:4])
    plugins = ",".join(f"{name}:{h.get('status', '?')}" for name, h in snap.plugins.items())
    res = " ".join(
        f"{k.lower().replace(' ', '_')}={v}"
        for k, v in snap.resources.items()
        if k in ("CPU", "Memory", "Threads")
    )
    fields = [
        stamp,
        f"total={stats.get('total_errors', 0)}",
        f"rate={rate}",
        f"groups={groups}",
        f"new={len(snap.fresh)}" + (f"[{new}]" if new else ""),
        f"top={top or '-'}",
        f"patterns={patterns or '-'}",
        f"plugins={plugins or '-'}",
    ]
    if snap.regressed:
        back = ",".join(
            f"{g.get('error_type')}@{g.get('last_seen_version') or '-'}" for g in snap.regressed[:3]
        )
        fields.append(f"regressed={len(snap.regressed)}[{back}]")
    if res:
        fields.append(res)
    return " ".join(fields)


def lost_line(state: WatchState, refresh: float) -> str:
    stamp = datetime.now().strftime("%H:%M:%S")
    return f"{stamp} connection lost to {state.url}: {state.problem}; retrying every {refresh:g}s"


# -- rich output ----------------------------------------------------------------------


def _styled(value: Any) -> Text:
    text = str(value or "-")
    return Text(text, style=SEVERITY_STYLES.get(text.lower(), ""))


_MARKER_STYLES = {"REGRESSED": "bold red", "NEW": "bold yellow", "resolved": "green"}


def _marked(text: str) -> Text:
    return Text(text or "-", style=_MARKER_STYLES.get(text, "dim"))


def _rate_panel(snap: Snapshot, state: WatchState) -> Panel:
    rate = "-" if snap.rate is None else f"{snap.rate:.1f}"
    body = Text()
    body.append(f"{rate} errors/s", style="bold")
    body.append(f"\ntotal {snap.statistics.get('total_errors', 0)}\n")
    body.append(sparkline(list(state.rates)) or "(collecting…)", style="cyan")
    by_sev = snap.statistics.get("errors_by_severity") or {}
    if isinstance(by_sev, dict):
        body.append("\n")
        for sev in ("critical", "high", "medium", "low"):
            body.append(f"{sev} {by_sev.get(sev, 0)}  ", style=SEVERITY_STYLES[sev])
    return Panel(body, title="Error rate", border_style="cyan")


# Columns by priority: 0 always shown; the highest number goes first when the view is narrow
# (80 columns, or a pipe). Headers are never cut (see exporter.cli.FitTable).
_PLAIN = {"box": None, "show_edge": False}


def _top_panel(snap: Snapshot) -> Panel:
    columns = [
        Col("count", options={"justify": "right"}),
        Col("type", min_width=15, cap=28),
        Col("severity", 3),
        Col("where", 2, min_width=10, cap=24),
        Col("location", 1, min_width=24, cap=56),
        Col("message", 4, min_width=16, flex=True),
    ]
    rows = [
        [
            str(g.get("occurrence_count", "")),
            str(g.get("error_type", "")),
            _styled(g.get("severity")),
            where(g),
            place,
            shorten(g.get("error_message"), 100),
        ]
        for g, place in zip(snap.top, told_apart(snap.top), strict=True)
    ]
    if any(marker(g, snap.release) for g in snap.top):  # release health: only when it says
        columns.insert(5, Col("state", options={"no_wrap": True}))  # something
        for row, g in zip(rows, snap.top, strict=True):
            row.insert(5, _marked(marker(g, snap.release)))
    return Panel(
        FitTable(columns, rows, **_PLAIN) if snap.top else Text("no errors yet"), title="Top errors"
    )


def _new_panel(snap: Snapshot) -> Panel:
    columns = [
        Col("age", min_width=7),
        Col("type", min_width=12, cap=28),
        Col("where", 2, min_width=10, cap=24),
        Col("message", 3, min_width=10, flex=True),
    ]
    rows = [
        [
            age(g.get("first_occurrence")) + " ago",
            str(g.get("error_type", "")),
            where(g),
            shorten(g.get("error_message"), 100),
        ]
        for g in snap.new_groups
    ]
    empty = Text("none since the view started")
    return Panel(
        FitTable(columns, rows, **_PLAIN) if snap.new_groups else empty, title="New groups"
    )


def _patterns_panel(snap: Snapshot) -> Panel:
    columns = [
        Col("pattern", min_width=10, cap=30),
        Col("count", options={"justify": "right"}),
        Col("severity", 1),
        Col("kind", 2),
        Col("plugins", 3, min_width=7, flex=True),
    ]
    ranked = ranked_patterns(snap.patterns)
    rows = [
        [
            shorten(p.get("error_type") or p.get("key"), 30),
            str(p.get("count", "")),
            _styled(p.get("severity")),
            str(p.get("kind", "")),
            ",".join(str(x) for x in p.get("affected_plugins") or []) or "-",
        ]
        for p in ranked[:PATTERNS_SHOWN]
    ]
    more = (
        {"caption": f"and {len(ranked) - PATTERNS_SHOWN} more"}
        if len(ranked) > PATTERNS_SHOWN
        else {}
    )
    return Panel(
        FitTable(columns, rows, **_PLAIN, **more) if snap.patterns else Text("no active patterns"),
        title="Active patterns",
    )


def _plugins_panel(snap: Snapshot) -> Panel:
    columns = [Col("plugin", min_width=8, cap=24), Col("status"), Col("recent", 2), Col("total", 1)]
    rows = [
        [
            name,
            _styled(health.get("status")),
            str(health.get("recent_error_count", "")),
            str(health.get("total_errors", "")),
        ]
        for name, health in snap.plugins.items()
    ]
    return Panel(
        FitTable(columns, rows, **_PLAIN) if snap.plugins else Text("no plugins seen"),
        title="Plugin health",
    )


def _resources_panel(snap: Snapshot) -> Panel:
    table = Table.grid(padding=(0, 2))
    for label, value in snap.resources.items():
        table.add_row(label, value)
    return Panel(table if snap.resources else Text("no resource data"), title="Resources")


def render(state: WatchState, refresh: float) -> RenderableType:
    """The whole view: a header line and six panels in two columns."""
    header = Text(f"error-exporter watch  {state.url}  ", style="bold")
    if state.problem:
        header.append(
            f"connection lost ({state.problem}), retrying every {refresh:g}s", style="bold red"
        )
    else:
        header.append(datetime.now().strftime("%H:%M:%S"), style="dim")
    snap = state.last
    if snap is None:
        waiting = "waiting for the first answer…" if not state.problem else ""
        return Group(header, Text(waiting), *(Panel("-", title=t) for t in PANEL_TITLES))
    return Group(
        header,
        _row(_rate_panel(snap, state), _plugins_panel(snap), _resources_panel(snap)),
        _top_panel(snap),
        _row(_new_panel(snap), _patterns_panel(snap)),
    )


def _row(*panels: Panel) -> FitRow:
    """Side by side on a wide terminal; fewer per row on a narrow one (80 columns)."""
    return FitRow(*panels)


# -- the loop -------------------------------------------------------------------------


def _refresh_once(client: ApiClient, state: WatchState) -> None:
    """One poll; connection trouble is recorded in ``state``, auth trouble raised."""
    try:
        poll(client, state)
    except AuthRequired:
        raise
    except ApiError as exc:
        state.problem = exc.reason


def run_watch(
    client: ApiClient,
    refresh: float = 2.0,
    use_rich: bool = True,
    iterations: int | None = None,
    stop_event: threading.Event | None = None,
    out: TextIO | None = None,
) -> int:
    """Refresh until stopped or ``iterations`` done; 0 when at least one poll worked."""
    stop = stop_event or threading.Event()
    stream = out or sys.stdout
    state = WatchState(client.base_url)
    count = 0

    def more() -> bool:
        return not stop.is_set() and (iterations is None or count < iterations)

    if use_rich:
        console = PipeConsole(file=stream)
        with Live(render(state, refresh), console=console, auto_refresh=False) as live:
            while more():
                _refresh_once(client, state)
                live.update(render(state, refresh), refresh=True)
                count += 1
                if more():
                    stop.wait(refresh)
    else:
        while more():
            _refresh_once(client, state)
            line = (
                lost_line(state, refresh)
                if state.problem or not state.last
                else plain_line(state.last)
            )
            print(line, file=stream, flush=True)
            count += 1
            if more():
                stop.wait(refresh)
    return 0 if state.good_polls or iterations is None else 1
