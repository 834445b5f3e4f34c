"""Faults: the monitor keeps working, says what happened, and loses nothing already recorded.

Each test injects one fault: a callback that raises or blocks forever, psutil raising or
missing, an export directory that is missing / not creatable / full, a busy port, clients that
disconnect or send garbage, stop and start again, ``os.fork()`` with a full queue, interpreter
exit with a full queue and a blocked callback, recursion, ``MemoryError``, re-entrant capture
and two monitors in one process. For each: the app goes on, the monitor reports the fault (a
counter such as ``app_monitor_internal_errors_total`` / ``app_error_reports_dropped_total``
and/or a WARNING log line), and the errors recorded before it are all still there.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client import generate_latest
from support.monitoring import dropped, errors_total, internal_errors

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from exporter.metrics.resources import ResourceSampler
from exporter.pipeline.background_queue import BackgroundQueue

pytestmark = [
    pytest.mark.slow,
    # threads that die of an exception on purpose: pytest would warn about each one
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

QUIET = HOOKS_OFF
EXIT_BOUND_SECONDS = 15.0  # generous; the documented bound is exit_flush_timeout (2 s)


# -- helpers -----------------------------------------------------------------------------------


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def record(monitor: ErrorMonitor, message: str, **kwargs: Any) -> str:
    error_id = monitor.record_error(raised(ValueError(message)), **kwargs)
    assert error_id is not None
    return error_id


def messages(monitor: ErrorMonitor) -> list[str]:
    """Messages of every stored occurrence record (flushes first)."""
    assert monitor.flush(timeout=10.0)
    return [r["message"] for r in monitor.export_data()["all_records"]]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def warnings_from(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and fragment in r.getMessage()
    ]


def figure(name: str, **values: Any) -> None:
    text = ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"\n[faults] {name}: {text}")


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event tests block threads on; always released at teardown."""
    event = threading.Event()
    yield event
    event.set()


def block_worker(monitor: ErrorMonitor, gate: threading.Event) -> Callable[[Any], None]:
    """Make the report worker wait for ``gate`` before each item; returns the real handler."""
    original = monitor._reports.handle

    def blocked(item: Any) -> None:
        gate.wait()
        original(item)

    monitor._reports.handle = blocked
    return original


# -- callbacks ---------------------------------------------------------------------------------


def test_callback_that_raises_is_counted_and_logged(make_monitor, caplog):
    monitor = make_monitor()
    good: list[str] = []

    def broken(report: Any) -> None:
        raise RuntimeError("callback bug")

    monitor.register_error_callback(broken)
    monitor.register_error_callback(lambda report: good.append(report.error_message))
    with caplog.at_level(logging.WARNING, logger="exporter"):
        for i in range(5):
            record(monitor, f"callback victim {i}")
        assert monitor.flush()
        assert wait_until(lambda: len(good) == 5), good
    assert internal_errors(monitor) == 5
    assert len(warnings_from(caplog, "internal failure")) == 1  # logged once, counted always
    assert sorted(messages(monitor)) == [f"callback victim {i}" for i in range(5)]
    assert errors_total(monitor) == 5


def test_callback_that_blocks_forever_does_not_block_the_app(make_monitor, gate):
    monitor = make_monitor(callback_queue_size=5)
    entered = threading.Event()

    def stuck(report: Any) -> None:
        entered.set()
        gate.wait()  # "forever": released only at teardown

    monitor.register_error_callback(stuck)
    record(monitor, "first")
    assert entered.wait(5.0)
    started = time.perf_counter()
    for i in range(50):
        record(monitor, f"while blocked {i}")
    record_seconds = time.perf_counter() - started
    assert monitor.flush(timeout=10.0), "the report worker must not wait for callbacks"
    assert len(messages(monitor)) == 51
    callback_drops = dropped(monitor, "callback_queue_full")
    stop_started = time.perf_counter()
    monitor.stop(timeout=1.0)
    stop_seconds = time.perf_counter() - stop_started
    figure(
        "blocked_callback",
        record_50_ms=record_seconds * 1000,
        callback_queue_full=callback_drops,
        stop_seconds=stop_seconds,
    )
    assert callback_drops >= 50 - 5, callback_drops  # 5 queued, the rest counted as dropped
    assert errors_total(monitor) == 51


