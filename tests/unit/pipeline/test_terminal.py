"""Terminal output: one line per new error group on stderr (rich when available, plain else)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from exporter.model import ErrorReport, ErrorSeverity
from exporter.pipeline.terminal import TerminalOutput


def fail(
    monitor: Any, kind: type[Exception] = ValueError, message: str = "bad tune", **kwargs: Any
) -> str:
    try:
        raise kind(message)
    except kind as exc:
        error_id = monitor.record_error(exc, **kwargs)
        assert error_id is not None
        return error_id


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def make_report(**changes: Any) -> ErrorReport:
    fields: dict[str, Any] = {
        "error_id": "0123456789abcdef",
        "error_type": "ConnectionError",
        "error_message": "CAN bus lost",
        "severity": ErrorSeverity.HIGH,
        "priority": "high",
        "timestamp": 1_700_000_000.0,
        "first_occurrence": 1_700_000_000.0,
        "occurrence_count": 1,
        "component": "CANInterface",
        "file_path": "/app/can.py",
        "line_number": 42,
        "function_name": "read_frame",
        "stack_trace": "",
        "traceback_lines": [],
        "environment": {},
        "plugin": "obd",
    }
    fields.update(changes)
    return ErrorReport(**fields)


def test_one_line_per_new_group(make_monitor, capsys):
    monitor = make_monitor(enable_terminal_output=True)
    first = fail(monitor, component="ECUControl", plugin="weather")
    fail(monitor, component="ECUControl", plugin="weather")
    fail(monitor, component="ECUControl", plugin="weather")
    second = fail(monitor, MemoryError, "out of memory")
    monitor.flush()
    err = capsys.readouterr().err
    printed = lines(err)
    assert len(printed) == 2, err
    assert "MEDIUM" in printed[0] and "ValueError" in printed[0] and "bad tune" in printed[0]
    assert "(ECUControl/weather" in printed[0]
    assert f"id={first}" in printed[0]
    assert "CRITICAL" in printed[1] and "MemoryError" in printed[1] and f"id={second}" in printed[1]
    assert f"{__file__}:" in printed[0]


def test_off_by_default(monitor, capsys):
    fail(monitor)
    monitor.flush()
    assert capsys.readouterr().err == ""


def test_switched_on_at_runtime(monitor, capsys):
    fail(monitor)
    monitor.flush()
    monitor.enable_terminal_output = True  # seed 000's attribute style
    fail(monitor, KeyError, "new group")
    monitor.flush()
    monitor.enable_terminal_output = False
    fail(monitor, IndexError, "silent again")
    monitor.flush()
    printed = lines(capsys.readouterr().err)
    assert len(printed) == 1
    assert "KeyError" in printed[0]


def test_long_or_multiline_messages_stay_on_one_line(make_monitor, capsys):
    monitor = make_monitor(enable_terminal_output=True)
    fail(
        monitor,
        message="first line\nsecond line " + "very long words " * 40,
        component="ECUControl",
    )
    monitor.flush()
    printed = lines(capsys.readouterr().err)
    assert len(printed) == 1
    assert "first line second line" in printed[0]
    assert "(ECUControl" in printed[0]


def test_markup_in_messages_is_printed_literally(make_monitor, capsys):
    monitor = make_monitor(enable_terminal_output=True)
    fail(monitor, message="[bold red]not markup[/bold red] [link=x]y[/link]")
    monitor.flush()
    assert "[bold red]not markup[/bold red] [link=x]y[/link]" in capsys.readouterr().err


def test_plain_output_without_rich(capsys):
    TerminalOutput(use_rich=False).new_group(make_report())
    out = capsys.readouterr().err
    assert lines(out) == [
        out.split(" ")[0]
        + " HIGH     ConnectionError: CAN bus lost (CANInterface/obd /app/can.py:42"
        " id=0123456789abcdef)"
    ]


def test_plain_output_without_location_or_owner(capsys):
    TerminalOutput(use_rich=False).new_group(
        make_report(file_path=None, line_number=None, component="", plugin="")
    )
    assert "(- ? id=0123456789abcdef)" in capsys.readouterr().err


def test_rich_output_in_a_narrow_color_terminal():
    buffer = io.StringIO()
    terminal = TerminalOutput()
    terminal._console = Console(file=buffer, force_terminal=True, width=40, highlight=False)
    terminal.new_group(make_report(error_message="x" * 100))
    text = buffer.getvalue()
    assert "\x1b[" in text  # colored
    assert len(lines(text)) == 1
    assert "id=0123456789abcdef" in text
