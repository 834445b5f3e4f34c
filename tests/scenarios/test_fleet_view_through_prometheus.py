"""The fleet view: ``analyze --prometheus`` and ``export --prometheus`` against a real
Prometheus scraping real app processes.

One Prometheus (scrape every 1 s) for the module, with these jobs:

- ``app``: three apps (a, b, c) sharing one error and each with one of its own; c is stopped
  mid-way, so the view becomes partial;
- ``secure``: three apps with API tokens (two with ``SECRET``, one with ``OTHER``);
- ``odd``: app a, a server answering HTML instead of JSON, and one that never answers the API
  within the per-target timeout;
- ``gone``: one target where nothing listens.

Every process is stopped by its PID at teardown (``PromStack``); the in-process servers are
shut down. No assertion depends on how long anything took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.promstack import PromStack, Service, free_port, query, wait_until
from support.tools import require_tool

from exporter.cli import fleet_merge as fleet
from exporter.cli import to_epoch

pytestmark = [pytest.mark.tools, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SECRET = "fleet-secret-token"
OTHER = "another-token"

APP = """
import sys, time
from exporter import ErrorMonitor

port, kind, shared_n, own_n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
token = sys.argv[5] if len(sys.argv) > 5 else None
monitor = ErrorMonitor(serve=True, host="127.0.0.1", port=port, api_token=token,
                       capture_sys_excepthook=False, capture_threading=False,
                       capture_logging=False, capture_asyncio=False,
                       enable_resource_monitoring=False)
monitor.start()


def shared():
    raise ValueError("shared failure")


def own_a():
    raise KeyError("only on a")


def own_b():
    raise LookupError("only on b")


def own_c():
    raise OSError("only on c")


own = {"a": own_a, "b": own_b, "c": own_c}[kind]
for func, times, component in ((shared, shared_n, "api"), (own, own_n, "db")):
    for _ in range(times):
        try:
            func()
        except Exception as exc:
            monitor.record_error(exc, component=component)
monitor.flush()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


# -- helpers ----------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERROR_EXPORTER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=clean_env(**env),
    )