class _LeavingQueue(BackgroundQueue):
    """Reports itself alive after its worker has left: the window a shutdown race opens."""

    @property
    def alive(self) -> bool:
        return True


def test_stop_ends_the_threads_start_worker_began():
    """start_worker() (threads only, no hooks) then stop(): no thread of it left running."""
    monitor = ErrorMonitor(
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    monitor.start_worker()
    threads = [monitor._reports._thread, monitor._callbacks._thread]
    assert all(t is not None and t.is_alive() for t in threads)
    monitor.stop(timeout=5.0)
    for thread in threads:
        assert thread is not None
        thread.join(10)
        assert not thread.is_alive()


def test_a_worker_told_to_stop_is_not_revived_by_the_next_start():
    """stop() could not wait for a busy worker; start() right after must not make the old
    thread run on beside the new one (two writers of one store)."""
    gate = threading.Event()
    handled: list[int] = []

    def handle(item: int) -> None:
        if item == 0:
            gate.wait(30)
        handled.append(item)

    queue = BackgroundQueue("revived", 10, handle, lambda: None, lambda exc: None)
    queue.start()
    queue.submit(0)
    old = queue._thread
    assert old is not None
    assert not queue.stop(timeout=0.05)  # the worker is stuck in item 0
    queue.start()
    gate.set()
    old.join(30)
    assert not old.is_alive()
    for item in (1, 2, 3):
        queue.submit(item)
    assert queue.flush(30)
    assert handled == [0, 1, 2, 3]
    assert [t.name for t in threading.enumerate()].count("revived") == 1
    queue.stop(timeout=5)


def test_flush_queued_after_the_worker_left_does_not_wait_for_it():
    """A read settling while the monitor stops must not wait out its whole timeout."""
    handled: list[int] = []
    queue = _LeavingQueue("leaving", 10, handled.append, lambda: None, lambda exc: None)
    queue.start()
    queue.submit(1)
    assert queue.flush(10.0)  # as stop() does: drained, then told to stop
    thread = queue._thread
    assert thread is not None
    queue._stop_flag[0] = True
    queue._wake.set()
    thread.join(10.0)
    assert not thread.is_alive()
    assert handled == [1]
    queue._thread = thread  # the reader saw the thread before it left
    assert queue.flush(timeout=3600.0) is True  # nothing left to handle; returns, no hour's wait
    queue.submit(2)
    assert queue.flush(timeout=3600.0) is False  # an item nobody will handle is reported


def test_auto_export_triggered_during_stop_still_lands(make_monitor, tmp_path):
    """Shutdown drains the report queue, then gives the callbacks what is left of the budget."""
    monitor = make_monitor(pattern_threshold=3, export_path=str(tmp_path), exit_flush_timeout=30.0)
    for _ in range(3):
        record(monitor, "feed unreachable")
    monitor.stop()
    [exported] = list(tmp_path.glob("errors_*.json"))
    assert json.loads(exported.read_text())["summary"]["total_errors"] == 3


# -- psutil ------------------------------------------------------------------------------------


class FlakyPsutil:
    """psutil, until ``broken`` is set: then every attribute access raises."""

    def __init__(self) -> None:
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        if self.broken:
            raise RuntimeError(f"psutil.{name} exploded")
        return getattr(psutil, name)


def monitor_with_sampler(psutil_module: Any, **options: Any) -> ErrorMonitor:
    monitor = ErrorMonitor(
        **{**QUIET, "enable_resource_monitoring": True, "resource_check_interval": 0.05, **options}
    )
    monitor.resources = ResourceSampler(
        0.05, psutil_module=psutil_module, on_failure=monitor.metrics.count_internal_error
    )
    return monitor


def test_psutil_raising_keeps_the_last_reading_and_counts(caplog):
    flaky = FlakyPsutil()
    monitor = monitor_with_sampler(flaky)
    try:
        with caplog.at_level(logging.WARNING, logger="exporter"):
            monitor.start()
            assert wait_until(lambda: monitor.resources.latest is not None)
            record(monitor, "before psutil broke")
            flaky.broken = True
            assert wait_until(lambda: monitor.resources.failures >= 3)
            last_good = monitor.resources.latest
            record(monitor, "while psutil is broken")
            assert monitor.flush()
        assert monitor.resources.latest is last_good  # kept, not replaced by garbage
        assert internal_errors(monitor) >= 3
        assert len(warnings_from(caplog, "resource sampling failed")) == 1
        text = generate_latest(monitor.registry).decode()
        assert "app_process_threads" in text  # last values still exposed
        assert sorted(messages(monitor)) == ["before psutil broke", "while psutil is broken"]
        report = monitor.get_group(monitor.list_groups()[0]["error_id"])["report"]
        assert report["resource_snapshot"] is None or "cpu_percent" in report["resource_snapshot"]
        flaky.broken = False  # and it recovers
        stamp = last_good.timestamp
        assert wait_until(lambda: monitor.resources.latest.timestamp > stamp)
    finally:
        monitor.stop(timeout=2.0)


def test_psutil_missing_turns_resource_metrics_off_with_a_warning(caplog):
    monitor = monitor_with_sampler(None)
    try:
        with caplog.at_level(logging.WARNING, logger="exporter"):
            monitor.start()
            record(monitor, "no psutil")
        assert warnings_from(caplog, "psutil is not available")
        assert not monitor.resources.available
        assert monitor.resources.sample() is None
        assert monitor.get_statistics()["resources"] is None
        text = generate_latest(monitor.registry).decode()
        assert "app_errors_total" in text and "app_system_cpu_utilization_ratio" not in text
        assert messages(monitor) == ["no psutil"]
        assert internal_errors(monitor) == 0
    finally:
        monitor.stop(timeout=2.0)


def test_resource_sampler_alone_never_raises():
    failures: list[int] = []

    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise MemoryError(f"psutil.{name}")

    sampler = ResourceSampler(
        0.01, psutil_module=Exploding(), on_failure=lambda: failures.append(1)
    )
    assert sampler.sample() is None
    sampler.start()
    assert wait_until(lambda: len(failures) >= 3)
    sampler.stop()
    assert sampler.failures >= 3


# -- export files ------------------------------------------------------------------------------


def test_export_to_a_missing_directory_creates_it(make_monitor, tmp_path):
    monitor = make_monitor()
    record(monitor, "exported")
    target = tmp_path / "does" / "not" / "exist" / "errors.json"
    path = monitor.export_to_file(target)
    assert json.loads(path.read_text())["all_records"][0]["message"] == "exported"
    assert path.stat().st_mode & 0o777 == 0o600


def test_export_to_an_uncreatable_directory_raises_oserror_and_leaves_nothing(
    make_monitor, tmp_path
):
    monitor = make_monitor()
    record(monitor, "kept")
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        monitor.export_to_file(blocker / "sub" / "errors.json")
    assert blocker.read_text() == "not a directory"
    assert list(tmp_path.iterdir()) == [blocker]
    assert messages(monitor) == ["kept"]  # the monitor goes on
    record(monitor, "after")
    assert sorted(messages(monitor)) == ["after", "kept"]


def test_export_to_a_read_only_directory_raises_oserror(make_monitor, tmp_path):
    monitor = make_monitor()
    record(monitor, "kept")
    base = Path(tempfile.mkdtemp(prefix="ee-ro-", dir="/tmp"))
    base.chmod(0o755)  # traversable by anyone, so only the directory's own mode matters
    read_only = base / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.geteuid() == 0:
            # root ignores permission bits: write as an unprivileged user in a forked child
            pid = os.fork()
            if pid == 0:
                code = 3
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    try:
                        monitor.export_to_file(read_only / "errors.json")
                        code = 1
                    except PermissionError:
                        code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        else:
            with pytest.raises(PermissionError):
                monitor.export_to_file(read_only / "errors.json")
        assert list(read_only.iterdir()) == []
    finally:
        read_only.chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)
    record(monitor, "after")
    assert sorted(messages(monitor)) == ["after", "kept"]  # the monitor goes on


