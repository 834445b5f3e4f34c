"""Reports that survive the crash: real processes, killed or crashed, and their store file.

An uncaught exception that ends the interpreter is on disk before the process dies (even if
it is killed while it shuts down); a ``SIGKILL`` loses nothing that was flushed; a process
restarted on the same ``store_path`` serves the earlier groups and records over HTTP; the
offline CLI reads the file, also while its process is alive.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.cli.offline_store import load_store
from exporter.store.durable.tables import SQLITE, steps

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 60.0

APP = """
import atexit, os, signal, sys, time
from exporter import ErrorMonitor

mode, path = sys.argv[1], sys.argv[2]
QUIET = dict(enable_resource_monitoring=False, capture_logging=False,
             capture_threading=False, capture_asyncio=False)


def fail(message):
    raise ValueError(message)


def record(monitor, message, **options):
    try:
        fail(message)
    except ValueError as exc:
        return monitor.record_error(exc, **options)


if mode in ("crash", "crash-killed-at-exit"):
    monitor = ErrorMonitor(store_path=path, app_version="9.1", **QUIET).start()
    if mode == "crash-killed-at-exit":
        # runs before the monitor's own exit flush (atexit is last in, first out): only what
        # the excepthook already wrote can be in the file
        atexit.register(os.kill, os.getpid(), signal.SIGKILL)
    raise RuntimeError("the crash 42: the process dies here")
elif mode == "fork":
    monitor = ErrorMonitor(store_path=path, **QUIET).start()
    record(monitor, "parent before the fork")
    assert monitor.flush(30)
    child = os.fork()
    if child == 0:  # the child's own account, in memory: the parent's file is the parent's
        record(monitor, "child")
        assert monitor.flush(30)
        assert [g["occurrence_count"] for g in monitor.list_groups()] == [1]
        sys.exit(0)  # a normal exit: its exit hook runs
    assert os.waitpid(child, 0)[1] == 0
    record(monitor, "parent after the fork")
    assert monitor.flush(30)
    print("done", flush=True)
elif mode == "kill":
    monitor = ErrorMonitor(store_path=path, **QUIET).start()
    i = 0
    while True:
        record(monitor, f"err-{i}", component="loop")
        i += 1
        if i % 10 == 0:
            assert monitor.flush(30)
            print(f"flushed {i}", flush=True)
        time.sleep(0.002)
elif mode == "record":
    monitor = ErrorMonitor(store_path=path, **QUIET).start()
    for i in range(3):
        record(monitor, f"first run {i}", component="api", user_id=f"user{i}")
    try:
        {}["missing"]
    except KeyError as exc:
        monitor.record_error(exc, component="cache", severity="high")
    print("recorded", flush=True)  # exits normally: the exit hook flushes
elif mode == "serve":
    port = int(sys.argv[3])
    monitor = ErrorMonitor(store_path=path, port=port, **QUIET).start()
    record(monitor, "second run", component="api")
    assert monitor.flush(30)
    print("ready", flush=True)
    sys.stdin.read()
"""


def env() -> dict[str, str]:
    found = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    found["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), found.get("PYTHONPATH")]))
    return found


@pytest.fixture
def app(tmp_path: Path) -> Path:
    script = tmp_path / "app.py"
    script.write_text(APP, encoding="utf-8")
    return script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_line(process: subprocess.Popen[str], wanted: str) -> str:
    """The first line of the process's stdout starting with ``wanted`` (a hang guard)."""
    deadline = time.monotonic() + DEADLINE
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(wanted):
            return line.strip()
        if not line and process.poll() is not None:
            raise AssertionError(
                f"the app exited ({process.returncode}): "
                f"{process.stderr.read() if process.stderr else ''}"
            )
    raise AssertionError(f"no {wanted!r} line within {DEADLINE} s")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def start(processes: list[subprocess.Popen[str]], app: Path, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(app), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=app.parent,
    )
    processes.append(process)
    return process


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env(), **extra_env},
        cwd=REPO,
    )


