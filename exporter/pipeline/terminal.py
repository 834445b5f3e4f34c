"""One line on stderr per new error group, with rich when it is installed."""

from __future__ import annotations

import sys
from datetime import datetime

from exporter.model import ErrorReport

_COLORS = {"low": "cyan", "medium": "yellow", "high": "red", "critical": "bold white on red"}


class TerminalOutput:
    """Prints new groups; never raises into the monitor."""

    def __init__(self, use_rich: bool = True) -> None:
        self._console = None
        if use_rich:
            try:
                from rich.console import Console

                self._console = Console(stderr=True, highlight=False)
            except Exception:  # pragma: no cover - rich is a dependency
                self._console = None

    def new_group(self, report: ErrorReport) -> None:
        when = datetime.fromtimestamp(report.timestamp).strftime("%H:%M:%S")
        where = f"{report.file_path}:{report.line_number}" if report.file_path else "?"
        owner = "/".join(x for x in (report.component, report.plugin) if x) or "-"
        message = report.error_message.replace("\n", " ")[:120]
        severity = report.severity.value
        if self._console is not None:
            from rich.markup import escape

            self._console.print(
                f"[dim]{when}[/] [{_COLORS[severity]}]{severity.upper():8}[/] "
                f"[bold]{escape(report.error_type)}[/] {escape(message)} "
                f"[dim]({escape(owner)} {escape(where)} id={report.error_id})[/]",
                soft_wrap=True,  # one line per group, however narrow the console
            )
        else:
            print(
                f"{when} {severity.upper():8} {report.error_type}: {message} "
                f"({owner} {where} id={report.error_id})",
                file=sys.stderr,
                flush=True,
            )
