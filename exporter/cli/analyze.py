"""``error-exporter analyze``: ``ErrorMonitoringService``'s comprehensive report, from a live
app or an export.

Both sources are folded into one report dict (printed as is by ``--json``), so the tables
and any script reading the JSON see the same thing whether the app is still running or
only its export file is left. Exports of the legacy aggregator (``ErrorAggregator``: exported_at,
summary, all_records) are accepted too, which helps when migrating.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from rich.text import Text

from exporter.cli import (
    SEVERITY_STYLES,
    Col,
    FitTable,
    age,
    bar,
    location,
    shorten,
    sparkline,
    to_epoch,
    told_apart,
    where,
)
from exporter.cli.client import ApiClient
from exporter.cli.release_view import current_release, marker, regressed
from exporter.model import PATTERN_SEVERITY_VALUE, json_text, trace_frames

TOP_N = 10
REGRESSED_N = 10
GROUPS_READ = 1000  # groups read from a live app for the release health list
TIMELINE_BUCKETS = 12
BAR_WIDTH = 12
_GROUP_FIELDS = (
    "error_id",
    "error_type",
    "error_message",
    "severity",
    "priority",
    "component",
    "plugin",
    "operation",
    "file_path",
    "line_number",
    "function_name",
    "occurrence_count",
    "first_occurrence",
    "last_occurrence",
    "frequency_per_hour",
    "affected_users",
    "recovery_attempted",
    "recovery_successful",
    "last_occurrence_epoch",
    "first_seen_version",
    "last_seen_version",
    "resolved",
    "resolved_version",
    "regressed",
    "regressed_at",
    "regressed_at_epoch",
)
_REGRESSED_FIELDS = (
    "error_id",
    "error_type",
    "error_message",
    "occurrence_count",
    "first_seen_version",
    "last_seen_version",
    "resolved_version",
    "regressed_at",
    "regressed_at_epoch",
)


class NotAnExport(ValueError):
    """The file is not something ``error-exporter export`` (or the aggregator) wrote."""


# -- building the report --------------------------------------------------------------


def _top_entry(item: dict[str, Any]) -> dict[str, Any]:
    """A top error of the analysis ({error_id, occurrence_count, report}) as a flat row."""
    found = item.get("report")
    report: dict[str, Any] = found if isinstance(found, dict) else {}
    merged = {**report, **{k: v for k, v in item.items() if k != "report"}}
    row = {key: merged.get(key) for key in _GROUP_FIELDS}
    row["location"] = location(merged)
    row["frames"] = merged.get("frames") or trace_frames(merged.get("stack_trace"))
    return row


def _timelines(records: list[dict[str, Any]], ids: list[str]) -> dict[str, list[int]]:
    """Occurrences per time bucket for each error id, over the span of all records."""
    stamps = [(str(r.get("error_id", "")), to_epoch(r.get("timestamp"))) for r in records]
    known = [(i, t) for i, t in stamps if t is not None]
    if not known:
        return {}
    start = min(t for _, t in known)
    span = max(max(t for _, t in known) - start, 1e-9)
    lines = {i: [0] * TIMELINE_BUCKETS for i in ids}
    for error_id, stamp in known:
        if error_id in lines:
            index = min(TIMELINE_BUCKETS - 1, int((stamp - start) / span * TIMELINE_BUCKETS))
            lines[error_id][index] += 1
    return lines


def build_report(
    analysis: dict[str, Any],
    statistics: dict[str, Any] | None,
    patterns: list[dict[str, Any]] | None,
    records: list[dict[str, Any]],
    source: str,
    groups: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report of ``analyze --json``: one shape for both sources.

    ``groups``: every group summary, when the source has them (a live app); else the
    release health of the top errors is all that is known."""
    stats = statistics or analysis.get("statistics") or {}
    top = [_top_entry(t) for t in analysis.get("top_errors") or [] if isinstance(t, dict)]
    top = top[:TOP_N]
    lines = _timelines(records, [str(t["error_id"]) for t in top])
    known = groups if groups is not None else top
    release = current_release(known)
    for row in top:
        row["timeline"] = lines.get(str(row["error_id"]), [])
        row["state"] = marker(row, release)
    back = [{key: g.get(key) for key in _REGRESSED_FIELDS} for g in regressed(known)]
    if patterns is None:
        found = analysis.get("patterns")
        patterns = found.get("patterns", []) if isinstance(found, dict) else found or []
    return {
        "source": source,
        "statistics": stats,
        "total_unique_errors": analysis.get("total_unique_errors", len(top)),
        "session_count": analysis.get("session_count"),
        "top_errors": top,
        "patterns": patterns,
        "sessions": analysis.get("sessions"),
        "recovery": analysis.get("recovery"),
        "release": release,
        "regressed": back[:REGRESSED_N],
    }


