"""Diagnostics in a report: location, stack, chains, groups, environment, and hostile input.

Caps (exporter/pipeline/report_builder.py): ``max_frames`` innermost frames,
``max_chain_depth`` chained
exceptions, ``max_message_length`` characters of message, ``MAX_STACK_TRACE_CHARS`` of
formatted trace, ``MAX_GROUP_MEMBERS`` members listed per ExceptionGroup.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from exporter.pipeline.report_builder import MAX_GROUP_MEMBERS, MAX_STACK_TRACE_CHARS
from exporter.scrub import FILTERED


def report_of(monitor: Any, error_id: str | None) -> dict[str, Any]:
    assert error_id is not None
    assert monitor.flush(10)
    group = monitor.get_group(error_id)
    assert group is not None
    return group["report"]


def record(monitor: Any, exc: BaseException, **kwargs: Any) -> dict[str, Any]:
    return report_of(monitor, monitor.record_error(exc, **kwargs))


def inner_helper():
    raise ValueError("invalid boost target 31.5 psi")


def outer_caller():
    inner_helper()


def test_type_message_location_and_stack(monitor):
    try:
        outer_caller()
    except ValueError as exc:
        report = record(monitor, exc, component="ECUControl")

    assert report["error_type"] == "ValueError"
    assert report["error_class"] == "ValueError"
    assert report["error_message"] == "invalid boost target 31.5 psi"
    assert report["file_path"] == __file__
    assert report["function_name"] == "inner_helper"
    assert report["line_number"] == inner_helper.__code__.co_firstlineno + 1
    trace = report["stack_trace"]
    assert trace.startswith("Traceback (most recent call last):")
    assert trace.rstrip().endswith("ValueError: invalid boost target 31.5 psi")
    for name in ("test_type_message_location_and_stack", "outer_caller", "inner_helper"):
        assert f"in {name}" in trace
    assert report["traceback_lines"] == trace.splitlines()
    assert report["handled"] is True
    assert report["mechanism"] == "record_error"
    assert report["thread_name"] == "MainThread"


def test_location_is_the_innermost_in_app_frame_not_the_library(monitor):
    def parse_tune():
        return json.loads("{not json")

    try:
        parse_tune()
    except json.JSONDecodeError as exc:
        report = record(monitor, exc)
    assert report["function_name"].endswith("parse_tune")
    assert report["file_path"] == __file__
    assert "json/decoder.py" in report["stack_trace"]  # the full stack is still there


def test_exception_never_raised_has_no_location(monitor):
    report = record(monitor, ValueError("constructed, not raised"))
    assert report["file_path"] is None
    assert report["line_number"] is None
    assert report["function_name"] is None
    assert report["stack_trace"].strip() == "ValueError: constructed, not raised"


def test_non_exception_is_recorded_as_runtime_error(monitor):
    report = record(monitor, "a plain string")  # type: ignore[arg-type]
    assert report["error_type"] == "RuntimeError"
    assert report["error_message"] == "a plain string"


def test_cause_chain(monitor):
    try:
        try:
            raise ConnectionError("socket closed")
        except ConnectionError as low:
            raise RuntimeError("ECU read failed") from low
    except RuntimeError as exc:
        report = record(monitor, exc)
    assert report["exception_chain"] == [
        {"relation": "raised", "type": "RuntimeError", "message": "ECU read failed"},
        {"relation": "cause", "type": "ConnectionError", "message": "socket closed"},
    ]
    assert "The above exception was the direct cause" in report["stack_trace"]


def test_context_chain_and_suppressed_context(monitor):
    try:
        try:
            {}["missing"]
        except KeyError:
            raise ValueError("while handling") from None
    except ValueError as exc:
        suppressed = record(monitor, exc)
    assert [e["relation"] for e in suppressed["exception_chain"]] == ["raised"]

    try:
        try:
            {}["missing"]
        except KeyError:
            raise TypeError("during handling")  # noqa: B904 - the implicit context is the point
    except TypeError as exc:
        implicit = record(monitor, exc)
    assert implicit["exception_chain"] == [
        {"relation": "raised", "type": "TypeError", "message": "during handling"},
        {"relation": "context", "type": "KeyError", "message": "'missing'"},
    ]
    assert "During handling of the above exception" in implicit["stack_trace"]


def test_chain_depth_is_capped(make_monitor):
    monitor = make_monitor(max_chain_depth=4)
    exc: BaseException = ValueError("level 0")
    for level in range(1, 50):
        outer = ValueError(f"level {level}")
        outer.__cause__ = exc
        exc = outer
    report = record(monitor, exc)
    assert len(report["exception_chain"]) == 4
    assert report["exception_chain"][0]["message"] == "level 49"


def test_cyclic_chain_is_recorded(monitor):
    first, second = ValueError("first"), KeyError("second")
    first.__context__ = second
    second.__context__ = first
    try:
        raise first
    except ValueError as exc:
        report = record(monitor, exc)
    chain = report["exception_chain"]
    assert [e["type"] for e in chain] == ["ValueError", "KeyError", "<cycle>"]
    assert report["stack_trace"].count("ValueError: first") == 1


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is 3.11+")
def test_exception_group_members(monitor):
    def sensor(i: int) -> None:
        raise OSError(f"sensor {i} offline")

    errors = []
    for i in range(3):
        try:
            sensor(i)
        except OSError as exc:
            errors.append(exc)
    try:
        raise ExceptionGroup("sensors failed", [*errors, ValueError("bad frame")])  # noqa: F821
    except ExceptionGroup as group:  # noqa: F821
        report = record(monitor, group)
    assert report["error_type"] == "ExceptionGroup"
    top = report["exception_chain"][0]
    assert top["exceptions"] == [
        {"type": "OSError", "message": "sensor 0 offline"},
        {"type": "OSError", "message": "sensor 1 offline"},
        {"type": "OSError", "message": "sensor 2 offline"},
        {"type": "ValueError", "message": "bad frame"},
    ]
    assert "sensor 2 offline" in report["stack_trace"]
    assert "in sensor" in report["stack_trace"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is 3.11+")
def test_exception_group_members_are_capped(monitor):
    group = ExceptionGroup("many", [ValueError(str(i)) for i in range(200)])  # noqa: F821
    report = record(monitor, group)
    assert len(report["exception_chain"][0]["exceptions"]) == MAX_GROUP_MEMBERS
    assert len(report["stack_trace"]) <= MAX_STACK_TRACE_CHARS + 200


def test_environment(make_monitor):
    monitor = make_monitor(app_version="4.2.0")
    report = record(monitor, ValueError("x"))
    env = report["environment"]
    assert env["app_version"] == "4.2.0"
    assert env["pid"] == os.getpid()
    assert env["hostname"] == socket.gethostname()
    assert env["python_version"] == platform.python_version()
    assert env["platform"] == platform.platform()
    assert env["thread"] == "MainThread"
    assert make_monitor().config.app_version is None


def test_str_that_raises(monitor):
    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

        def __repr__(self) -> str:
            raise RuntimeError("no repr either")

    try:
        raise Hostile()
    except Hostile as exc:
        error_id = monitor.record_error(exc, context={"attempt": 1})
    report = report_of(monitor, error_id)
    assert report["error_type"] == "Hostile"
    assert report["error_message"].startswith("<unprintable Hostile")
    assert "Hostile" in report["stack_trace"]
    assert monitor.get_statistics()["total_errors"] == 1
    assert int(monitor.metrics.families().internal_errors._value.get()) == 0


def test_str_that_returns_a_non_string(monitor):
    class Weird(Exception):
        def __str__(self):  # type: ignore[override]
            return 42

    report = record(monitor, Weird())
    assert report["error_type"] == "Weird"
    assert "unprintable" in report["error_message"]


def test_ten_megabyte_message_is_capped_with_marker(make_monitor):
    monitor = make_monitor(max_message_length=1000)
    big = "x" * (10 * 1024 * 1024)
    try:
        raise ValueError(big)
    except ValueError as exc:
        report = record(monitor, exc)
    message = report["error_message"]
    assert message.startswith("x" * 1000)
    assert message.endswith(f"...[truncated {len(big) - 1000} chars]")
    assert len(message) < 1100
    assert len(report["stack_trace"]) <= MAX_STACK_TRACE_CHARS + 200
    assert "truncated" in report["stack_trace"]
    summary = monitor.get_error_summary()
    assert len(summary["recent_errors"][0]["message"]) < 1100
    assert len(json.dumps(monitor.export_data())) < 1_000_000


def test_default_message_cap(monitor):
    limit = monitor.config.max_message_length
    report = record(monitor, ValueError("y" * (limit * 3)))
    assert report["error_message"] == "y" * limit + f"...[truncated {limit * 2} chars]"


def test_bytes_message(monitor):
    try:
        raise ValueError(b"\xff\xfe frame \x00 garbage")
    except ValueError as exc:
        report = record(monitor, exc, context={"raw": b"\xff\xfeCAN"})
    assert report["error_message"] == repr(b"\xff\xfe frame \x00 garbage")
    assert report["context"]["raw"] == "\\xff\\xfeCAN"
    json.dumps(report)


def test_lone_surrogates_are_made_encodable(monitor):
    report = record(monitor, ValueError("bad \udcff text"))
    report["error_message"].encode("utf-8")
    json.dumps(report, ensure_ascii=False).encode("utf-8")


def test_frames_are_capped_to_the_innermost(make_monitor):
    monitor = make_monitor(max_frames=5)
    namespace: dict[str, Any] = {}
    source = (
        "\n".join(f"def f{i}():\n    return f{i + 1}()" for i in range(20))
        + "\ndef f20():\n    raise KeyError('deep')\n"
    )
    exec(compile(source, "<deep chain>", "exec"), namespace)
    try:
        namespace["f0"]()
    except KeyError as exc:
        report = record(monitor, exc)
    trace = report["stack_trace"]
    assert trace.count('File "<deep chain>"') == 5
    assert "in f20" in trace
    assert "in f16" in trace
    assert "in f15" not in trace
    assert report["function_name"] == "f20"


def test_capture_locals_is_off_by_default_and_scrubbed_when_on(make_monitor):
    def with_locals():
        api_token = "sk-live-123"  # noqa: F841
        rpm = 9000  # noqa: F841
        raise RuntimeError("locals")

    for capture, expected in ((False, None), (True, {"api_token": FILTERED, "rpm": 9000})):
        monitor = make_monitor(capture_locals=capture)
        try:
            with_locals()
        except RuntimeError as exc:
            report = record(monitor, exc)
        assert report["metadata"].get("locals") == expected


RECURSION_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from exporter import ErrorMonitor

    monitor = ErrorMonitor(capture_sys_excepthook=False, capture_threading=False,
                           capture_logging=False, capture_asyncio=False,
                           enable_resource_monitoring=False)
    monitor.start()
    sys.setrecursionlimit(100_100)
    threading.stack_size(512 * 1024 * 1024)
    out = {}

    def dive(n):
        return dive(n + 1)

    def run():
        for key in ("first", "second"):
            try:
                dive(0)
            except RecursionError as exc:
                depth, tb = 0, exc.__traceback__
                while tb is not None:
                    depth, tb = depth + 1, tb.tb_next
                out["depth"] = depth
                out[key] = monitor.record_error(exc)
        try:
            dive(0)  # the same bug reached from another statement: another group
        except RecursionError as exc:
            out["elsewhere"] = monitor.record_error(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    out["flushed"] = monitor.flush(60)
    report = monitor.get_group(out["first"])["report"]
    out["total"] = monitor.get_statistics()["total_errors"]
    out["groups"] = len(monitor.list_groups())
    out["trace_chars"] = len(report["stack_trace"])
    out["frames_shown"] = report["stack_trace"].count('File "')
    out["repeated"] = "Previous line repeated" in report["stack_trace"]
    out["function"] = report["function_name"]
    out["severity"] = report["severity"]
    out["message"] = report["error_message"]
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_recursion_error_with_a_100000_frame_stack():
    done = subprocess.run(
        [sys.executable, "-c", RECURSION_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["depth"] >= 100_000
    assert out["flushed"] is True
    assert out["total"] == 3
    assert out["first"] == out["second"] != out["elsewhere"]
    assert out["groups"] == 2
    assert out["frames_shown"] <= 100  # max_frames
    assert out["repeated"] is True
    assert out["trace_chars"] <= MAX_STACK_TRACE_CHARS + 200
    assert out["function"] == "dive"
    assert out["severity"] == "critical"
    assert out["message"] == "maximum recursion depth exceeded"


def test_none_of_it_breaks_the_monitor(monitor):
    class BadArgs(Exception):
        @property
        def args(self):  # type: ignore[override]
            raise RuntimeError("args exploded")

    class BadTraceback(Exception):
        pass

    hostile: list[BaseException] = [BadArgs(), BadTraceback("fine")]
    for exc in hostile:
        try:
            raise exc
        except Exception as caught:
            monitor.record_error(caught, context={"obj": object(), 1: {2: {3: set()}}})
    assert monitor.flush(10)
    assert monitor.get_statistics()["total_errors"] == 2
    assert len(monitor.list_groups()) == 2
    json.dumps(monitor.export_data())