def test_export_on_a_full_disk_keeps_the_previous_file(make_monitor, tmp_path, monkeypatch):
    monitor = make_monitor()
    record(monitor, "first export")
    target = tmp_path / "errors.json"
    monitor.export_to_file(target)
    before = target.read_bytes()
    record(monitor, "second export")

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError) as failure:
        monitor.export_to_file(target)
    monkeypatch.undo()
    assert failure.value.errno == errno.ENOSPC
    assert target.read_bytes() == before  # atomic: the old export is intact
    assert [p.name for p in tmp_path.iterdir()] == ["errors.json"]  # temp file removed
    assert sorted(messages(monitor)) == ["first export", "second export"]


@pytest.mark.parametrize("fault", ["uncreatable", "enospc"])
def test_auto_export_failure_is_counted_and_logged(
    make_monitor, tmp_path, monkeypatch, caplog, fault
):
    if fault == "uncreatable":  # fine at construction (checked then), a file by the pattern
        directory = tmp_path / "exports"
        directory.mkdir()
    else:
        directory = tmp_path / "exports"

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_space)
    monitor = make_monitor(export_path=str(directory), pattern_threshold=3)
    if fault == "uncreatable":
        directory.rmdir()
        directory.write_text("x")
    with caplog.at_level(logging.WARNING, logger="exporter"):
        for i in range(5):  # crosses the pattern threshold: an auto-export is attempted
            record(monitor, f"pattern {i}")
        assert monitor.flush()
        assert wait_until(lambda: dropped(monitor, "export_failed") >= 1)
        assert wait_until(lambda: bool(warnings_from(caplog, "auto-export")))
    assert errors_total(monitor) == 5
    assert len(messages(monitor)) == 5
    if fault == "enospc":
        leftovers = list(directory.iterdir()) if directory.exists() else []
        assert leftovers == [], leftovers


