"""Many threads, a full queue, os.fork() and interpreter exit: counts exact, nothing hangs."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from support.monitoring import dropped

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF

QUIET = HOOKS_OFF
THREADS = 16
PER_THREAD = 500


def processed(monitor: Any) -> int:
    """Occurrences that reached the store (full or light path)."""
    return sum(g["occurrence_count"] for g in monitor.list_groups())


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: threads did not finish"


def hammer(monitor: Any, index: int, barrier: threading.Barrier) -> None:
    barrier.wait()
    with monitor.session(user_id=f"user-{index}"):
        for i in range(PER_THREAD):
            monitor.add_breadcrumb(action=f"step {i}", data={"thread": index})
            try:
                if i % 2:
                    raise ValueError(f"thread {index} bad value {i}")
                raise KeyError(f"thread {index} missing {i}")
            except (ValueError, KeyError) as exc:
                monitor.record_error(exc, component=f"c{index % 4}", plugin="p")
            if i % 100 == 0:
                monitor.get_statistics()
                monitor.list_groups()


@pytest.mark.slow
def test_sixteen_threads_exact_counts_no_deadlock(make_monitor):
    monitor = make_monitor()
    reports: list[Any] = []
    monitor.register_error_callback(lambda r: reports.append(r.error_id))
    barrier = threading.Barrier(THREADS + 1)
    threads = [threading.Thread(target=hammer, args=(monitor, i, barrier)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    readers_done = threading.Event()

    def reader() -> None:
        while not readers_done.is_set():
            monitor.get_error_summary()
            monitor.get_plugin_health("p")
            monitor.export_data(limit=5)

    reading = threading.Thread(target=reader)
    reading.start()
    barrier.wait()
    join_all(threads)
    readers_done.set()
    join_all([reading])

    total = THREADS * PER_THREAD
    assert monitor.flush(60)
    stats = monitor.get_statistics()
    assert stats["total_errors"] == total
    assert stats["errors_by_type"] == {"ValueError": total // 2, "KeyError": total // 2}
    assert stats["errors_by_component"] == {f"c{i}": total // 4 for i in range(4)}
    assert dropped(monitor, "queue_full") == 0
    assert processed(monitor) == total
    assert len(monitor.list_groups()) == 2
    assert stats["sessions"]["ended"]["errored"] == THREADS
    assert monitor.get_plugin_health("p")["total_errors"] == total
    assert monitor._callbacks.flush(30)
    assert (
        len(reports) + dropped(monitor, "callback_queue_full") + dropped(monitor, "coalesced")
        == total
    )


def test_full_queue_drops_reports_but_counts_stay_exact():
    monitor = ErrorMonitor(queue_size=10, **QUIET)  # worker not started yet: nothing drains
    try:
        for i in range(100):
            try:
                raise ConnectionError(f"attempt {i}")
            except ConnectionError as exc:
                monitor.record_error(exc, component="CAN")
        assert monitor.queue_depth == 10
        assert dropped(monitor, "queue_full") == 90
        assert monitor.get_statistics()["total_errors"] == 100
        assert monitor.get_statistics()["dropped_reports"] == 90
        monitor.start()
        assert monitor.flush(30)
        assert processed(monitor) == 10  # the detailed reports that fitted
        assert monitor.get_error_summary()["total_errors"] == 100
    finally:
        monitor.stop()


@pytest.mark.slow
def test_many_threads_into_a_small_queue(make_monitor):
    monitor = make_monitor(queue_size=10)
    barrier = threading.Barrier(THREADS)

    def burst() -> None:
        barrier.wait()
        for i in range(300):
            try:
                raise TimeoutError(f"slow {i}")
            except TimeoutError as exc:
                monitor.record_error(exc)

    threads = [threading.Thread(target=burst) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert monitor.flush(60)
    total = THREADS * 300
    assert monitor.get_statistics()["total_errors"] == total
    # every error is either in the store or counted as dropped, never both, never neither
    assert processed(monitor) + dropped(monitor, "queue_full") == total


def test_memory_stays_bounded(make_monitor):
    monitor = make_monitor(
        error_buffer_size=50,
        max_records=100,
        occurrences_per_group=3,
        max_patterns=40,
        pattern_threshold=2,
    )
    rng = random.Random(7)
    for _ in range(3000):
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(12))
        monitor.record_error(RuntimeError(f"unexpected {word}"))  # each its own group
    for _ in range(500):
        try:
            raise ValueError("repeat")
        except ValueError as exc:
            monitor.record_error(exc)
    assert monitor.flush(60)
    assert len(monitor.store.groups) <= 50
    assert len(monitor.store.records) == 100
    assert all(len(monitor.get_group(e)["occurrences"]) <= 3 for e in monitor.store.groups)
    assert len(monitor.patterns._tracked) <= 40
    assert monitor.get_statistics()["total_errors"] == 3500
    # The repeat's first occurrence is urgent (a new group) and jumps the 3000-deep backlog,
    # so its group may be evicted once by the backlog and made again by its later repeats.
    assert dropped(monitor, "store_evicted") in (3001 - 50, 3001 - 50 + 1)


# -- fork ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_has_a_working_monitor(make_monitor):
    monitor = make_monitor()
    stop = threading.Event()

    def busy() -> None:  # keeps the worker and the locks busy while we fork
        while not stop.is_set():
            try:
                raise ValueError("parent")
            except ValueError as exc:
                monitor.record_error(exc, component="parent")

    busy_thread = threading.Thread(target=busy)
    busy_thread.start()
    results = []
    try:
        for _ in range(20):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                os.close(read_end)
                code = 0
                try:
                    out: dict[str, Any] = {"pid": os.getpid()}
                    try:
                        raise KeyError("child")
                    except KeyError as exc:
                        error_id = monitor.record_error(exc, component="child")
                    thread = threading.Thread(
                        target=lambda: monitor.record_error(OSError("from a child thread"))
                    )
                    thread.start()
                    thread.join()
                    out["flushed"] = monitor.flush(10)
                    group = monitor.get_group(error_id) if out["flushed"] else None
                    out["found"] = group is not None and group["group"]["component"] == "child"
                    out["child_types"] = (
                        sorted(
                            g["error_type"]
                            for g in monitor.list_groups()
                            if g["component"] != "parent"
                        )
                        if out["flushed"]
                        else []
                    )
                    out["worker"] = monitor._reports.alive
                    os.write(write_end, json.dumps(out).encode())
                except BaseException as exc:
                    os.write(write_end, json.dumps({"error": repr(exc)}).encode())
                    code = 1
                finally:
                    os._exit(code)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as reader:
                data = reader.read()
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, data
            results.append(json.loads(data))
    finally:
        stop.set()
        busy_thread.join()
    for out in results:
        assert out["pid"] != os.getpid()
        assert out["flushed"] is True
        assert out["found"] is True
        assert out["worker"] is True
        assert out["child_types"] == ["KeyError", "OSError"]
    assert monitor.flush(30)
    assert {g["component"] for g in monitor.list_groups()} == {"parent"}


# -- interpreter exit ----------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import atexit, json, sys
    from exporter import ErrorMonitor

    monitor = ErrorMonitor(capture_threading=False, capture_logging=False,
                           capture_asyncio=False, enable_resource_monitoring=False,
                           exit_flush_timeout=float(sys.argv[1]))

    def after_the_monitor():  # registered first, so it runs after the monitor's exit hook
        print(json.dumps({
            "stored": sum(g.report.occurrence_count for g in monitor.store.groups.values()),
            "counted": int(sum(v for _, v in monitor.metrics.error_totals())),
            "running": monitor.running,
            "sessions": monitor.sessions.ended,
        }), flush=True)

    atexit.register(after_the_monitor)
    monitor.start()

    class Hangs:
        def __repr__(self):
            import time
            time.sleep(3600)  # a hostile context value: formatting it never finishes
            return "never"

        __str__ = __repr__

    if sys.argv[2] == "hang":
        try:
            raise KeyError("stuck")
        except KeyError as exc:  # the worker formats the context, and hangs there
            monitor.record_error(exc, context={"sensor": Hangs()})
    for i in range(5000):
        try:
            raise ValueError(f"pending {i}")
        except ValueError as exc:
            monitor.record_error(exc)
    """
)


def run_exit_script(timeout: str, mode: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, timeout, mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def test_exit_flushes_pending_reports():
    _, out = run_exit_script("30", "normal")
    assert out["counted"] == 5000
    assert out["stored"] == 5000
    assert out["running"] is False
    assert out["sessions"]["errored"] == 1  # the process session ended at exit


def test_exit_never_hangs_on_a_stuck_worker():
    _, out = run_exit_script("0.5", "hang")
    assert out["counted"] == 5001
    assert out["stored"] == 0  # the worker is stuck on the hostile context value
    assert out["running"] is False