# -- the crash ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, returncode", [("crash", 1), ("crash-killed-at-exit", -signal.SIGKILL)]
)
def test_the_error_that_ends_the_interpreter_is_on_disk_before_it_exits(
    app, tmp_path, mode, returncode
):
    path = tmp_path / "errors.sqlite"
    done = subprocess.run(
        [sys.executable, str(app), mode, str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env(),
        cwd=tmp_path,
    )
    assert done.returncode == returncode  # -9: killed in its exit handlers, before our flush
    assert "RuntimeError: the crash 42" in done.stderr  # the app's traceback still printed
    store = load_store(str(path))  # offline, as an operator would after the crash
    (group,) = store.groups.values()
    report = group.report
    assert report.error_type == "RuntimeError"
    assert report.error_message == "the crash 42: the process dies here"
    assert report.handled is False and report.mechanism == "excepthook"
    assert 'raise RuntimeError("the crash 42: the process dies here")' in report.stack_trace
    assert group.first_seen_version == "9.1"
    (record,) = group.occurrences
    assert "the crash 42" in (record.stack_trace or "")
    # the crash ended the process's session as crashed, on disk before any exit handler ran
    done = cli("analyze", "--store", str(path), "--json")
    assert done.returncode == 0, done.stderr
    sessions = json.loads(done.stdout)["sessions"]
    assert sessions["ended"]["crashed"] == 1, sessions
    assert sessions["crash_free_ratio"] == 0.0
    assert sessions["active"] == 0  # the reader's own process session is not the app's


def test_sessions_of_every_run_add_up_in_the_store(app, tmp_path):
    """Two clean runs and a crash: the store counts three sessions, one crashed."""
    path = tmp_path / "errors.sqlite"
    for mode in ("record", "record", "crash"):
        subprocess.run(
            [sys.executable, str(app), mode, str(path)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            env=env(),
            cwd=tmp_path,
        )
    done = cli("analyze", "--store", str(path), "--json")
    assert done.returncode == 0, done.stderr
    ended = json.loads(done.stdout)["sessions"]["ended"]
    assert (ended["errored"], ended["crashed"], sum(ended.values())) == (2, 1, 3), ended


def test_sigkill_loses_nothing_that_was_flushed(app, tmp_path, processes):
    path = tmp_path / "errors.sqlite"
    process = start(processes, app, "kill", str(path))
    line = read_line(process, "flushed 50")  # 50 recorded and flushed; it keeps recording
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=DEADLINE)
    assert process.returncode == -signal.SIGKILL
    flushed = int(line.split()[1])
    conn = sqlite3.connect(path)
    messages = {json.loads(d)["message"] for (d,) in conn.execute("SELECT data FROM records")}
    (count,) = conn.execute("SELECT occurrence_count FROM groups").fetchone()
    conn.close()
    assert {f"err-{i}" for i in range(flushed)} <= messages
    assert count >= flushed and count == len(messages)  # group and records in one transaction
    # the killed process's file opens again: a new process takes over where it stopped
    store = load_store(str(path))
    assert next(iter(store.groups.values())).report.occurrence_count == count


def test_a_forked_child_does_not_write_its_parents_store(app, tmp_path):
    path = tmp_path / "errors.sqlite"
    done = subprocess.run(
        [sys.executable, str(app), "fork", str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env(),
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    conn = sqlite3.connect(path)
    messages = [
        json.loads(d)["message"] for (d,) in conn.execute("SELECT data FROM records ORDER BY seq")
    ]
    assert messages == ["parent before the fork", "parent after the fork"]
    assert conn.execute("SELECT occurrence_count FROM groups").fetchall() == [(2,)]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


# -- a restart serves the old reports -------------------------------------------------------------


def test_a_restarted_process_serves_the_earlier_reports_over_http(app, tmp_path, processes):
    path = tmp_path / "errors.sqlite"
    first = subprocess.run(
        [sys.executable, str(app), "record", str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env(),
        cwd=tmp_path,
    )
    assert first.returncode == 0 and "recorded" in first.stdout, first.stderr
    before = load_store(str(path))
    old = {
        e: (g.report.occurrence_count, g.report.first_occurrence) for e, g in before.groups.items()
    }
    assert sorted(c for c, _ in old.values()) == [1, 3]

    port = free_port()
    second = start(processes, app, "serve", str(path), str(port))
    read_line(second, "ready")
    base = f"http://127.0.0.1:{port}/api/v1"
    listed = get(f"{base}/errors")
    assert listed["total"] == 2
    by_id = {g["error_id"]: g for g in listed["errors"]}
    assert set(by_id) == set(old)
    repeated = next(e for e, (c, _) in old.items() if c == 3)
    # process 2 recorded the same error once more: the count goes on, the first stays
    assert by_id[repeated]["occurrence_count"] == 4
    assert by_id[repeated]["first_occurrence_epoch"] == old[repeated][1]
    assert by_id[repeated]["affected_users"] == 3
    detail = get(f"{base}/errors/{repeated}")
    assert [o["message"] for o in detail["occurrences"]] == [
        "first run 0",
        "first run 1",
        "first run 2",
        "second run",
    ]
    other = next(e for e in old if e != repeated)
    assert get(f"{base}/errors/{other}")["group"]["severity"] == "high"
    export = get(f"{base}/export")
    assert [r["message"] for r in export["all_records"]] == [
        "first run 0",
        "first run 1",
        "first run 2",
        "'missing'",
        "second run",
    ]
    assert {t["error_id"] for t in export["analysis"]["top_errors"]} == set(old)

    # -- offline, while the live process holds the file (WAL readers) --------------------
    out = tmp_path / "offline.json"
    done = cli("export", "--store", str(path), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote 5 records from {path}" in done.stdout
    offline = json.loads(out.read_text())
    assert set(offline) == set(export) - {"next_cursor"}
    assert offline["all_records"] == export["all_records"]
    assert {t["error_id"]: t["occurrence_count"] for t in offline["analysis"]["top_errors"]} == {
        t["error_id"]: t["occurrence_count"] for t in export["analysis"]["top_errors"]
    }
    assert offline["statistics"]["total_errors"] == 5
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    filtered = tmp_path / "high.json"
    done = cli("export", "--store", str(path), "--output", str(filtered), "--severity", "high")
    assert done.returncode == 0, done.stderr
    assert [r["message"] for r in json.loads(filtered.read_text())["all_records"]] == ["'missing'"]
    done = cli("analyze", "--store", str(path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == str(path)
    assert report["total_unique_errors"] == 2
    assert {t["error_id"]: t["occurrence_count"] for t in report["top_errors"]} == {
        repeated: 4,
        other: 1,
    }
    done = cli("analyze", "--store", str(path))  # the tables, as for --file
    assert done.returncode == 0, done.stderr
    assert "ValueError" in done.stdout and "KeyError" in done.stdout
    assert second.poll() is None  # still serving: the offline reads did not disturb it


# -- the offline CLI's errors ----------------------------------------------------------------------


def test_offline_commands_on_a_missing_store_exit_2_naming_it(tmp_path):
    missing = tmp_path / "nope.sqlite"
    for args in (
        ("export", "--store", str(missing), "-o", str(tmp_path / "x.json")),
        ("analyze", "--store", str(missing)),
    ):
        done = cli(*args)
        assert done.returncode == 2, args
        assert f"error: {missing}: no such store file" in done.stderr
        assert "Traceback" not in done.stderr
    assert not missing.exists() and not (tmp_path / "x.json").exists()


def test_offline_commands_refuse_to_run_in_a_multiprocess_environment(tmp_path, app):
    path = tmp_path / "errors.sqlite"
    first = subprocess.run(
        [sys.executable, str(app), "record", str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env(),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    directory = tmp_path / "mp"
    directory.mkdir()
    done = cli("analyze", "--store", str(path), PROMETHEUS_MULTIPROC_DIR=str(directory))
    assert done.returncode == 2
    assert "PROMETHEUS_MULTIPROC_DIR is set in this environment: unset it" in done.stderr
    assert list(directory.iterdir()) == []  # nothing written into a server's directory


def test_offline_commands_refuse_a_newer_store_and_a_foreign_file(tmp_path):
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.executescript(
        "CREATE TABLE groups (x); CREATE TABLE records (y); PRAGMA user_version = 9;"
    )
    conn.close()
    done = cli("analyze", "--store", str(newer))
    assert done.returncode == 2
    assert f"{newer}: store schema version 9 is newer than this error-exporter's" in done.stderr
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    done = cli("export", "--store", str(garbage), "-o", str(tmp_path / "x.json"))
    assert done.returncode == 2
    assert f"{garbage}: not a readable error store" in done.stderr
    assert garbage.read_bytes() == b"not a database" * 100  # offline never moves anything


def test_offline_export_reads_an_old_schema_without_writing_it(tmp_path, app):
    path = tmp_path / "errors.sqlite"
    first = subprocess.run(
        [sys.executable, str(app), "record", str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env(),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    current = sqlite3.connect(path)  # its rows, back in the v1 layout (no release health,
    groups = current.execute(
        "SELECT error_id, occurrence_count, first_occurrence, "  # no app)
        "last_occurrence, report, state FROM groups"
    ).fetchall()
    records = current.execute("SELECT seq, ts, error_id, data FROM records").fetchall()
    current.close()
    path.unlink()
    conn = sqlite3.connect(path)
    for statement in steps(SQLITE, 0, "app", target=1):
        conn.execute(statement)
    conn.executemany("INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?)", groups)
    conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", records)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    out = tmp_path / "old.json"
    done = cli("export", "--store", str(path), "-o", str(out))
    assert done.returncode == 0, done.stderr
    exported = json.loads(out.read_text())
    assert len(exported["all_records"]) == 4
    assert exported["analysis"]["total_unique_errors"] == 2
    assert path.read_bytes() == before