# -- HTTP server faults ----------------------------------------------------------------------


def test_port_already_taken_fails_clearly_naming_host_and_port():
    with socket.socket() as occupier:
        occupier.bind(("127.0.0.1", 0))
        occupier.listen()
        port = occupier.getsockname()[1]
        monitor = ErrorMonitor(**{**QUIET, "serve": True, "port": port})
        try:
            record(monitor, "recorded before start")
            with pytest.raises(OSError) as failure:
                monitor.start()
            assert f"127.0.0.1:{port}" in str(failure.value)
            assert failure.value.errno == errno.EADDRINUSE
            assert not monitor.running and monitor.server is None  # rolled back, no half-start
            figure("port_taken", message=str(failure.value))
            # the app catches it and goes on without the server: nothing recorded is lost
            monitor.start(serve=False)
            record(monitor, "recorded without a server")
            assert sorted(messages(monitor)) == [
                "recorded before start",
                "recorded without a server",
            ]
        finally:
            monitor.stop(timeout=2.0)


def _read_some(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(10)
    try:
        return sock.recv(size)
    except (ConnectionResetError, TimeoutError):
        return b""


def _rst_close(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0): the harshest way for a client to vanish."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _get(host: str, port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_clients_that_vanish_or_send_garbage_do_not_hurt_the_server(make_monitor, capfd):
    monitor = make_monitor(serve=True, port=0, max_records=2000)
    host, port = monitor.server.host, monitor.server.port
    for i in range(2000):  # a large export body, so the client can leave mid-response
        record(monitor, f"record {i} " + "x" * 200, context={"i": i})
    assert monitor.flush()
    capfd.readouterr()
    vanished = 0
    for i in range(20):
        sock = socket.create_connection((host, port), timeout=10)
        path = "/api/v1/export" if i % 2 else "/metrics"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: [::1]\r\n\r\n".encode())
        if _read_some(sock, 1024):
            vanished += 1
        _rst_close(sock)
    for payload in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # TLS hello
        os.urandom(4096),
        b"GET /metrics HTTP/1.1\r\nContent-Length: 100\r\n\r\nab",
        b"GET /api/v1/export HTTP/1.1\r\n",
    ):  # headers never finished
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(payload)
        if not payload.startswith(b"GET"):
            sock.shutdown(socket.SHUT_WR)  # garbage, then end of input
            _read_some(sock, 10)  # the server answers or closes
        _rst_close(sock)
    # idle half-open connections do not block others (threaded server, per-request timeout)
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(10)]
    for sock in idle:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
    started = time.perf_counter()
    status, body = _get(host, port, "/healthz")
    healthz_seconds = time.perf_counter() - started
    for sock in idle:
        sock.close()
    status_export, body_export = _get(host, port, "/api/v1/export?limit=5")
    assert vanished == 20
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert status_export == 200 and len(json.loads(body_export)["all_records"]) == 5
    assert internal_errors(monitor) == 0
    _, err = capfd.readouterr()
    assert "Traceback" not in err and "Exception" not in err, err[-2000:]
    with capfd.disabled():
        figure(
            "vanishing_clients",
            disconnected_mid_response=vanished,
            healthz_with_10_idle_ms=healthz_seconds * 1000,
        )
    assert errors_total(monitor) == 2000


