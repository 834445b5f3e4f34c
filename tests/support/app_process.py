"""App processes writing one shared store: started by a test, killed by PID after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


APP = str(REPO / "tests" / "support" / "fleet_app.py")


HANG_GUARD = 120.0  # seconds: only to end a test that would otherwise hang


class AppProcess:
    """One ``fleet_app.py`` process; :meth:`ask` sends a command and reads its answer."""

    def __init__(self, url: str, version: str, app: str | None = None, wait: bool = True) -> None:
        args = [sys.executable, APP, url, version, *([app] if app else [])]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.seen: list[str] = []
        if wait:
            self.ready()

    def ready(self) -> None:
        assert self._read() == {"ready": True}

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError("the app process ended: " + self.stop())
        self.seen.append(line)
        return json.loads(line)

    def stop(self) -> str:
        """Quit; returns everything it wrote to stderr (its log)."""
        if self.process.poll() is None:
            try:
                out, err = self.process.communicate("quit\n", timeout=HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.process.kill()
                out, err = self.process.communicate()
        else:
            out, err = self.process.communicate()
        self.seen.append(out)
        self.seen.append(err)
        return err


@pytest.fixture
def apps():
    started: list[AppProcess] = []

    def start(url: str, version: str, app: str | None = None, wait: bool = True) -> AppProcess:
        process = AppProcess(url, version, app, wait)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()