def report_from_api(client: ApiClient) -> dict[str, Any]:
    """The report of a running app (raises ApiError)."""
    analysis = client.analysis()
    statistics = client.statistics()
    patterns = client.patterns()
    groups = client.errors(sort="last_seen", limit=GROUPS_READ)
    return build_report(analysis, statistics, patterns, [], client.base_url, groups)


def load_export(path: str) -> dict[str, Any]:
    """The export at ``path``; NotAnExport / OSError say why not."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise NotAnExport(f"{path}: not an export file (not JSON: {exc})") from None
    if (
        not isinstance(data, dict)
        or "exported_at" not in data
        or not isinstance(data.get("all_records"), list)
    ):
        raise NotAnExport(
            f"{path}: not an export file (expected a JSON object with exported_at and "
            "all_records, as written by `error-exporter export`)"
        )
    return data


def _legacy_analysis(data: dict[str, Any]) -> dict[str, Any]:
    """An analysis for an aggregator export (no analysis key), grouped by type and plugin."""
    found = data.get("summary")
    summary: dict[str, Any] = found if isinstance(found, dict) else {}
    records = [r for r in data["all_records"] if isinstance(r, dict)]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        key = str(r.get("error_id") or f"{r.get('error_type')}@{r.get('plugin_id') or ''}")
        r.setdefault("error_id", key)
        groups[key].append(r)
    top = []
    for key, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        last = items[-1]
        top.append(
            {
                "error_id": key,
                "occurrence_count": len(items),
                "report": {
                    "error_type": last.get("error_type"),
                    "error_message": last.get("message"),
                    "severity": last.get("severity"),
                    "plugin": last.get("plugin_id") or "",
                    "component": last.get("component") or "",
                    "operation": last.get("operation"),
                    "first_occurrence": items[0].get("timestamp"),
                    "last_occurrence": last.get("timestamp"),
                },
            }
        )
    by_type = summary.get("error_counts_by_type") or Counter(
        str(r.get("error_type")) for r in records
    )
    stats = {
        "total_errors": summary.get("total_errors", len(records)),
        "errors_by_type": dict(by_type),
        "average_errors_per_hour": summary.get("error_rate_per_hour"),
    }
    active = summary.get("active_patterns") or {}
    return {
        "statistics": stats,
        "top_errors": top,
        "total_unique_errors": len(groups),
        "patterns": list(active.values()) if isinstance(active, dict) else active,
    }


def report_from_file(path: str) -> dict[str, Any]:
    data = load_export(path)
    analysis = data.get("analysis")
    if not isinstance(analysis, dict):
        analysis = _legacy_analysis(data)
    stats = data.get("statistics") if isinstance(data.get("statistics"), dict) else None
    report = build_report(analysis, stats, None, data["all_records"], path)
    report["exported_at"] = data.get("exported_at")
    return report


# -- rendering ------------------------------------------------------------------------


def _styled(value: Any) -> Text:
    text = str(value or "-")
    return Text(text, style=SEVERITY_STYLES.get(text.lower(), ""))


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in list(value.items())[:6]) or "-"
    if isinstance(value, list):
        return f"{len(value)} items"
    return "-" if value is None else str(value)


def _rate(value: Any) -> str:
    return f"{value * 100:.0f}%" if isinstance(value, (int, float)) else "-"


def _overview(report: dict[str, Any]) -> Table:
    stats = report["statistics"]
    table = Table(title="Statistics", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("Total errors", stats.get("total_errors")),
        ("Unique errors", report.get("total_unique_errors")),
        ("Sessions", report.get("session_count")),
        ("Average errors per hour", stats.get("average_errors_per_hour")),
        ("Recovery success rate", _rate(stats.get("recovery_success_rate"))),
    ]
    if report.get("exported_at"):
        rows.append(("Exported at", report["exported_at"]))
    for label, value in rows:
        table.add_row(label, _scalar(value))
    return table


def _breakdown(title: str, counts: Any) -> Table | None:
    if not isinstance(counts, dict) or not counts:
        return None
    table = Table(title=title, title_justify="left")
    table.add_column("name")
    table.add_column("count", justify="right")
    table.add_column("", style="cyan", min_width=12)
    top = max((v for v in counts.values() if isinstance(v, (int, float))), default=0)
    for name, value in sorted(counts.items(), key=lambda kv: -float(kv[1] or 0))[:12]:
        table.add_row(_styled(name or "-"), _scalar(value), bar(float(value or 0), top, 12))
    return table


def _top_table(report: dict[str, Any]) -> FitTable:
    """One row per top error: count with a bar (and a trend line from an export's records),
    what and where on three lines, so the table stays readable in 80 columns. Groups raised
    at the same line show the caller that tells them apart."""
    right = {"justify": "right"}
    columns = [
        Col("#", options=right),
        Col("count", options=right),
        Col("bar / trend", 3),
        Col("error", min_width=24, flex=True, options={"no_wrap": False, "overflow": "fold"}),
        Col("severity", 1),
        Col("users", 2, options=right),
    ]
    rows = report["top_errors"]
    places = told_apart(rows)
    cells = []
    top = max((float(r.get("occurrence_count") or 0) for r in rows), default=0)
    for i, row in enumerate(rows, 1):
        count = float(row.get("occurrence_count") or 0)
        graph = Text(bar(count, top, BAR_WIDTH), style="cyan")
        trend = sparkline(row.get("timeline") or [])
        if trend:
            graph.append("\n" + trend, style="magenta")
        error = Text(str(row.get("error_type") or "-"), style="bold")
        error.append(f" in {where(row)}")
        error.append("\n" + shorten(row.get("error_message"), 120))
        error.append("\n" + (places[i - 1] or "-"), style="dim")
        severity = _styled(row.get("severity"))
        severity.append("\npriority ")
        severity.append_text(_styled(row.get("priority")))
        if row.get("state"):
            severity.append("\n" + str(row["state"]), style=_STATE_STYLES.get(row["state"], ""))
        cells.append(
            [
                str(i),
                _scalar(row.get("occurrence_count")),
                graph,
                error,
                severity,
                _scalar(row.get("affected_users")),
            ]
        )
    return FitTable(columns, cells, title="Top errors", title_justify="left", show_lines=True)


_STATE_STYLES = {"REGRESSED": "bold red", "NEW": "bold yellow", "resolved": "green"}


def _regressed_table(rows: list[dict[str, Any]]) -> FitTable:
    """Resolved groups that came back, most recent first."""
    columns = [
        Col("regressed", min_width=16, cap=28),
        Col("count", options={"justify": "right"}),
        Col("in version", cap=20),
        Col("since", 1),
        Col("resolved in", 3, cap=20),
        Col("message", 2, min_width=12, flex=True),
    ]
    cells = [
        [
            str(r.get("error_type") or "-"),
            _scalar(r.get("occurrence_count")),
            str(r.get("last_seen_version") or "-"),
            age(r.get("regressed_at_epoch") or r.get("regressed_at")) + " ago",
            str(r.get("resolved_version") or "-"),
            shorten(r.get("error_message"), 80),
        ]
        for r in rows
    ]
    return FitTable(
        columns, cells, title="Regressed (resolved, then seen again)", title_justify="left"
    )


def _patterns_table(patterns: list[dict[str, Any]]) -> FitTable:
    """Worst first: by pattern severity, then by count."""
    columns = [
        Col("pattern", min_width=10, cap=32),
        Col("kind", 3),
        Col("count", options={"justify": "right"}),
        Col("severity", 1),
        Col("plugins", 4, cap=20),
        Col("last seen", 2),
        Col("sample", 5, min_width=12, flex=True),
    ]
    ranked = sorted(
        patterns,
        key=lambda p: (
            -PATTERN_SEVERITY_VALUE.get(str(p.get("severity")), 0),
            -float(p.get("count") or 0),
        ),
    )
    rows = []
    for p in ranked:
        plugins = ",".join(str(x) for x in p.get("affected_plugins") or []) or "-"
        samples = p.get("sample_messages") or []
        rows.append(
            [
                str(p.get("error_type") or p.get("key") or "-"),
                str(p.get("kind", "-")),
                _scalar(p.get("count")),
                _styled(p.get("severity")),
                plugins,
                age(p.get("last_seen")) + " ago",
                shorten(samples[0] if samples else "", 80),
            ]
        )
    return FitTable(columns, rows, title="Patterns", title_justify="left")


def _generic_table(title: str, value: Any) -> Table | None:
    """Sessions and recovery, whatever their exact shape: rows of name and value."""
    if value in (None, {}, []):
        return None
    table = Table(title=title, title_justify="left")
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        columns = [
            k
            for k in dict.fromkeys(k for v in value for k in v)
            if all(not isinstance(v.get(k), (dict, list)) for v in value)
        ][:8]
        for column in columns:
            table.add_column(column)
        for item in value[:15]:
            table.add_row(*(_scalar(item.get(c)) for c in columns))
        if len(value) > 15:
            table.caption = f"{len(value) - 15} more"
        return table
    table.add_column("name", style="bold")
    table.add_column("value")
    items = value.items() if isinstance(value, dict) else [(title.lower(), value)]
    for name, item in items:
        if (
            isinstance(item, float)
            and ("rate" in str(name) or "ratio" in str(name))
            and 0 <= item <= 1
        ):
            table.add_row(str(name), _rate(item))
        else:
            table.add_row(str(name), _scalar(item))
    return table


def print_report(report: dict[str, Any], console: Console) -> None:
    """The rich tables of the report, in ``ErrorMonitoringService``'s order."""
    console.rule(f"Error analysis: {report['source']}")
    console.print(_overview(report))
    stats = report["statistics"]
    breakdowns = (
        ("By severity", "errors_by_severity"),
        ("By component", "errors_by_component"),
        ("By plugin", "errors_by_plugin"),
        ("By type", "errors_by_type"),
    )
    tables = [_breakdown(title, stats.get(key)) for title, key in breakdowns]
    console.print(Columns([t for t in tables if t is not None], padding=(0, 2)))
    if report["top_errors"]:
        console.print(_top_table(report))
    else:
        console.print("No errors recorded.")
    if report.get("regressed"):
        console.print(_regressed_table(report["regressed"]))
    if report["patterns"]:
        console.print(_patterns_table(report["patterns"]))
    else:
        console.print("No active patterns.")
    for title, key in (("Sessions", "sessions"), ("Recovery", "recovery")):
        table = _generic_table(title, report.get(key))
        if table is not None:
            console.print(table)


def print_json(report: dict[str, Any]) -> None:
    print(json_text(report, indent=2), flush=True)