# -- lifecycle -----------------------------------------------------------------------------------


def test_stop_and_start_again_loses_nothing(make_monitor, saved_hooks):
    monitor = make_monitor(capture_logging=True, capture_threading=True)
    logger = logging.getLogger("app.lifecycle")
    worker_names = {"error-exporter-worker", "error-exporter-callbacks"}

    def crash_in_thread(message: str) -> None:
        thread = threading.Thread(target=lambda: (_ for _ in ()).throw(KeyError(message)))
        thread.start()
        thread.join()

    for cycle in range(5):
        record(monitor, f"cycle {cycle} recorded")
        try:
            raise RuntimeError(f"cycle {cycle} logged")
        except RuntimeError:
            logger.exception("logged error")
        crash_in_thread(f"cycle {cycle} thread")
        monitor.stop(timeout=2.0)
        record(monitor, f"cycle {cycle} while stopped")  # queued until the next start
        monitor.start()
        monitor.start()  # idempotent
    assert monitor.flush()
    found = messages(monitor)
    for cycle in range(5):
        for suffix in ("recorded", "logged", "while stopped"):
            assert found.count(f"cycle {cycle} {suffix}") == 1, (cycle, suffix)
        assert found.count(f"'cycle {cycle} thread'") == 1
    assert errors_total(monitor) == 20
    alive = [t.name for t in threading.enumerate() if t.name in worker_names]
    assert sorted(alive) == sorted(worker_names), alive  # no thread left over per cycle


def test_stop_with_a_busy_worker_then_start_loses_and_duplicates_nothing(
    make_monitor, gate, caplog
):
    monitor = make_monitor(queue_size=100)
    block_worker(monitor, gate)
    for i in range(30):
        record(monitor, f"pending {i}")
    with caplog.at_level(logging.WARNING, logger="exporter"):
        monitor.stop(timeout=0.2)  # cannot drain: the worker is stuck
    assert warnings_from(caplog, "not yet processed")
    monitor.start()
    gate.set()
    assert monitor.flush(timeout=10.0)
    found = messages(monitor)
    assert sorted(found) == sorted(f"pending {i}" for i in range(30)), found
    assert errors_total(monitor) == 30


@pytest.fixture
def saved_hooks() -> Iterator[None]:
    before = sys.excepthook, threading.excepthook
    yield
    sys.excepthook, threading.excepthook = before


# -- fork ----------------------------------------------------------------------------------------


