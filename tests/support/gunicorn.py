"""A real gunicorn serving examples/wsgi_app.py in multiprocess mode, and the plain clients
the multiprocess scenarios read it with (tests/scenarios/test_multiprocess_*.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.multiprocess import SharedStore
from support.jobs import clean_env as clean_env  # re-exported: the scenarios import them here
from support.jobs import free_port as free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
KINDS = {"value": "ValueError", "key": "KeyError", "zero": "ZeroDivisionError"}
PER_KIND = 20
N = PER_KIND * len(KINDS)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def get(url: str, accept: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def error_totals(text: str) -> Counter[str]:
    """app_errors_total summed per error_type, from one text-format scrape."""
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "app_errors":
            for sample in family.samples:
                if sample.name == "app_errors_total":
                    totals[sample.labels["error_type"]] += int(sample.value)
    return totals


def sample_values(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


def stop_by_pid(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


class Gunicorn:
    """gunicorn -c examples/gunicorn_conf.py serving examples/wsgi_app.py on a free port."""

    def __init__(
        self, multiproc: Path, log: Path, preload: bool, workers: int = 4, **env: str
    ) -> None:
        self.dir = multiproc
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(EXAMPLES / "gunicorn_conf.py"),
            "--chdir",
            str(EXAMPLES),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--graceful-timeout",
            "5",
        ]
        if preload:
            args.append("--preload")
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [*args, "wsgi_app:app"],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=clean_env(PROMETHEUS_MULTIPROC_DIR=str(multiproc), **env),
        )

    def workers(self) -> set[int]:
        """Pids of the workers that are up (their publisher has written their state)."""
        return {int(w["pid"]) for w in SharedStore(self.dir).workers(5.0)} - {self.proc.pid}

    def stop(self) -> None:
        stop_by_pid(self.proc)
        self.log.close()


def raise_in_workers(url: str) -> None:
    """N requests that raise, concurrently, so that the workers share them."""
    paths = [f"/boom/{kind}?delay=0.05" for kind in KINDS for _ in range(PER_KIND)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda p: get(url + p)[0], paths))
    assert statuses == [500] * N


def counted_by_pid(directory: Path, name: str) -> dict[int, int]:
    """``name`` (a counter sample) of each worker, from its own counter file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    counts: dict[int, int] = {}
    for path in directory.glob("counter_*.db"):
        total = sum(
            s.value
            for m in MultiProcessCollector.merge([str(path)], accumulate=True)
            for s in m.samples
            if s.name == name
        )
        if total:
            counts[int(path.stem.split("_")[1])] = int(total)
    return counts


def errors_by_pid(directory: Path) -> dict[int, int]:
    """app_errors_total of each worker, from its own counter file."""
    return counted_by_pid(directory, "app_errors_total")


TOKEN = "resolve-token"  # the API token of the gunicorn fixtures that resolve


def api(url: str, method: str = "GET") -> tuple[int, Any, int]:
    """Status, JSON body and the answering worker's pid of one authorized API call."""
    request = urllib.request.Request(
        url,
        data=b"" if method == "POST" else None,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                json.loads(response.read()),
                int(response.headers.get("X-Worker-Pid") or 0),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), int(exc.headers.get("X-Worker-Pid") or 0)
