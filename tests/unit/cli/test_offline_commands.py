"""CLI tests that need no demo server: check-config, error paths, and the commands against
a small stand-in API (a real ErrorMonitor behind http.server) so the client, paging and
rendering are tested independently of the HTTP layer."""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from rich.console import Console

from exporter.cli import bar, sparkline
from exporter.cli.client import ApiClient, AuthRequired, ConnectionFailed, NotJson
from exporter.cli.export import write_atomically
from exporter.cli.main import main
from exporter.cli.watch import (
    PANEL_TITLES,
    WatchState,
    plain_line,
    poll,
    render,
    resources_from_metrics,
)

REPO = Path(__file__).resolve().parents[3]
TOKEN = "offline-secret"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m exporter ARGS`` in a clean environment (no ERROR_EXPORTER_* leaking in)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ERROR_EXPORTER_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), environment.get("PYTHONPATH")])
    )
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=environment,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a stand-in for the HTTP layer ----------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _StubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data, default=str).encode(), "application/json")

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        monitor = self.server.monitor
        if path.startswith("/html/"):
            self._send(200, b"<html>not an API</html>", "text/html")
            return
        if path.startswith("/locked/"):
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._json({"error": "missing or invalid token", "status": 401}, 401)
                return
            path = path[len("/locked") :]
        self.server.hits.append(path + ("?" + url.query if url.query else ""))
        if path == "/metrics":
            self._send(200, generate_latest(monitor.registry), "text/plain; version=0.0.4")
        elif path == "/api/v1/statistics":
            self._json(monitor.get_statistics())
        elif path == "/api/v1/analysis":
            self._json(monitor.get_error_analysis())
        elif path == "/api/v1/errors":
            groups = monitor.list_groups(query.get("sort", "count"), int(query.get("limit", 50)))
            self._json({"errors": groups, "total": len(groups)})
        elif path == "/api/v1/patterns":
            self._json({"patterns": monitor.get_patterns()})
        elif path.startswith("/api/v1/plugins/") and path.endswith("/health"):
            self._json(monitor.get_plugin_health(urllib.parse.unquote(path.split("/")[4])))
        elif path == "/api/v1/export":
            filters: dict[str, Any] = {
                k: query[k] for k in ("severity", "component", "plugin", "error_type") if k in query
            }
            if "limit" in query:
                filters["limit"] = int(query["limit"])
            if "cursor" in query:
                filters["cursor"] = int(query["cursor"])
            self._json(monitor.export_data(**filters))
        else:
            self._json({"error": "not found", "status": 404}, 404)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, monitor: Any) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.monitor = monitor
        self.hits: list[str] = []


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[str, _StubServer]]:
    from exporter import ErrorMonitor
    from exporter.demo.workload import Workload

    monitor = ErrorMonitor(
        pattern_threshold=5,
        pattern_window_minutes=1,
        capture_sys_excepthook=False,
        capture_threading=False,
    )
    monitor.start()
    workload = Workload(monitor, rate=100, seed=3)
    try:
        for _ in range(300):
            workload.step()
        workload.storm()
    finally:
        workload.close()  # ends the session the steps left current in this thread
    monitor.flush()
    server = _StubServer(monitor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        monitor.stop()


# -- check-config ---------------------------------------------------------------------


def test_check_config_ok(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("pattern_threshold: 3\nport: 9100\nseverity_by_type:\n  KeyError: low\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and str(path) in result.stdout


def test_check_config_lists_every_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pattern_threshold: 0\nport: 70000\ndefault_severity: severe\nbogus: 1\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    for key in ("pattern_threshold", "port", "default_severity", "bogus"):
        assert key in result.stdout
    assert "4 problems" in result.stdout


@pytest.mark.parametrize("content", [None, "a: [1,\n", "- just\n- a list\n"])
def test_check_config_unreadable_file_names_it(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "conf.yaml"
    if content is not None:
        path.write_text(content)
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


# -- usage and connection errors ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["export"],
        ["watch", "--refresh", "0"],
        ["nope"],
        ["analyze", "--url", "x", "--file", "y"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert main(args) == 2


@pytest.mark.parametrize(
    "command",
    [["analyze"], ["export", "-o", "{tmp}/out.json"], ["watch", "--no-rich", "--iterations", "1"]],
)
def test_connection_refused_names_url(command: list[str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = [a.format(tmp=tmp_path) for a in command]
    result = run_cli(*args, "--url", url)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert url in output and "connection refused" in output
    assert "Traceback" not in output
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("content", ["[1, 2]", '{"hello": "world"}', "not json at all"])
def test_analyze_rejects_non_export(tmp_path: Path, content: str) -> None:
    path = tmp_path / "thing.json"
    path.write_text(content)
    result = run_cli("analyze", "--file", str(path))
    assert result.returncode == 2
    assert "not an export file" in result.stderr and str(path) in result.stderr


def test_analyze_missing_file(tmp_path: Path) -> None:
    result = run_cli("analyze", "--file", str(tmp_path / "missing.json"))
    assert result.returncode == 2
    assert "missing.json" in result.stderr


def test_analyze_reads_legacy_aggregator_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kinds = [("TimeoutError", "slow", "weather")] * 3 + [("KeyError", "'price'", "stocks")] * 2
    records: list[dict[str, Any]] = [
        {
            "error_type": t,
            "message": m,
            "timestamp": f"2024-12-01T10:0{i}:00",
            "context": {},
            "plugin_id": p,
            "operation": "update",
            "stack_trace": None,
        }
        for i, (t, m, p) in enumerate(kinds)
    ]
    legacy = {
        "exported_at": "2024-12-01T10:10:00",
        "summary": {
            "total_errors": 5,
            "error_counts_by_type": {"TimeoutError": 3, "KeyError": 2},
            "active_patterns": {},
        },
        "all_records": records,
    }
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(legacy))
    assert main(["analyze", "--file", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [t["error_type"] for t in report["top_errors"]] == ["TimeoutError", "KeyError"]
    assert report["statistics"]["total_errors"] == 5
    assert main(["analyze", "--file", str(path)]) == 0
    assert "TimeoutError" in capsys.readouterr().out


# -- the client -----------------------------------------------------------------------


def test_client_errors_name_url_and_cause(stub: tuple[str, _StubServer]) -> None:
    url, _ = stub
    with pytest.raises(NotJson, match=r"/html/api/v1/statistics did not return JSON"):
        ApiClient(url + "/html").statistics()
    with pytest.raises(AuthRequired, match="ERROR_EXPORTER_API_TOKEN"):
        ApiClient(url + "/locked", token="").statistics()
    with pytest.raises(AuthRequired, match="rejected"):
        ApiClient(url + "/locked", token="wrong").statistics()
    assert ApiClient(url + "/locked", token=TOKEN).statistics()["total_errors"] > 0
    with pytest.raises(ConnectionFailed, match="connection refused"):
        ApiClient(f"127.0.0.1:{free_port()}").statistics()


def test_token_from_environment(stub: tuple[str, _StubServer]) -> None:
    url, _ = stub
    denied = run_cli("analyze", "--url", url + "/locked")
    assert denied.returncode == 1
    assert "401" in denied.stderr and "--token or ERROR_EXPORTER_API_TOKEN" in denied.stderr
    allowed = run_cli(
        "analyze", "--json", "--url", url + "/locked", env={"ERROR_EXPORTER_API_TOKEN": TOKEN}
    )
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["top_errors"]


# -- the commands against the stand-in ------------------------------------------------


def test_watch_plain_lines(
    stub: tuple[str, _StubServer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = stub
    code = main(["watch", "--url", url, "--no-rich", "--iterations", "2", "--refresh", "0.1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert len(lines) == 2
    for line in lines:
        for key in ("total=", "rate=", "groups=", "top=", "patterns=", "plugins=", "cpu="):
            assert key in line, line
    assert "rate=-" in lines[0] and "rate=0.0/s" in lines[1]
    assert "weather:" in lines[1] and ":critical" in lines[1]


def test_watch_render_has_every_panel(stub: tuple[str, _StubServer]) -> None:
    url, _ = stub
    state = WatchState(url)
    snap = poll(ApiClient(url), state)
    console = Console(record=True, width=180)
    console.print(render(state, 2.0))
    text = console.export_text()
    for title in PANEL_TITLES:
        assert title in text
    assert "CANBusError" in text and "weather" in text
    assert "total=" in plain_line(snap)


def test_watch_shows_lost_connection(tmp_path: Path) -> None:
    state = WatchState("http://127.0.0.1:1")
    state.problem = "connection refused"
    console = Console(record=True, width=120)
    console.print(render(state, 2.0))
    assert "connection lost" in console.export_text()


def test_analyze_url_tables_and_json(
    stub: tuple[str, _StubServer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = stub
    assert main(["analyze", "--url", url]) == 0
    out = capsys.readouterr().out
    for heading in ("Statistics", "By severity", "Top errors", "Patterns", "Sessions", "Recovery"):
        assert heading in out
    assert "workload.py:" in out and "█" in out
    assert main(["analyze", "--url", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"statistics", "top_errors", "patterns", "sessions", "recovery"} <= set(report)
    assert all(t["location"].startswith("demo/workload.py:") for t in report["top_errors"])


def test_export_pages_then_analyze_file(
    stub: tuple[str, _StubServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, server = stub
    out = tmp_path / "errors.json"
    server.hits.clear()
    assert main(["export", "--url", url, "-o", str(out), "--page-size", "7", "--limit", "40"]) == 0
    assert "wrote 40 records" in capsys.readouterr().out
    pages = [h for h in server.hits if h.startswith("/api/v1/export")]
    assert len(pages) == 6 and "cursor=" in pages[1]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["errors.json"]
    data = json.loads(out.read_text())
    assert len(data["all_records"]) == 40 and "next_cursor" not in data
    assert {"exported_at", "summary", "statistics", "analysis"} <= set(data)
    assert main(["analyze", "--file", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == str(out) and report["top_errors"]
    assert any(sum(t["timeline"]) for t in report["top_errors"])


def test_export_filters_are_sent(stub: tuple[str, _StubServer], tmp_path: Path) -> None:
    url, _ = stub
    out = tmp_path / "critical.json"
    assert (
        main(["export", "--url", url, "-o", str(out), "--severity", "critical", "--plugin", "news"])
        == 0
    )
    records = json.loads(out.read_text())["all_records"]
    assert records and all(r["severity"] == "critical" for r in records)
    assert {r["plugin_id"] for r in records} == {"news"}


def test_export_unwritable_target(stub: tuple[str, _StubServer], tmp_path: Path) -> None:
    url, _ = stub
    result = run_cli("export", "--url", url, "-o", str(tmp_path / "no" / "such" / "x.json"))
    assert result.returncode == 1
    assert "x.json" in result.stderr and "Traceback" not in result.stderr


# -- small pieces ---------------------------------------------------------------------


def test_relative_times_become_epoch_seconds() -> None:
    from exporter.cli.main import _time_arg

    assert abs(float(_time_arg("2h")) - (time.time() - 7200)) < 5
    assert abs(float(_time_arg("1.5d")) - (time.time() - 1.5 * 86400)) < 5
    assert _time_arg("2024-01-01T00:00:00") == "2024-01-01T00:00:00"
    assert _time_arg("1700000000") == "1700000000"
    for bad in ("xh", "yesterday", "-5m", "2024-13-01"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"15m, 2h or 1d.*epoch.*ISO-8601"):
            _time_arg(bad)


def test_sparkline_and_bar() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert bar(10, 10, 4) == "████"
    assert bar(0, 10) == "" and bar(5, 0) == ""
    assert bar(1, 16, 2) == "▏"


def test_resources_from_metrics_any_namespace() -> None:
    text = (
        "# TYPE shop_system_cpu_utilization_ratio gauge\n"
        "shop_system_cpu_utilization_ratio 0.25\n"
        "# TYPE shop_process_threads gauge\nshop_process_threads 7.0\n"
        "# TYPE process_open_fds gauge\nprocess_open_fds 9.0\n"
    )
    assert resources_from_metrics(text) == {"CPU": "25.0%", "Threads": "7"}
    assert resources_from_metrics("garbage {{{") == {}


def test_write_atomically_replaces(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    target.write_text("old")
    write_atomically(str(target), {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