def _child_after_fork(monitor: ErrorMonitor, original: Callable[[Any], None]) -> dict[str, Any]:
    monitor._reports.handle = original  # the parent's gate means nothing here
    state = {
        "depth_after_fork": monitor.queue_depth,
        "records_before": len(monitor.store.records),
        "worker_alive": monitor._reports.alive,
    }
    record(monitor, "child error")
    state["flushed"] = monitor.flush(timeout=10.0)
    state["messages"] = [r["message"] for r in monitor.export_data()["all_records"]]
    return state


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_with_a_full_queue(make_monitor, gate):
    queue_size = 20
    monitor = make_monitor(queue_size=queue_size)
    record(monitor, "processed before fork")
    assert monitor.flush()
    original = block_worker(monitor, gate)
    record(monitor, "in the worker's hands")
    assert wait_until(lambda: monitor.queue_depth == 0)  # picked up, blocked on the gate
    for i in range(queue_size + 5):
        record(monitor, f"pending {i}")  # 20 queued, 5 dropped
    assert monitor.queue_depth == queue_size
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        code = 1
        try:
            payload = _child_after_fork(monitor, original)
            code = 0
        except BaseException as exc:
            payload = {"error": repr(exc)}
        try:
            os.write(write_end, json.dumps(payload).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    child = _read_child(pid, read_end, timeout=30.0)
    gate.set()
    assert monitor.flush(timeout=10.0)
    parent_messages = messages(monitor)

    figure(
        "fork",
        child_depth_after_fork=child.get("depth_after_fork"),
        child_records=len(child.get("messages", [])),
        parent_records=len(parent_messages),
        parent_dropped=dropped(monitor, "queue_full"),
    )
    assert "error" not in child, child["error"]
    assert child["depth_after_fork"] == 0  # the parent's pending items stay the parent's
    assert child["worker_alive"] and child["flushed"]
    assert child["messages"].count("child error") == 1
    assert not [m for m in child["messages"] if m.startswith("pending")], child["messages"]
    # the child starts its own account: what the parent recorded is the parent's alone
    assert "processed before fork" not in child["messages"]
    # the parent lost nothing but the 5 counted drops, and never saw the child's error
    expected = [
        "processed before fork",
        "in the worker's hands",
        *(f"pending {i}" for i in range(queue_size)),
    ]
    assert sorted(parent_messages) == sorted(expected)
    assert dropped(monitor, "queue_full") == 5
    assert errors_total(monitor) == 2 + queue_size + 5


def _read_child(pid: int, read_end: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                data += chunk
        done, status = os.waitpid(pid, os.WNOHANG)
        while done == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        assert os.waitstatus_to_exitcode(status) == 0, data
    finally:
        os.close(read_end)
    return json.loads(data)


# -- interpreter exit ----------------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, threading, time
    from exporter import ErrorMonitor

    logging.basicConfig()  # the app decides where the library's warnings go

    monitor = ErrorMonitor(capture_sys_excepthook=False, capture_threading=False,
                           capture_logging=False, capture_asyncio=False,
                           enable_resource_monitoring=False, queue_size=QUEUE_SIZE,
                           occurrence_budget_per_second=10**9,  # no coalescing: a full queue
                           backlog_coalescing=False)
    monitor.start()
    monitor.register_error_callback(lambda report: threading.Event().wait())  # forever
    real = monitor._reports.handle
    def slow(item):
        time.sleep(0.01)  # 10 ms per report: a full queue needs minutes to drain
        real(item)
    monitor._reports.handle = slow
    for i in range(QUEUE_SIZE + 100):
        try:
            raise ValueError(f"pending {i}")
        except ValueError as exc:
            monitor.record_error(exc)
    stats = {"depth": monitor.queue_depth,
             "total": int(sum(v for _, v in monitor.metrics.error_totals()))}
    print(json.dumps(stats), flush=True)
    print("EXITING", flush=True)
    """
)


@pytest.mark.parametrize("flush_timeout", [None, 0.5])
def test_interpreter_exit_with_a_full_queue_and_a_blocked_callback(tmp_path, flush_timeout):
    queue_size = 5000
    script = tmp_path / "exit_app.py"
    text = EXIT_SCRIPT.replace("QUEUE_SIZE", str(queue_size))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    if flush_timeout is not None:
        env["ERROR_EXPORTER_EXIT_FLUSH_TIMEOUT"] = str(flush_timeout)
    script.write_text(text)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        stats = json.loads(process.stdout.readline())
        assert process.stdout.readline().strip() == "EXITING"
        exiting = time.perf_counter()
        process.wait(timeout=EXIT_BOUND_SECONDS)  # hang guard: raises if exit is not bounded
        exit_seconds = time.perf_counter() - exiting
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read()
    documented = 2.0 if flush_timeout is None else flush_timeout
    figure(
        "interpreter_exit",
        exit_flush_timeout=documented,
        exit_seconds=exit_seconds,
        queue_depth_at_exit=stats["depth"],
        counted=stats["total"],
        returncode=process.returncode,
    )
    assert process.returncode == 0, stderr
    assert stats["total"] == queue_size + 100  # every error counted though the queue was full
    assert stats["depth"] >= queue_size - 100
    assert "not yet processed" in stderr  # the monitor says what it could not flush
    assert "Traceback" not in stderr, stderr


# -- recursion and memory ------------------------------------------------------------------------


def recurse(n: int) -> int:
    return recurse(n + 1) + 1


def test_recursion_error_is_recorded_compactly(make_monitor):
    monitor = make_monitor()
    try:
        recurse(0)
    except RecursionError as exc:
        error_id = monitor.record_error(exc)
    assert error_id is not None
    assert monitor.flush()
    report = monitor.get_group(error_id)["report"]
    assert report["error_type"] == "RecursionError"
    assert len(report["stack_trace"]) < 70_000
    assert "recurse" in report["stack_trace"]
    figure(
        "recursion_error",
        stack_trace_chars=len(report["stack_trace"]),
        traceback_lines=len(report["traceback_lines"]),
    )
    assert errors_total(monitor) == 1


def test_record_error_at_the_recursion_limit_never_raises(make_monitor):
    """Called with almost no stack left: records, or counts an internal error; never raises."""
    monitor = make_monitor()
    outcomes: list[str | None] = []

    def dive() -> None:
        try:
            dive()
        except RecursionError:
            try:
                raise ValueError("deep")
            except ValueError as exc:
                outcomes.append(monitor.record_error(exc))  # may itself run out of stack

    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 1000))
        dive()
    finally:
        sys.setrecursionlimit(limit)
    assert monitor.flush()
    figure(
        "record_at_recursion_limit",
        outcomes=len(outcomes),
        recorded=sum(o is not None for o in outcomes),
        counted=errors_total(monitor),
        internal_errors=internal_errors(monitor),
    )
    assert outcomes, "record_error was never reached"
    assert errors_total(monitor) + internal_errors(monitor) >= 1
    record(monitor, "after the dive")  # the monitor still works
    assert "after the dive" in messages(monitor)


def test_memory_error_raised_by_the_app_is_recorded(make_monitor, saved_hooks):
    monitor = make_monitor(capture_threading=True)
    handled = monitor.record_error(raised(MemoryError("app ran out")))

    def thread_body() -> None:
        raise MemoryError("thread ran out")

    thread = threading.Thread(target=thread_body)
    thread.start()
    thread.join()
    assert monitor.flush()
    groups = {g["error_message"]: g for g in monitor.list_groups()}
    assert handled is not None and "app ran out" in groups
    assert "thread ran out" in groups
    report = monitor.get_group(groups["thread ran out"]["error_id"])["report"]
    assert report["handled"] is False and report["error_type"] == "MemoryError"
    assert errors_total(monitor) == 2


def test_memory_error_inside_report_building_is_survived(make_monitor, caplog):
    """The worker hits MemoryError while building one report: counted, and it carries on."""

    class Greedy(Exception):
        @property
        def context(self) -> Any:
            raise MemoryError("building this report needs too much")

    monitor = make_monitor()
    record(monitor, "before")
    with caplog.at_level(logging.WARNING, logger="exporter"):
        greedy_id = monitor.record_error(raised(Greedy("greedy")))
        record(monitor, "after")
        assert monitor.flush()
    assert greedy_id is not None
    assert internal_errors(monitor) >= 1
    assert warnings_from(caplog, "internal failure")
    assert monitor._reports.alive
    assert {"before", "after"} <= set(messages(monitor))
    assert errors_total(monitor) == 3  # the count is exact even when the report is lost


# -- re-entrancy -----------------------------------------------------------------------------------


def test_str_that_records_another_error(make_monitor):
    monitor = make_monitor()

    class Chatty(Exception):
        def __str__(self) -> str:
            monitor.record_error(raised(KeyError("recorded from __str__")))
            return "chatty"

    error_id = monitor.record_error(raised(Chatty()))
    assert error_id is not None
    assert monitor.flush(timeout=10.0)
    types = {g["error_type"] for g in monitor.list_groups()}
    assert types == {"Chatty", "KeyError"}
    assert internal_errors(monitor) == 0


def test_str_that_records_the_same_error_counts_it_once(make_monitor):
    monitor = make_monitor()

    class SelfRecording(Exception):
        def __str__(self) -> str:
            monitor.record_error(self)
            return "self-recording"

    never_raised = SelfRecording()
    first = monitor.record_error(never_raised)
    again = monitor.record_error(never_raised)
    assert first is not None and again == first
    assert monitor.flush(timeout=10.0)
    assert errors_total(monitor) == 1
    assert internal_errors(monitor) == 0


def test_logging_handler_that_records_during_capture(make_monitor):
    """The app's own handler records an error for every WARNING, including the monitor's own
    warnings (pattern detected, internal failure) emitted while it is processing errors."""
    monitor = make_monitor(pattern_threshold=2, capture_logging=True)
    recorded_from_handler: list[str | None] = []
    recorded_messages: list[str] = []

    class RecordingHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            error = RuntimeError(f"log said: {record.getMessage()}")
            recorded_from_handler.append(monitor.record_error(error))
            recorded_messages.append(record.getMessage())

    handler = RecordingHandler(level=logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for i in range(10):
            record(monitor, f"storm {i}")
        monitor.register_error_callback(lambda report: 1 / 0)  # internal failure -> WARNING
        record(monitor, "trigger the callback")
        assert monitor.flush(timeout=10.0)
        assert wait_until(lambda: internal_errors(monitor) >= 1)
        # the callback thread logs the warning just after the count: wait for the handler's
        # record of it, not a fixed pause
        assert wait_until(lambda: any("internal failure" in m for m in recorded_messages))
        assert monitor.flush(timeout=10.0)
    finally:
        root.removeHandler(handler)
    assert recorded_from_handler, "the monitor's warnings reached the app's handler"
    assert all(i is not None for i in recorded_from_handler)
    assert errors_total(monitor) == 11 + len(recorded_from_handler)
    assert sum(1 for m in messages(monitor) if m.startswith("storm")) == 10


# -- two monitors --------------------------------------------------------------------------------


def test_two_monitors_in_one_process(make_monitor, saved_hooks):
    first = make_monitor(capture_logging=True, capture_threading=True, namespace="first")
    second = make_monitor(capture_logging=True, capture_threading=True, namespace="second")
    shared = raised(ValueError("seen by both"))
    assert first.record_error(shared) == second.record_error(shared)  # same signature
    assert first.record_error(shared) is not None  # de-duplicated per monitor
    only_first = record(first, "first only")
    try:
        raise KeyError("logged")
    except KeyError:
        logging.getLogger("app.two").exception("both handlers see it")
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(OSError("in a thread")))
    thread.start()
    thread.join()
    assert first.flush() and second.flush()
    assert errors_total(first) == 4 and errors_total(second) == 3
    assert first.get_group(only_first) is not None
    first_metrics = generate_latest(first.registry).decode()
    second_metrics = generate_latest(second.registry).decode()
    assert "first_errors_total" in first_metrics and "second_" not in first_metrics
    assert "second_errors_total" in second_metrics and "first_" not in second_metrics
    # stopping one leaves the other capturing
    first.stop(timeout=2.0)
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(OSError("after stop")))
    thread.start()
    thread.join()
    try:
        raise KeyError("logged after stop")
    except KeyError:
        logging.getLogger("app.two").exception("only the second sees it")
    assert second.flush()
    assert errors_total(second) == 5
    assert errors_total(first) == 4
    assert internal_errors(first) == 0 and internal_errors(second) == 0
