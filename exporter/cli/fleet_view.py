"""``analyze --prometheus`` and ``export --prometheus``: the fleet view on the command line.

Prometheus lists the targets of a job, ``exporter.cli.fleet_merge`` fetches and merges them, and
this module shows progress per target on stderr, prints the merged analysis (the same tables as
``analyze`` plus the fleet's groups and targets) or writes the merged export.

Exit codes: 0 every target merged; 3 partial (some targets failed, the rest merged); 1
Prometheus unreachable, no active target in the job, or no target answered; 2 when every
target refused the filter values (HTTP 400), as for a single app.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from exporter.cli import PipeConsole, age, fleet_merge, shorten
from exporter.cli.client import access_from_args

STATUS_STYLES = {
    "ok": "green",
    "down": "bold red",
    "timeout": "yellow",
    "unauthorized": "magenta",
    "invalid": "red",
}
GROUP_ROWS = 15


class TargetProgress:
    """One line per target on stderr: a spinner while fetching on a terminal, a plain line
    per finished target otherwise (logs, CI, pipes)."""

    def __init__(
        self, targets: list[fleet_merge.Target], prometheus: str, job: str, stream: Any = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.total = len(targets)
        self.finished = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.console = Console(file=self.stream, highlight=False)
        self.progress: Progress | None = None
        self.tasks: dict[str, Any] = {}
        self.header = (
            f"fleet: {self.total} target{'s' if self.total != 1 else ''} of job "
            f"{job!r} from {prometheus}"
        )

    def __enter__(self) -> TargetProgress:
        if self.tty:
            self.console.print(self.header)
            self.progress = Progress(
                SpinnerColumn(finished_text=" "),
                TextColumn("{task.fields[line]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.progress.start()
        else:
            print(self.header, file=self.stream, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start(self, target: fleet_merge.Target) -> None:
        if self.progress is not None:
            line = f"{'fetching':<12} {escape(target.instance)}"
            self.tasks[target.instance] = self.progress.add_task(
                target.instance, total=1, line=line
            )

    def done(self, result: fleet_merge.InstanceResult) -> None:
        self.finished += 1
        line = f"{result.status:<12} {result.target.instance}  {_outcome(result)}"
        if self.progress is not None and result.target.instance in self.tasks:
            self.progress.update(
                self.tasks[result.target.instance],
                completed=1,
                line=f"[{STATUS_STYLES.get(result.status, '')}]"
                f"{result.status:<12}[/] {escape(result.target.instance)}  "
                f"{escape(_outcome(result))}",
            )
        elif self.progress is None:
            print(
                f"  [{self.finished}/{self.total}] {line} ({result.seconds:.2f} s)",
                file=self.stream,
                flush=True,
            )


def _outcome(result: fleet_merge.InstanceResult) -> str:
    if result.ok:
        return f"{result.record_count} records, {len(result.groups)} groups"
    return result.reason or result.status


def collect(
    args: argparse.Namespace,
    filters: dict[str, Any] | None = None,
    limit: int | None = None,
    page_size: int = 1000,
) -> tuple[list[fleet_merge.InstanceResult], dict[str, Any]]:
    """Discover, fetch (with progress) and merge; raises fleet_merge.FleetError."""
    job = args.job or fleet_merge.DEFAULT_JOB
    timeout = args.target_timeout or fleet_merge.DEFAULT_TARGET_TIMEOUT
    targets = fleet_merge.discover(args.prometheus, job, timeout=max(timeout, 10.0))
    fleet_merge.refuse_shared_store(args.prometheus, job, timeout=max(timeout, 10.0))
    with TargetProgress(targets, args.prometheus, job) as progress:
        results = fleet_merge.fetch_all(
            targets,
            args.token,
            timeout,
            filters,
            limit,
            page_size,
            on_start=progress.start,
            on_done=progress.done,
            access=access_from_args(args),
        )
    return results, fleet_merge.merge(results, args.prometheus, job)


def _failure_code(results: list[fleet_merge.InstanceResult], console: Console) -> int | None:
    """The exit code when no target merged (after saying why), else None."""
    if any(r.ok for r in results):
        return None
    console.print(targets_table(results))
    if all(r.http_status == 400 for r in results):
        print(f"error: every target refused the request: {results[0].reason}", file=sys.stderr)
        return 2
    print(f"error: none of the {len(results)} targets answered with an export", file=sys.stderr)
    return fleet_merge.EXIT_FAILED


def _partial_note(results: list[fleet_merge.InstanceResult]) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        listed = "; ".join(f"{r.target.instance} {r.status} ({r.reason})" for r in failed)
        print(
            f"partial view: {len(failed)} of {len(results)} targets failed: {listed}",
            file=sys.stderr,
            flush=True,
        )


def analyze_fleet(args: argparse.Namespace) -> int:
    from exporter.cli.analyze import build_report, print_json, print_report

    try:
        results, doc = collect(args)
    except fleet_merge.FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return fleet_merge.EXIT_FAILED
    code = _failure_code(results, Console(file=sys.stderr))
    if code is not None:
        return code
    analysis = doc["analysis"]
    info = doc["fleet"]
    source = (
        f"{info['merged']} of {info['targets']} instances of job {info['job']!r} "
        f"via {args.prometheus}"
    )
    report = build_report(
        analysis, doc["statistics"], analysis.get("patterns") or [], doc["all_records"], source
    )
    report["exported_at"] = doc["exported_at"]
    for row in report["top_errors"]:
        row["instances"] = next(
            (
                t.get("instances")
                for t in analysis["top_errors"]
                if t["error_id"] == row["error_id"]
            ),
            {},
        )
    report["fleet"] = info
    if args.json:
        print_json(report)
    else:
        console = PipeConsole()
        print_report(report, console)
        print_fleet(info, console)
    _partial_note(results)
    return fleet_merge.exit_code(results)


def export_fleet(args: argparse.Namespace, filters: dict[str, Any]) -> int:
    from exporter.cli.export import write_atomically

    if getattr(args, "url", None):
        print(
            "error: --url and --prometheus exclude each other (one app, or every target of a job)",
            file=sys.stderr,
        )
        return 2
    try:
        results, doc = collect(args, filters, args.limit, args.page_size)
    except fleet_merge.FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return fleet_merge.EXIT_FAILED
    code = _failure_code(results, Console(file=sys.stderr))
    if code is not None:
        return code
    try:
        write_atomically(args.output, doc)
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return fleet_merge.EXIT_FAILED
    info = doc["fleet"]
    print(
        f"wrote {len(doc['all_records'])} records from {info['merged']} of "
        f"{info['targets']} instances to {args.output}",
        flush=True,
    )
    _partial_note(results)
    return fleet_merge.exit_code(results)


# -- rendering ------------------------------------------------------------------------


def _instances_text(instances: dict[str, int]) -> str:
    ranked = sorted(instances.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name}={count}" for name, count in ranked)


def groups_table(info: dict[str, Any]) -> Table:
    """The fleet's groups: type, total count, per-instance counts, last seen."""
    groups = info.get("groups") or []
    table = Table(title="Fleet groups", title_justify="left", expand=True)
    table.add_column("error", ratio=1, overflow="fold")
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("instances", ratio=1, overflow="fold")
    table.add_column("last seen", no_wrap=True)
    for group in groups[:GROUP_ROWS]:
        error = Text(str(group.get("error_type") or "-"), style="bold")
        error.append(" " + shorten(group.get("error_message"), 60))
        last = group.get("last_occurrence_epoch", group.get("last_occurrence"))
        table.add_row(
            error,
            str(group.get("occurrence_count") or 0),
            _instances_text(group.get("instances") or {}),
            age(last) + " ago",
        )
    if len(groups) > GROUP_ROWS:
        table.caption = f"{len(groups) - GROUP_ROWS} more groups in the export"
    return table


def targets_table(results_or_info: Any) -> Table:
    """Every target with its status and reason."""
    if isinstance(results_or_info, dict):
        entries = results_or_info.get("instances") or []
    else:
        entries = [r.entry() for r in results_or_info]
    table = Table(title="Targets", title_justify="left", expand=True)
    for name in ("instance", "status", "records", "groups", "seconds"):
        table.add_column(
            name,
            no_wrap=True,
            justify="right" if name in ("records", "groups", "seconds") else "left",
        )
    table.add_column("reason", ratio=1, overflow="fold")
    for entry in entries:
        status = str(entry.get("status"))
        table.add_row(
            str(entry.get("instance")),
            Text(status, style=STATUS_STYLES.get(status, "")),
            "-" if entry.get("records") is None else str(entry["records"]),
            "-" if entry.get("groups") is None else str(entry["groups"]),
            f"{entry.get('seconds') or 0:.2f}",
            str(entry.get("reason") or ""),
        )
    return table


def print_fleet(info: dict[str, Any], console: Console) -> None:
    if info.get("groups"):
        console.print(groups_table(info))
    console.print(targets_table(info))
