"""Grouping: one bug, one error_id, across line shifts and varying messages; per-group numbers."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import handle_errors
from exporter.capture.signature import normalize_message

SOURCE = """
def load_tune(name):
    settings = {"boost": 12}
    return parse(settings, name)

def parse(settings, name):
    raise KeyError(name)

def other_bug(name):
    raise KeyError(name)
"""

EDITED_SOURCE = """
# a comment added above


def load_tune(name):
    # a new line inside the function
    settings = {"boost": 12}
    settings["rev_limit"] = 7000
    return parse(settings, name)

def parse(settings, name):
    if not name:
        return None
    raise KeyError(name)

def other_bug(name):
    raise KeyError(name)
"""


def load(source: str, filename: str = "racing_tuner/ecu_tune.py") -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "racing_tuner.ecu_tune"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def call(monitor: Any, func: Any, *args: Any, **kwargs: Any) -> str:
    try:
        func(*args)
    except Exception as exc:
        error_id = monitor.record_error(exc, **kwargs)
        assert error_id is not None
        return error_id
    raise AssertionError("expected an exception")


def test_same_bug_groups_across_line_shifts(monitor):
    before, after = load(SOURCE), load(EDITED_SOURCE)
    assert before["parse"].__code__ is not after["parse"].__code__
    first = call(monitor, before["load_tune"], "tune-1.json")
    second = call(monitor, after["load_tune"], "tune-2.json")
    assert first == second
    monitor.flush()
    [group] = monitor.list_groups()
    assert group["occurrence_count"] == 2
    assert group["function_name"] == "parse"
    occurrences = monitor.get_group(first)["occurrences"]
    assert [o["message"] for o in occurrences] == ["'tune-1.json'", "'tune-2.json'"]


def test_two_code_objects_of_one_function_at_different_lines(monitor):
    def make(padding: int) -> Any:
        source = "\n" * padding + "def read_frame():\n    raise OSError('bus off')\n"
        return load(source)["read_frame"]

    ids = {call(monitor, make(padding)) for padding in (0, 10, 500)}
    assert len(ids) == 1


def test_messages_with_numbers_ids_and_paths_group_when_raised_at_one_place(monitor):
    def fail(message: str) -> None:
        raise TimeoutError(message)

    messages = [
        "ECU 3 did not answer in 250 ms",
        f"request {uuid.uuid4()} timed out at 0x7f3a2b after 31.5 s",
        "could not open /var/lib/tuner/maps/holley_9.json",
    ]
    assert len({call(monitor, fail, m) for m in messages}) == 1


def test_unraised_exceptions_group_by_normalized_message(monitor):
    same = [
        ValueError("ECU 3 did not answer in 250 ms"),
        ValueError("ECU 12 did not answer in 1000 ms"),
    ]
    ids = {monitor.record_error(e) for e in same}
    assert len(ids) == 1
    ids_by_id = {
        monitor.record_error(ValueError(f"session {uuid.uuid4()} expired at 0x{n:x}"))
        for n in (0xDEAD, 0xBEEF)
    }
    assert len(ids_by_id) == 1
    ids_by_path = {
        monitor.record_error(FileNotFoundError(f"no such file: {path}"))
        for path in ("/home/alice/maps/a.json", "/srv/tuner/cache/b-2.json")
    }
    assert len(ids_by_path) == 1
    different = monitor.record_error(ValueError("checksum mismatch"))
    assert different not in ids


def test_different_bugs_do_not_group(monitor):
    code = load(SOURCE)
    parse_id = call(monitor, code["load_tune"], "x")
    other_id = call(monitor, code["other_bug"], "x")
    assert parse_id != other_id

    def raises(kind: type[Exception]) -> None:
        raise kind("same message")

    assert call(monitor, raises, KeyError) != call(monitor, raises, IndexError)

    class LocalError(Exception):
        pass

    class OtherLocalError(Exception):
        pass

    assert monitor.record_error(LocalError("a")) != monitor.record_error(OtherLocalError("a"))


def test_monitor_frames_do_not_change_the_group(monitor):
    def bad_rpm():
        raise ValueError("rpm out of range")

    wrapped = handle_errors(component="ECU", monitor=monitor)(bad_rpm)
    try:
        wrapped()  # handle_errors' own frame is in this traceback, and left out of the id
    except ValueError as exc:
        frames = list(monitor.signer.site(ValueError, exc.__traceback__).frames)

    def ours(code: Any) -> bool:
        return code.co_filename.endswith(os.path.join("exporter", "decorators.py"))

    assert any(ours(code) for code, _ in frames)
    without = [f for f in frames if not ours(f[0])]
    signer = monitor.signer
    assert signer._sign_frames(ValueError, without) == signer._sign_frames(ValueError, frames)

    for _ in range(2):  # and capture() adds no frame of its own
        with monitor.capture(component="ECU", reraise=False):
            bad_rpm()
    monitor.flush()
    counts = sorted(g["occurrence_count"] for g in monitor.list_groups())
    assert counts == [1, 2]


def test_monitor_frames_are_not_in_app(monitor):
    from exporter.capture.signature import module_of

    def bad_rpm():
        raise ValueError("rpm out of range")

    wrapped = handle_errors(component="ECU", monitor=monitor)(bad_rpm)
    try:
        wrapped()
    except ValueError as exc:
        tb = exc.__traceback__
        codes = []
        while tb is not None:
            codes.append(tb.tb_frame.f_code)
            tb = tb.tb_next
    in_app = [monitor.signer.frame_info(c, module_of(c)).in_app for c in codes]
    assert in_app == [True, False, True]  # this test, handle_errors' wrapper, bad_rpm
    monitor.flush()
    assert monitor.list_groups()[0]["function_name"].endswith("bad_rpm")


def test_recursion_depth_does_not_change_the_group(monitor):
    def dive(n: int) -> None:
        if n == 0:
            raise RecursionError("too deep")
        dive(n - 1)

    assert call(monitor, dive, 3) == call(monitor, dive, 300)


def test_library_frames_do_not_split_an_in_app_group(monitor):
    import json

    def parse_config(text: str) -> Any:
        return json.loads(text)

    ids = {call(monitor, parse_config, text) for text in ("{", "[1,", '{"a": }')}
    assert len(ids) == 1


def test_error_id_is_stable_across_processes():
    import subprocess
    import sys

    script = (
        "from exporter import ErrorMonitor\n"
        "m = ErrorMonitor(capture_sys_excepthook=False, capture_threading=False,"
        " capture_logging=False, capture_asyncio=False, enable_resource_monitoring=False)\n"
        "print(m.record_error(ValueError('ECU 5 offline')))\n"
    )
    ids = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(ids) == 1
    assert len(next(iter(ids))) == 16


def test_normalize_message_examples():
    assert normalize_message("ECU 3 took 250.5 ms") == "ECU <n> took <n> ms"
    assert normalize_message("obj at 0x7ffe12ab") == "obj at <hex>"
    assert normalize_message(f"id {uuid.UUID(int=7)}") == "id <uuid>"
    assert normalize_message("open /var/log/app/x.log failed") == "open <path> failed"
    assert normalize_message("commit 3f2a9c0d1e5b7a88 missing") == "commit <id> missing"
    assert normalize_message("at 1700000000123 ms") == "at <n> ms"  # long numbers are numbers


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(min_value=0, max_value=10**12),
    b=st.integers(min_value=0, max_value=10**12),
    word=st.sampled_from(["timeout", "refused", "reset"]),
)
def test_messages_differing_only_in_numbers_normalize_equal(a, b, word):
    assert normalize_message(f"connection {word} on port {a} after {b}ms") == normalize_message(
        f"connection {word} on port {b} after {a}ms"
    )


# -- per-group numbers --------------------------------------------------------------------


def test_occurrence_count_first_last_and_frequency(monitor):
    def fail() -> None:
        raise ConnectionError("CAN bus lost")

    started = time.time()
    ids = {call(monitor, fail) for _ in range(5)}
    finished = time.time()
    [error_id] = ids
    monitor.flush()
    [summary] = monitor.list_groups()
    assert summary["error_id"] == error_id
    assert summary["occurrence_count"] == 5
    assert (
        started <= summary["first_occurrence_epoch"] <= summary["last_occurrence_epoch"] <= finished
    )
    # occurrences / max(hours since first, 1): five within the first hour
    assert summary["frequency_per_hour"] == 5.0
    report = monitor.get_group(error_id)["report"]
    assert report["occurrence_count"] == 5
    assert report["first_occurrence"] == summary["first_occurrence"]
    assert report["timestamp"] == summary["last_occurrence"]
    assert report["timestamp_epoch"] == summary["last_occurrence_epoch"]


def test_affected_users_counts_distinct_users(monitor):
    def fail() -> None:
        raise PermissionError("tune locked")

    for user in ("alice", "bob", "alice", None, "carol", "bob"):
        call(monitor, fail, user_id=user)
    with monitor.session(user_id="dave"):
        call(monitor, fail)  # the session's user
    monitor.flush()
    [summary] = monitor.list_groups()
    assert summary["occurrence_count"] == 7
    assert summary["affected_users"] == 4


def test_groups_listed_by_count_and_by_last_seen(monitor):
    def often() -> None:
        raise ValueError("often")

    def rare() -> None:
        raise KeyError("rare")

    for _ in range(3):
        call(monitor, often)
    call(monitor, rare)
    monitor.flush()
    assert [g["error_type"] for g in monitor.list_groups("count")] == ["ValueError", "KeyError"]
    assert [g["error_type"] for g in monitor.list_groups("last_seen")] == ["KeyError", "ValueError"]
    assert [g["error_type"] for g in monitor.list_groups("count", limit=1)] == ["ValueError"]


def test_group_count_is_bounded_by_error_buffer_size(make_monitor):
    monitor = make_monitor(error_buffer_size=5)
    ids = [monitor.record_error(ValueError(f"distinct bug {chr(65 + i)}")) for i in range(12)]
    assert len(set(ids)) == 12
    monitor.flush()
    kept = [g["error_id"] for g in monitor.list_groups("last_seen")]
    assert kept == list(reversed(ids[-5:]))
    assert monitor.get_statistics()["total_errors"] == 12  # counts stay exact
    dropped = monitor.registry.get_sample_value(
        "app_error_reports_dropped_total", {"reason": "store_evicted"}
    )
    assert dropped == 7
