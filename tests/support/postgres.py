"""A real PostgreSQL server for the tests: ``initdb`` in a temp directory, one per session.

The tests run as root, and PostgreSQL refuses to run as root: the data directory is
owned by an unprivileged system user (``postgres`` when the package created it, else
``nobody``) and ``initdb`` / ``postgres`` run as that user. The server listens on
127.0.0.1 on a free port (TCP, as the app would connect) with its unix socket in the
temp directory (never the system's /var/run/postgresql). It is stopped by PID at
teardown, and also when the run is interrupted (atexit, SIGTERM, SIGHUP; pytest turns
SIGINT into a teardown): its whole process group is killed. A run killed by SIGKILL runs
no handler: the next run stops what it left (:func:`stop_stale_servers`).

Each test gets a fresh database (``CREATE DATABASE``): :meth:`PostgresServer.new_database`.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from .tools import in_ci

PREFIX = "error-exporter-pg-"
OWNER = "owner.pid"  # the test run that started the server (a SIGKILLed one: stale)
SUPERUSER = "exporter_test"
# TCP connections need it (scram-sha-256): every URL the tests use carries a password, so
# any output can be searched for it (the DSN redaction is tested on every path)
PASSWORD = "pw-Zq8-never-shown"


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in the newest /usr/lib/postgresql/*/bin (Debian's layout)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def require_postgres() -> dict[str, str]:
    """The paths of initdb and postgres: a failure in CI when missing, a skip elsewhere."""
    found = {name: find_binary(name) for name in ("initdb", "postgres")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = (
            f"PostgreSQL is not installed ({', '.join(missing)} not found on PATH or "
            "in /usr/lib/postgresql/*/bin)"
        )
        import pytest  # only here: the benchmarks start a server with this module too

        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {name: str(path) for name, path in found.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("no unprivileged user (postgres or nobody) to run PostgreSQL as")


class PostgresServer:
    """One running postmaster in its own temp directory."""

    def __init__(self, binaries: dict[str, str]) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / OWNER).write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._as: Callable[[], None] | None = None
        if os.geteuid() == 0:
            user = _unprivileged_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chmod(self.root, 0o700)
            uid, gid = user.pw_uid, user.pw_gid

            def become() -> None:
                os.setgid(gid)
                os.setgroups([])
                os.setuid(uid)

            self._as = become

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as is not None:
            user = _unprivileged_user()
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                self.binaries["initdb"],
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            preexec_fn=self._as,
            cwd=self.root,
        )
        pwfile.unlink()
        self.start_server()

    def start_server(self) -> None:
        """Start (or restart after :meth:`stop_server`) the postmaster; wait until ready."""
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 (the server's stderr)

        def setup() -> None:
            os.setpgrp()  # its own process group: killed whole at the end
            if self._as is not None:
                self._as()

        self.process = subprocess.Popen(
            [
                self.binaries["postgres"],
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            preexec_fn=setup,
            cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                with self.connect("postgres"):
                    return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start:\n" + self.log_tail()) from None
                time.sleep(0.1)

    def stop_server(self) -> None:
        """Stop the postmaster by PID (fast shutdown), its process group killed after."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)  # fast shutdown
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def close(self) -> None:
        self.stop_server()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "postgres.log").read_text(errors="replace")[-3000:]
        return ""

    # -- databases ---------------------------------------------------------------------------
    def url(self, database: str, user: str = SUPERUSER, password: str | None = PASSWORD) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the database of ``url``; its rows (empty for none)."""
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description else []


_RUNNING: list[PostgresServer] = []


def _stop_all() -> None:
    while _RUNNING:
        _RUNNING.pop().close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def stop_stale_servers() -> None:
    """Servers left by a test run that was SIGKILLed (no handler runs then): their owner
    is gone, so the postmaster (by the PID in its postmaster.pid) is stopped and the
    directory removed."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / OWNER).read_text())
            os.kill(owner, 0)
            continue  # its run is alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        with contextlib.suppress(OSError, ValueError):
            postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
            os.killpg(postmaster, signal.SIGQUIT)  # its own group: postmaster and children
        shutil.rmtree(root, ignore_errors=True)


def start_server() -> PostgresServer:
    """A started server, stopped at interpreter exit and on SIGTERM / SIGINT too."""
    stop_stale_servers()
    server = PostgresServer(require_postgres())
    if not _RUNNING:
        atexit.register(_stop_all)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signum, _on_signal)
    _RUNNING.append(server)
    try:
        server.start()
    except BaseException:
        _RUNNING.remove(server)
        server.close()
        raise
    return server


def stop_server(server: PostgresServer) -> None:
    if server in _RUNNING:
        _RUNNING.remove(server)
    server.close()
