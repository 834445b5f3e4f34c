"""Every URL the project prints answers 200 (issue 19).

The demo banner, the ``serve`` banner, the monitor's own "serving on" line, the README and
the docs point users at URLs; one that answers 404 (``/api/v1/`` did) is the first thing a
newcomer copies and the first thing that fails. Each is requested as printed (the README's
and the docs' URLs with the real port of a monitor started on port 0).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.docs import all_docs

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# the README and every docs/ page: what a reader copies
DOCS = all_docs()
URL = re.compile(r"http://[^\s`'\")<>]+")
QUIET = HOOKS_OFF


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_of(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def urls_in(text: str) -> list[str]:
    return sorted({u.rstrip(".,:;") for u in URL.findall(text)})


def wait_for(url: str, proc: subprocess.Popen[str]) -> None:
    """Until ``url`` answers; the process must still run (no time is asserted)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the process ended before serving"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} never answered")


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("token", [None, "banner-token"], ids=["open", "token"])
def test_every_url_of_the_demo_banner_answers_200(token: str | None) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "demo", "--port", str(port), "--no-live"]
    argv += ["--rate", "20", "--deploy-after", "1", "--duration", "120"]
    if token:
        argv += ["--token", token]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=clean_env(),
    )  # fmt: skip
    try:
        banner = read_until(proc, "Press Ctrl-C")
        urls = urls_in(banner)
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/api/v1/" in urls and f"{base}/metrics" in urls, banner
        assert any("new_in=" in u for u in urls), banner  # the deploy's URL is checked too
        wait_for(base + "/healthz", proc)
        answers = {url: status_of(url, token) for url in urls}
    finally:
        stop(proc)
    assert answers == dict.fromkeys(urls, 200), answers


def test_the_url_the_monitor_logs_when_it_starts_answers_200(caplog: Any) -> None:
    with caplog.at_level(logging.INFO, logger="exporter.http"):
        monitor = ErrorMonitor(port=0, **QUIET).start()
    try:
        [line] = [r.getMessage() for r in caplog.records if "serving on" in r.getMessage()]
        [url] = urls_in(line)
        assert url == monitor.server.url  # the real port, not the 0 asked for
        assert status_of(url) == 200 and status_of(url + "/api/v1/") == 200
    finally:
        monitor.stop()


def test_every_url_of_the_serve_banner_answers_200(tmp_path: Path) -> None:
    """``error-exporter serve`` (multiprocess sidecar): its URL and the routes it names."""
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "serve", "--multiproc-dir", str(tmp_path)]
    argv += ["--port", str(port)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=clean_env(),
    )  # fmt: skip
    try:
        banner = read_until(proc, "serving on")
        [url] = urls_in(banner)
        assert url == f"http://127.0.0.1:{port}", banner
        named = re.findall(r"(/[\w/.-]+)", banner.split(url, 1)[1])
        assert "/metrics" in named, banner
        answers = {url + path: status_of(url + path) for path in ["", "/api/v1/", *named]}
    finally:
        stop(proc)
    assert answers == dict.fromkeys(answers, 200), answers


def test_every_local_url_of_the_readme_and_docs_answers_200() -> None:
    """README and docs URLs on http://127.0.0.1:9718, against a monitor on a free port; and the
    routes "The first minute" sends a browser to (``<error_id>``: a real one)."""
    monitor = ErrorMonitor(port=0, app_version="1.0.0", **QUIET).start()
    try:
        try:
            raise ValueError("for the README's URLs")
        except ValueError as exc:
            error_id = monitor.record_error(exc)
        assert monitor.flush()
        base = monitor.server.url
        printed = [u for u in urls_in(DOCS) if u.startswith("http://127.0.0.1:9718")]
        assert "http://127.0.0.1:9718/api/v1/" in printed and len(printed) >= 4, printed
        urls = [base + u.removeprefix("http://127.0.0.1:9718") for u in printed]
        minute = README.split("## The first minute", 1)[1].split("\n## ", 1)[0]
        routes = re.findall(r"`(/(?:metrics|api/)[^`\s]*)`", minute)
        assert len(routes) >= 4, routes
        urls += [base + r.replace("<error_id>", str(error_id)) for r in routes]
        answers = {url: status_of(url) for url in urls}
    finally:
        monitor.stop()
    assert answers == dict.fromkeys(urls, 200), answers


def test_the_api_index_lists_every_route_of_the_openapi_document() -> None:
    monitor = ErrorMonitor(port=0, api_token="index-token", **QUIET).start()
    try:
        base = monitor.server.url
        request = urllib.request.Request(base + "/api/v1/")
        request.add_header("Authorization", "Bearer index-token")
        with urllib.request.urlopen(request, timeout=10) as response:
            index = json.loads(response.read())
        assert status_of(base + "/api/v1/") == 401  # an /api route like the others
        request = urllib.request.Request(base + index["openapi"])
        request.add_header("Authorization", "Bearer index-token")
        with urllib.request.urlopen(request, timeout=10) as response:
            doc = json.loads(response.read())
    finally:
        monitor.stop()
    listed = {(r["method"], r["path"]) for r in index["routes"]}
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert listed == documented
    assert ("POST", "/api/v1/errors/{error_id}/resolve") in listed  # open: a token is set