def api(url: str, path: str, token: str | None = None) -> Any:
    request = urllib.request.Request(url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@dataclass
class App:
    name: str
    service: Service
    token: str | None
    total: int

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    def groups(self) -> dict[str, int]:
        found = api(self.service.url, "/api/v1/errors?limit=10000", self.token)["errors"]
        return {g["error_id"]: g["occurrence_count"] for g in found}

    def summaries(self) -> list[dict[str, Any]]:
        return list(api(self.service.url, "/api/v1/errors?limit=10000", self.token)["errors"])


def start_app(
    stack: PromStack,
    script: Path,
    name: str,
    kind: str,
    shared_n: int,
    own_n: int,
    token: str | None = None,
) -> App:
    port = free_port()
    argv = [sys.executable, str(script), str(port), kind, str(shared_n), str(own_n)]
    if token:
        argv.append(token)
    service = stack.spawn(name, argv, port=port, ready_path=None, env=clean_env())
    app = App(name, service, token, shared_n + own_n)

    def recorded() -> bool:
        if not service.running():
            raise RuntimeError(f"{name} exited:\n{service.log_tail()}")
        return bool(api(service.url, "/api/v1/statistics", token)["total_errors"] == app.total)

    wait_until(recorded, timeout=60, what=f"{name} to record {app.total} errors")
    return app


class OddServers:
    """In-process targets: one answers HTML to everything, one holds API requests until
    teardown (its /metrics answers at once, so Prometheus keeps it as a target)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        release = self.release

        class Garbage(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"<html><body>definitely not an export</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Slow(Garbage):
            def do_GET(self) -> None:
                if self.path.startswith("/api/"):
                    release.wait(120)
                body = b"# TYPE up_slow gauge\nup_slow 1\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.servers = []
        for handler in (Garbage, Slow):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    @property
    def garbage(self) -> str:
        return f"127.0.0.1:{self.servers[0].server_address[1]}"

    @property
    def slow(self) -> str:
        return f"127.0.0.1:{self.servers[1].server_address[1]}"

    def close(self) -> None:
        self.release.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


@dataclass
class Fleet:
    prometheus: Service
    apps: dict[str, App]
    odd: OddServers
    nowhere: str
    workdir: Path

    @property
    def url(self) -> str:
        return self.prometheus.url


def active_targets(url: str) -> dict[str, list[dict[str, Any]]]:
    data = api(url, "/api/v1/targets?state=active")["data"]["activeTargets"]
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in data:
        jobs.setdefault(target["labels"]["job"], []).append(target)
    return jobs


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("fleet")
    script = workdir / "app.py"
    script.write_text(APP)
    odd = OddServers()
    with PromStack(workdir) as promstack:
        try:
            apps = {
                "a": start_app(promstack, script, "a", "a", 3, 2),
                "b": start_app(promstack, script, "b", "b", 4, 1),
                "c": start_app(promstack, script, "c", "c", 5, 3),
                "d": start_app(promstack, script, "d", "a", 2, 1, token=SECRET),
                "e": start_app(promstack, script, "e", "b", 6, 2, token=SECRET),
                "f": start_app(promstack, script, "f", "c", 1, 1, token=OTHER),
            }
            nowhere = f"127.0.0.1:{free_port()}"
            jobs = {"app": ["a", "b", "c"], "secure": ["d", "e", "f"]}
            scrape_configs = [
                {
                    "job_name": job,
                    "static_configs": [{"targets": [apps[name].instance for name in names]}],
                }
                for job, names in jobs.items()
            ]
            scrape_configs.append(
                {
                    "job_name": "odd",
                    "static_configs": [{"targets": [apps["a"].instance, odd.garbage, odd.slow]}],
                }
            )
            scrape_configs.append({"job_name": "gone", "static_configs": [{"targets": [nowhere]}]})
            prometheus = promstack.prometheus(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": scrape_configs,
                }
            )
            wait_until(
                lambda: len(query(prometheus.url, 'up{job=~"app|secure"} == 1')) == 6,
                timeout=90,
                what="every app target up in Prometheus",
            )
            wait_until(
                lambda: (
                    {k: len(v) for k, v in active_targets(prometheus.url).items()}
                    == {"app": 3, "secure": 3, "odd": 3, "gone": 1}
                ),
                timeout=30,
                what="every target active",
            )
            yield Fleet(prometheus, apps, odd, nowhere, workdir)
        finally:
            odd.close()


def by_instance(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["instance"]: entry for entry in doc["fleet"]["instances"]}


def assert_merged(doc: dict[str, Any], live: list[App]) -> None:
    """Counts, breakdowns, first/last seen and records equal those of the live apps."""
    expected: dict[str, dict[str, int]] = {}
    summaries: dict[str, list[dict[str, Any]]] = {}
    for app in live:
        for group in app.summaries():
            expected.setdefault(group["error_id"], {})[app.instance] = group["occurrence_count"]
            summaries.setdefault(group["error_id"], []).append(group)
    groups = {g["error_id"]: g for g in doc["fleet"]["groups"]}
    assert set(groups) == set(expected)
    for error_id, counts in expected.items():
        group = groups[error_id]
        assert group["instances"] == counts
        assert group["occurrence_count"] == sum(counts.values())
        firsts = [to_epoch(g["first_occurrence"]) for g in summaries[error_id]]
        lasts = [to_epoch(g["last_occurrence"]) for g in summaries[error_id]]
        assert to_epoch(group["first_occurrence"]) == min(f for f in firsts if f is not None)
        assert to_epoch(group["last_occurrence"]) == max(t for t in lasts if t is not None)
    total = sum(app.total for app in live)
    assert doc["statistics"]["total_errors"] == total
    assert doc["summary"]["total_errors"] == total
    assert doc["analysis"]["total_unique_errors"] == len(expected)
    assert len(doc["all_records"]) == total
    tagged = {app.instance: 0 for app in live}
    for record in doc["all_records"]:
        tagged[record["instance"]] += 1
    assert tagged == {app.instance: app.total for app in live}
    top = {t["error_id"]: t for t in doc["analysis"]["top_errors"]}
    for error_id, counts in expected.items():
        assert top[error_id]["occurrence_count"] == sum(counts.values())
        assert top[error_id]["instances"] == counts


# -- the fleet on a real Prometheus ----------------------------------------------------


def test_app_job_merges_every_instance_then_lists_the_stopped_one_as_down(
    stack: Fleet, tmp_path: Path
) -> None:
    apps = stack.apps
    everyone = [apps["a"], apps["b"], apps["c"]]
    out = tmp_path / "all.json"
    done = run_cli("export", "--prometheus", stack.url, "--job", "app", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "from 3 of 3 instances" in done.stdout
    progress = done.stderr.splitlines()
    for app in everyone:  # progress: one line per target
        assert any(line.split()[1:3] == ["ok", app.instance] for line in progress), progress
    doc = json.loads(out.read_text())
    assert {
        "exported_at",
        "summary",
        "statistics",
        "analysis",
        "all_records",
        "next_cursor",
        "fleet",
    } <= set(doc)
    assert doc["fleet"]["partial"] is False
    assert_merged(doc, everyone)
    shared = [g for g in doc["fleet"]["groups"] if g["error_type"] == "ValueError"]
    assert len(shared) == 1 and len(shared[0]["instances"]) == 3

    apps["c"].service.stop()  # one host goes away mid-way
    live = [apps["a"], apps["b"]]

    out = tmp_path / "partial.json"
    done = run_cli("export", "--prometheus", stack.url, "--job", "app", "-o", str(out))
    assert done.returncode == fleet.EXIT_PARTIAL, done.stderr
    assert "partial view: 1 of 3 targets failed" in done.stderr
    doc = json.loads(out.read_text())
    assert doc["fleet"]["partial"] is True
    stopped = by_instance(doc)[apps["c"].instance]
    assert stopped["status"] == "down"
    assert stopped["reason"] == "connection refused"
    assert stopped["records"] is None
    assert all(by_instance(doc)[app.instance]["status"] == "ok" for app in live)
    assert_merged(doc, live)
    assert (out.stat().st_mode & 0o777) == 0o600

    done = run_cli("analyze", "--prometheus", stack.url, "--job", "app")
    assert done.returncode == fleet.EXIT_PARTIAL, done.stderr
    for text in (
        "Top errors",
        "Fleet groups",
        "Targets",
        apps["c"].instance,
        "down",
        "connection refused",
        "2 of 3 instances",
    ):
        assert text in done.stdout, text

    done = run_cli("analyze", "--prometheus", stack.url, "--job", "app", "--json")
    assert done.returncode == fleet.EXIT_PARTIAL, done.stderr
    report = json.loads(done.stdout)
    assert report["statistics"]["total_errors"] == sum(app.total for app in live)
    rows = {row["error_id"]: row for row in report["top_errors"]}
    for error_id, counts in {g["error_id"]: g["instances"] for g in doc["fleet"]["groups"]}.items():
        assert rows[error_id]["instances"] == counts
    assert by_instance(report)[apps["c"].instance]["status"] == "down"

    done = run_cli("analyze", "--file", str(out))  # the merged file is an export like any
    assert done.returncode == 0, done.stderr
    assert "Top errors" in done.stdout


def test_token_from_the_environment_and_one_instance_that_refuses_it(
    stack: Fleet, tmp_path: Path
) -> None:
    apps = stack.apps
    out = tmp_path / "secure.json"
    done = run_cli(
        "export",
        "--prometheus",
        stack.url,
        "--job",
        "secure",
        "-o",
        str(out),
        ERROR_EXPORTER_API_TOKEN=SECRET,
    )
    assert done.returncode == fleet.EXIT_PARTIAL, done.stderr
    doc = json.loads(out.read_text())
    entries = by_instance(doc)
    assert entries[apps["f"].instance]["status"] == "unauthorized"
    assert "401" in entries[apps["f"].instance]["reason"]
    assert_merged(doc, [apps["d"], apps["e"]])

    # the option wins over the environment
    done = run_cli(
        "export",
        "--prometheus",
        stack.url,
        "--job",
        "secure",
        "-o",
        str(out),
        "--token",
        OTHER,
        ERROR_EXPORTER_API_TOKEN=SECRET,
    )
    assert done.returncode == fleet.EXIT_PARTIAL, done.stderr
    doc = json.loads(out.read_text())
    statuses = {k: v["status"] for k, v in by_instance(doc).items()}
    assert statuses == {
        apps["d"].instance: "unauthorized",
        apps["e"].instance: "unauthorized",
        apps["f"].instance: "ok",
    }
    assert_merged(doc, [apps["f"]])

    # without any token nobody answers: nothing merged, nothing written
    missing = tmp_path / "none.json"
    done = run_cli("export", "--prometheus", stack.url, "--job", "secure", "-o", str(missing))
    assert done.returncode == fleet.EXIT_FAILED, done.stderr
    assert "none of the 3 targets answered" in done.stderr
    assert not missing.exists()


def test_garbage_and_slow_targets_are_listed_and_the_rest_merges(stack: Fleet) -> None:
    app = stack.apps["a"]
    done = run_cli(
        "analyze", "--prometheus", stack.url, "--job", "odd", "--json", "--target-timeout", "2"
    )
    assert done.returncode == fleet.EXIT_PARTIAL, done.stderr
    report = json.loads(done.stdout)
    entries = by_instance(report)
    assert entries[app.instance]["status"] == "ok"
    assert entries[stack.odd.garbage]["status"] == "invalid"
    assert "not JSON" in entries[stack.odd.garbage]["reason"]
    assert entries[stack.odd.slow]["status"] == "timeout"
    assert entries[stack.odd.slow]["reason"]
    assert report["statistics"]["total_errors"] == app.total
    groups = {g["error_id"]: g["occurrence_count"] for g in report["fleet"]["groups"]}
    assert groups == app.groups()
    for target in (app.instance, stack.odd.garbage, stack.odd.slow):
        assert target in done.stderr  # progress names every target


def test_nothing_to_merge_exits_1(stack: Fleet) -> None:
    done = run_cli("analyze", "--prometheus", stack.url, "--job", "gone")
    assert done.returncode == fleet.EXIT_FAILED
    assert stack.nowhere in done.stderr and "connection refused" in done.stderr

    done = run_cli("analyze", "--prometheus", stack.url, "--job", "nosuch")
    assert done.returncode == fleet.EXIT_FAILED
    assert "no active target in job 'nosuch'" in done.stderr
    assert "app, gone, odd, secure" in done.stderr

    done = run_cli("analyze", "--prometheus", f"http://127.0.0.1:{free_port()}", "--job", "app")
    assert done.returncode == fleet.EXIT_FAILED
    assert "connection refused" in done.stderr

    done = run_cli(
        "export",
        "--prometheus",
        stack.url,
        "--url",
        stack.apps["a"].service.url,
        "-o",
        str(stack.workdir / "x.json"),
    )
    assert done.returncode == 2
    assert "exclude each other" in done.stderr


# -- the merge on its own ------------------------------------------------------------------


def test_api_base_keeps_host_port_and_prefix() -> None:
    assert fleet.api_base("http://10.0.0.5:9718/metrics") == "http://10.0.0.5:9718"
    assert fleet.api_base("https://h:443/monitor/metrics?x=1") == "https://h:443/monitor"
    assert fleet.api_base("http://h:1/federate") == "http://h:1"


def test_merge_copes_with_epoch_floats_and_iso_strings() -> None:
    old = [
        {
            "error_id": "e1",
            "error_type": "ValueError",
            "error_message": "old",
            "severity": "medium",
            "occurrence_count": 2,
            "first_occurrence": 1000.0,
            "last_occurrence": 2000.0,
            "affected_users": 1,
        }
    ]
    new = [
        {
            "error_id": "e1",
            "error_type": "ValueError",
            "error_message": "new",
            "severity": "critical",
            "occurrence_count": 5,
            "first_occurrence": "1970-01-01T00:15:00+00:00",
            "first_occurrence_epoch": 900.0,
            "last_occurrence": "1970-01-01T00:25:00+00:00",
            "last_occurrence_epoch": 1500.0,
            "affected_users": 2,
        },
        {
            "error_id": "e2",
            "error_type": "KeyError",
            "occurrence_count": 1,
            "first_occurrence": "1970-01-01T01:00:00+01:00",
            "last_occurrence": "1970-01-01T01:00:00+01:00",
        },
    ]
    merged = {g["error_id"]: g for g in fleet.merge_group_summaries([("h1", old), ("h2", new)])}
    e1 = merged["e1"]
    assert e1["occurrence_count"] == 7
    assert e1["instances"] == {"h1": 2, "h2": 5}
    assert e1["first_occurrence"] == "1970-01-01T00:15:00+00:00"  # 900 < 1000
    assert e1["first_occurrence_epoch"] == 900.0
    assert e1["last_occurrence"] == 2000.0  # 2000 > 1500
    assert e1["last_occurrence_epoch"] == 2000.0
    assert e1["error_message"] == "old"  # from the instance that saw it last
    assert e1["severity"] == "critical"
    assert e1["affected_users"] == 3
    assert to_epoch(merged["e2"]["first_occurrence"]) == 0.0
    assert list(merged) == ["e1", "e2"]  # most frequent first


def test_a_job_that_writes_a_shared_store_is_not_summed(tmp_path: Path) -> None:
    """Each instance of an app with a shared store answers for the whole fleet: the fleet
    view refuses to add them up (it would count each error once per instance) and says
    how to read it instead."""
    require_tool("prometheus")
    body = (
        b"# TYPE app_monitor_store_info gauge\n"
        b'app_monitor_store_info{backend="postgresql",release_scope="fleet"} 1\n'
    )

    class SharedStoreApp(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), SharedStoreApp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with PromStack(tmp_path) as promstack:
            prometheus = promstack.prometheus(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "shop",
                            "static_configs": [
                                {"targets": [f"127.0.0.1:{server.server_address[1]}"]}
                            ],
                        }
                    ],
                }
            )
            wait_until(
                lambda: query(prometheus.url, 'app_monitor_store_info{job="shop"}'),
                timeout=90,
                what="the store info scraped",
            )
            done = run_cli("analyze", "--prometheus", prometheus.url, "--job", "shop")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == fleet.EXIT_FAILED, done.stderr
    assert "writes a shared store" in done.stderr and "--url" in done.stderr
