"""Real background-job processes for the tests: redis-server, Celery and RQ workers.

Every process is started in its own session (process group) and stopped by that id at
teardown, on a test's failure and on interruption (Ctrl-C runs the fixtures' finalizers; an
``atexit`` hook stops whatever is left; a test process killed outright takes them along:
each one gets SIGTERM when its parent dies). Results are read the way an operator would across
processes: the multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``): its metric files and
its shared store.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector

from exporter.multiprocess import DB_NAME, SharedStore
from exporter.multiprocess.view import metric_files

REPO = Path(__file__).resolve().parents[2]
_running: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k.lower() != "prometheus_multiproc_dir"
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), extra.pop("PYTHONPATH", "")])
    env.update(extra)
    return env


class Process:
    """One started program, its output in a log file; ``stop()`` ends its whole group."""

    def __init__(
        self, args: list[str], log: Path, cwd: Path | str = REPO, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _running[self.proc.pid] = self.proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> None:
        _stop(self.proc, timeout)
        _running.pop(self.proc.pid, None)
        self._log.close()


def _find_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:
        return None


_PRCTL = _find_prctl()  # looked up here: the forked child must not import anything
_PR_SET_PDEATHSIG, _SIGTERM = 1, int(signal.SIGTERM)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, however it dies
    (killed, it runs no finalizer and no atexit hook)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to the group we started (a worker and its children), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # children left behind in the group (a pool child that outlived its parent)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)


@atexit.register
def _stop_all() -> None:
    for proc in list(_running.values()):
        _stop(proc, 5.0)
    _running.clear()


def wait_for(
    check: Callable[[], Any], timeout: float = 90.0, what: str = "", process: Process | None = None
) -> Any:
    """Poll until ``check()`` is truthy (a hang guard, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        if process is not None and process.proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited:\n{process.output()[-4000:]}")
        time.sleep(0.1)
    tail = f"\n{process.output()[-4000:]}" if process is not None else ""
    raise AssertionError(f"timed out waiting for {what}: {last!r}{tail}")


def start_redis(tmp: Path) -> tuple[Process, str]:
    """A private redis-server on a free loopback port (never the system's daemon)."""
    from support.tools import require_tool

    binary = require_tool("redis-server")
    port = free_port()
    server = Process(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(tmp),
        ],
        tmp / "redis.log",
        cwd=tmp,
    )
    url = f"redis://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_for(answers, 30, "redis-server", server)
    return server, url


# -- reading what the workers recorded -------------------------------------------------------


def records(directory: Path) -> list[dict[str, Any]]:
    """Every occurrence record in the shared store, oldest first (with the writer's pid)."""
    if not (directory / DB_NAME).exists():
        return []
    try:
        rows = (
            SharedStore(directory)
            .connect()
            .execute("SELECT instance, data FROM records ORDER BY seq")
            .fetchall()
        )
    except Exception:  # not created yet
        return []
    # each record names the instance that wrote it: host:pid unless ERROR_EXPORTER_INSTANCE
    return [{**json.loads(data), "pid": _pid_of(instance)} for instance, data in rows]


def _pid_of(instance: str | None) -> int | None:
    tail = str(instance or "").rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def group_reports(directory: Path) -> dict[str, dict[str, Any]]:
    """error_id -> (the group's report, with its occurrence count as ``count``)."""
    if not (directory / DB_NAME).exists():
        return {}
    try:
        rows = (
            SharedStore(directory)
            .connect()
            .execute("SELECT error_id, occurrence_count, report FROM groups")
            .fetchall()
        )
    except Exception:
        return {}
    return {error_id: {**json.loads(report), "count": count} for error_id, count, report in rows}


def metric(directory: Path, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``, over every process."""
    total = 0.0
    files = metric_files(directory, "*.db")  # as the monitor's own scrape reads them
    for family in MultiProcessCollector.merge(files, accumulate=True):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def worker_env(directory: Path, **extra: str) -> dict[str, str]:
    """A worker's environment: multiprocess mode in ``directory``, as docs/scaling.md says."""
    return clean_env(
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        ERROR_EXPORTER_ENABLE_RESOURCE_MONITORING="false",
        ERROR_EXPORTER_EXIT_FLUSH_TIMEOUT="10",
        PYTHONUNBUFFERED="1",
        **extra,
    )


def python() -> str:
    return sys.executable
