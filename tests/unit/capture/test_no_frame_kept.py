"""What ``record_error`` queues for the worker pins no frame and no local variable.

A failing request's traceback holds every frame of the request and every local in them. The
queued report carries code objects, line numbers and the message only, so a request's locals
are freed when the request ends, however long the report waits for the worker:

* deterministic: a local of the raising function is dead (weakref) while its report is still
  queued: worker not started, worker blocked behind another report, ``capture_locals=True``;
* measured (slow): bench/bench_pinned_memory.py's scenarios A (worker free) and B (worker
  blocked until the requests are done), 4 threads x 500 requests holding a 400 KB local, each
  mode in a fresh subprocess: the monitor's extra peak RSS growth stays within 64 MB (the
  queued exceptions used to pin every request's local: hundreds of MB to GB).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench" / "bench_pinned_memory.py"
TARGET_MB = 64.0
THREADS, REQUESTS, SIZE = 4, 500, 400_000
QUIET = HOOKS_OFF
HANG_GUARD = 30.0


class Big:
    """Stands for a request's large local: weakref-able, so its death can be observed."""


class Blocker:
    """A context value whose repr (the worker scrubbing it) waits until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __repr__(self) -> str:
        self.entered.set()
        self.release.wait(HANG_GUARD)
        return "Blocker()"


def fail_holding(refs: list[weakref.ref[Big]]) -> None:
    big = Big()
    refs.append(weakref.ref(big))
    raise ValueError(f"failed while holding {type(big).__name__}")


def record_while_holding(monitor: ErrorMonitor) -> tuple[str | None, weakref.ref[Big]]:
    """Record an error raised from a frame holding a ``Big``; return its group id and ref."""
    refs: list[weakref.ref[Big]] = []
    try:
        fail_holding(refs)
    except ValueError as exc:
        error_id = monitor.record_error(exc, context={"request": 1})
        assert refs[0]() is not None  # alive here: the traceback still holds the frame
    return error_id, refs[0]


def fail_plainly() -> None:
    raise RuntimeError("worker kept busy")


def block_worker(monitor: ErrorMonitor) -> Blocker:
    """Occupy the started monitor's worker with a report whose context it cannot finish.

    Raised one frame down: with ``capture_locals`` the caller copies (reprs) the innermost
    frame's locals, which must not include the blocker."""
    blocker = Blocker()
    try:
        fail_plainly()
    except RuntimeError as exc:
        monitor.record_error(exc, context={"hold": blocker})
    assert blocker.entered.wait(HANG_GUARD), "the worker never reached the blocking report"
    return blocker


def test_local_freed_while_report_queued_for_unstarted_worker() -> None:
    monitor = ErrorMonitor(serve=False, **QUIET)  # not started: the report stays queued
    try:
        error_id, ref = record_while_holding(monitor)
        assert error_id is not None
        assert monitor.queue_depth == 1
        gc.collect()
        assert ref() is None, "the queued report keeps the raising frame's local alive"
        assert monitor.queue_depth == 1  # still waiting for a worker
        monitor.start()
        assert monitor.flush(HANG_GUARD)
        group = monitor.get_group(error_id)
        assert group is not None
        assert group["report"]["function_name"] == "fail_holding"
        assert "failed while holding Big" in group["report"]["stack_trace"]
    finally:
        monitor.stop(timeout=2.0)


def test_local_freed_while_report_queued_behind_busy_worker(make_monitor) -> None:
    monitor = make_monitor()
    blocker = block_worker(monitor)
    try:
        error_id, ref = record_while_holding(monitor)
        assert monitor.queue_depth == 1  # behind the report the worker is stuck on
        gc.collect()
        assert ref() is None, "the queued report keeps the raising frame's local alive"
    finally:
        blocker.release.set()
    assert monitor.flush(HANG_GUARD)
    assert error_id is not None
    group = monitor.get_group(error_id)
    assert group is not None
    assert group["report"]["context"] == {"request": 1}


def test_capture_locals_reports_a_copy_and_frees_the_original(make_monitor) -> None:
    monitor = make_monitor(capture_locals=True)
    blocker = block_worker(monitor)
    try:
        error_id, ref = record_while_holding(monitor)
        assert monitor.queue_depth == 1
        gc.collect()
        assert ref() is None, "capture_locals queued the live local instead of a copy"
    finally:
        blocker.release.set()
    assert monitor.flush(HANG_GUARD)
    assert error_id is not None
    group = monitor.get_group(error_id)
    assert group is not None
    local_values = group["report"]["metadata"]["locals"]
    assert isinstance(local_values["big"], str)
    assert "Big object at 0x" in local_values["big"]


def run_child(mode: str, scenario: str) -> dict[str, Any]:
    command = [
        sys.executable,
        str(BENCH),
        "--child",
        mode,
        scenario,
        "--requests",
        str(REQUESTS),
        "--size",
        str(SIZE),
        "--busy",
        "0",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=ROOT, check=False
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["A", "B"])
def test_monitor_adds_no_pinned_request_memory(scenario: str) -> None:
    """``monitor``: default budget (most repeats coalesced on the caller, never queued);
    ``monitor-unbudgeted``: every one of the 2,000 reports crosses the queue."""
    none = run_child("none", scenario)
    total = THREADS * REQUESTS
    for mode in ("monitor", "monitor-unbudgeted"):
        measured = run_child(mode, scenario)
        extra = measured["growth_mb"] - none["growth_mb"]
        print(
            f"{scenario} {mode}: growth {measured['growth_mb']:.1f} MB, none "
            f"{none['growth_mb']:.1f} MB, extra {extra:+.1f} MB; {measured}"
        )
        assert measured["counted"] == total
        assert measured["flushed"]
        assert extra < TARGET_MB, (
            f"scenario {scenario}, {mode}: peak RSS growth {measured['growth_mb']:.1f} MB vs "
            f"{none['growth_mb']:.1f} MB without the monitor: queued reports pin memory"
        )
    # The unbudgeted run really queued every report (and, in B, all at once, behind the
    # blocked worker), so the bound above covers 2,000 queued reports, not a handful.
    assert measured["detailed"] == total
    if scenario == "B":
        assert measured["queue_depth_after_requests"] >= total
