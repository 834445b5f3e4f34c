"""Several worker processes, one picture.

The proof: a real gunicorn with 4 sync workers serving examples/wsgi_app.py; errors raised in
several workers add up exactly in one scrape, and one export shows every group with the
occurrence counts summed across workers; the sidecar shows the same; a worker's exit is
handled. Around it: the shared store's bounds, the fleet view over forked processes, and the
fallback when multiprocess mode cannot be on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.gunicorn import (
    KINDS,
    PER_KIND,
    REPO,
    TOKEN,
    Gunicorn,
    N,
    api,
    clean_env,
    counted_by_pid,
    error_totals,
    errors_by_pid,
    free_port,
    get,
    raise_in_workers,
    sample_values,
    stop_by_pid,
    wait_for,
)

from exporter import ErrorMonitor
from exporter.multiprocess import SharedStore, mark_process_dead, prepare_dir
from exporter.multiprocess.sqlite_store import DB_NAME


@pytest.fixture(params=[False, True], ids=["workers-import-app", "preload"])
def gunicorn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gunicorn]:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"stale")  # on_starting must wipe this
    server = Gunicorn(multiproc, tmp_path / "gunicorn.log", preload=request.param)
    try:
        wait_for(
            lambda: len(server.workers()) == 4 and get(server.url + "/")[0] == 200,
            what="4 gunicorn workers",
        )
        yield server
    except BaseException:
        print((tmp_path / "gunicorn.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        server.stop()


def test_gunicorn_workers_one_scrape_one_export(gunicorn: Gunicorn, tmp_path: Path) -> None:
    assert not (gunicorn.dir / "counter_999999.db").exists()
    workers = gunicorn.workers()
    raise_in_workers(gunicorn.url)

    # the errors really were handled by several workers (each counts in its own file)
    by_pid = errors_by_pid(gunicorn.dir)
    assert len(by_pid) >= 2, by_pid
    assert set(by_pid) <= workers

    # one scrape, served by whichever worker accepts it: the exact totals of all of them
    status, body = get(gunicorn.url + "/monitor/metrics")
    assert status == 200
    text = body.decode()
    assert error_totals(text) == {t: PER_KIND for t in KINDS.values()}
    timed = {
        (lbl["operation"], lbl["outcome"]): v
        for lbl, v in sample_values(text, "app_operation_duration_seconds_count")
    }
    assert timed[("GET /boom/<kind>", "error")] == N
    assert sample_values(text, "app_unique_errors") == [({}, 3.0)]

    def crashed_sessions() -> float:  # each request is a session; published every second
        scrape = get(gunicorn.url + "/monitor/metrics")[1].decode()
        return sum(
            v
            for lbl, v in sample_values(scrape, "app_sessions_total")
            if lbl["status"] == "crashed"
        )

    wait_for(lambda: crashed_sessions() == N, timeout=10, what="the sessions of the requests")

    # one export: every group with its occurrences summed across workers
    status, body = get(gunicorn.url + "/monitor/api/v1/export")
    assert status == 200
    export = json.loads(body)
    top = {e["report"]["error_type"]: e for e in export["analysis"]["top_errors"]}
    assert set(top) == set(KINDS.values())
    for entry in top.values():
        assert entry["occurrence_count"] == PER_KIND
        assert entry["report"]["occurrence_count"] == PER_KIND
        assert entry["report"]["operation"] == "GET /boom/<kind>"
        assert entry["report"]["environment"]["pid"] in workers
    assert export["statistics"]["total_errors"] == N
    assert export["summary"]["total_errors"] == N
    assert export["statistics"]["unique_errors"] == 3
    assert export["analysis"]["total_unique_errors"] == 3
    assert len(export["all_records"]) == N
    assert Counter(r["error_type"] for r in export["all_records"]) == {
        t: PER_KIND for t in KINDS.values()
    }
    status, body = get(gunicorn.url + "/monitor/api/v1/errors")
    assert sorted(g["occurrence_count"] for g in json.loads(body)["errors"]) == [PER_KIND] * 3

    # OpenMetrics: each series' exemplar is the latest error id of its labels, from any worker
    status, body = get(
        gunicorn.url + "/monitor/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    exemplars = {
        line.split('error_id="')[1].split('"')[0]
        for line in body.decode().splitlines()
        if line.startswith("app_errors_total{") and "# {" in line
    }
    assert exemplars == {e["error_id"] for e in top.values()}

    # the sidecar serves the same picture from the directory alone
    check_sidecar(gunicorn.dir, tmp_path, {e["error_id"] for e in top.values()})

    # a worker exits: gunicorn's child_exit marks it dead; its counts stay in the totals
    victim = sorted(workers)[0]
    assert (gunicorn.dir / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGTERM)
    wait_for(
        lambda: not (gunicorn.dir / f"gauge_livesum_{victim}.db").exists(),
        what="mark_process_dead of the exited worker",
    )
    # the state goes after the files (mark_process_dead: gauges first, then the store's row)
    wait_for(lambda: victim not in gunicorn.workers(), what="the exited worker's state dropped")
    wait_for(lambda: len(gunicorn.workers()) == 4, what="the replacement worker")
    status, body = get(gunicorn.url + "/monitor/metrics")
    assert error_totals(body.decode()) == {t: PER_KIND for t in KINDS.values()}


VERSION = "wsgi-example-1.0"  # examples/wsgi_app.py's app_version


@pytest.fixture(params=[False, True], ids=["workers-import-app", "preload"])
def gunicorn_with_token(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gunicorn]:
    """The gunicorn of :func:`gunicorn` with an API token: the resolve route is open."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    server = Gunicorn(
        multiproc, tmp_path / "gunicorn.log", preload=request.param, ERROR_EXPORTER_API_TOKEN=TOKEN
    )
    try:
        wait_for(
            lambda: len(server.workers()) == 4 and get(server.url + "/")[0] == 200,
            what="4 gunicorn workers",
        )
        yield server
    except BaseException:
        print((tmp_path / "gunicorn.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        server.stop()


def raise_value_errors(url: str, count: int) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: get(url + "/boom/value?delay=0.05")[0], range(count)))
    assert statuses == [500] * count


def test_gunicorn_workers_share_release_health(gunicorn_with_token: Gunicorn) -> None:
    """A group seen by several workers is new once; resolved through one worker's API,
    it regresses once when the workers see it again, whichever of them writes first."""
    server = gunicorn_with_token
    monitor = server.url + "/monitor"
    raise_value_errors(server.url, 40)
    seen_by = counted_by_pid(server.dir, "app_errors_total")
    assert len(seen_by) >= 2, seen_by  # the group is in the memory of several workers
    status, body, _ = api(monitor + "/api/v1/errors")
    assert status == 200
    [group] = body["errors"]
    assert group["occurrence_count"] == 40 and group["first_seen_version"] == VERSION
    status, body, _ = api(monitor + f"/api/v1/errors?new_in={VERSION}")
    assert [g["error_id"] for g in body["errors"]] == [group["error_id"]]
    # counted just after the batch that created it commits (the read above waited for it)
    wait_for(
        lambda: counted_by_pid(server.dir, "app_error_groups_new_total"),
        what="the new group's count",
    )
    assert sum(counted_by_pid(server.dir, "app_error_groups_new_total").values()) == 1

    status, body, resolver = api(monitor + f"/api/v1/errors/{group['error_id']}/resolve", "POST")
    assert status == 200, body
    assert body["resolved"] is True and body["resolved_version"] == VERSION
    # every worker answers the same (the resolve is in the file, not in one worker)
    for _ in range(8):
        status, body, _ = api(monitor + f"/api/v1/errors/{group['error_id']}")
        assert body["group"]["resolved"] is True

    before = counted_by_pid(server.dir, "app_errors_total")
    raise_value_errors(server.url, 40)
    after = counted_by_pid(server.dir, "app_errors_total")
    saw_it_again = {pid for pid, n in after.items() if n > before.get(pid, 0)}
    assert len(saw_it_again) >= 2 and saw_it_again - {resolver}, (saw_it_again, resolver)
    status, body, _ = api(monitor + f"/api/v1/errors/{group['error_id']}")  # settled
    summary = body["group"]
    wait_for(
        lambda: counted_by_pid(server.dir, "app_error_groups_regressed_total"),
        what="the regression's count",
    )
    api(monitor + "/api/v1/errors")  # every worker's batch written (a read settles first)
    regressed = counted_by_pid(server.dir, "app_error_groups_regressed_total")
    assert sum(regressed.values()) == 1, regressed  # once, by the worker that wrote first
    assert (summary["regressed"], summary["resolved"], summary["occurrence_count"]) == (
        True,
        False,
        80,
    )
    assert sum(counted_by_pid(server.dir, "app_error_groups_new_total").values()) == 1
    status, body, _ = api(monitor + f"/api/v1/errors?new_in={VERSION}")
    assert len(body["errors"]) == 1


def check_sidecar(directory: Path, tmp_path: Path, error_ids: set[str]) -> None:
    port = free_port()
    log = (tmp_path / "sidecar.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--multiproc-dir",
            str(directory),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(url + "/healthz")[0] == 200, what="the sidecar")

        # each worker publishes its state every interval: one published while an error was
        # still queued says 1 until its next round, so wait for the rounds, not one reading
        def health() -> dict[str, Any]:
            return dict(json.loads(get(url + "/healthz")[1]))

        wait_for(lambda: health()["queue_depth"] == 0, timeout=15, what="the workers' queues")
        assert health()["running"] is True
        assert error_totals(get(url + "/metrics")[1].decode()) == {
            t: PER_KIND for t in KINDS.values()
        }
        export = json.loads(get(url + "/api/v1/export")[1])
        assert {
            e["error_id"]: e["occurrence_count"] for e in export["analysis"]["top_errors"]
        } == dict.fromkeys(error_ids, PER_KIND)
        assert len(export["all_records"]) == N
        assert export["statistics"]["workers"] >= 4
        group = json.loads(get(url + f"/api/v1/errors/{sorted(error_ids)[0]}")[1])
        assert group["group"]["occurrence_count"] == PER_KIND
        assert len(group["occurrences"]) == 10  # occurrences_per_group
        errors = json.loads(get(url + "/api/v1/errors")[1])
        assert (errors["total"], len(errors["errors"])) == (3, 3)
        for route in (
            "/",
            "/api/v1/statistics",
            "/api/v1/analysis",
            "/api/v1/patterns",
            "/api/v1/openapi.json",
        ):
            assert get(url + route)[0] == 200, route
        assert get(url + "/api/v1/plugins/billing/health")[0] == 404  # no error ever had it
    finally:
        stop_by_pid(proc)
        log.close()


# -- the fleet view over forked processes (no server) ----------------------------------------
FORKED = r"""
import json, os, sys, time
from exporter import ErrorMonitor
from exporter.multiprocess import mark_process_dead
from prometheus_client import generate_latest

m = ErrorMonitor(capture_sys_excepthook=False, capture_threading=False, capture_logging=False,
                 capture_asyncio=False, pattern_threshold=3, plugin_degraded_threshold=2,
                 plugin_unhealthy_threshold=4).start()
assert m.shared is not None

def fail(i):
    try:
        raise ValueError(f"value {i}")
    except ValueError as exc:
        return m.record_error(exc, component="jobs", plugin="p", user_id=f"u{i % 3}")

children = []
for n in range(3):
    pid = os.fork()
    if pid == 0:
        with m.session(user_id="someone"):
            pass
        for i in range(4 if n == 0 else 2):
            error_id = fail(i)
        m.record_recovery(True, 0.1, "jobs", "p", error_id=error_id)
        m.stop()  # drains the queue and publishes a last time
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)

out = {"children": children}
out["stats"] = m.get_statistics()
out["groups"] = m.list_groups()
out["group"] = m.get_group(out["groups"][0]["error_id"])
out["patterns"] = m.get_patterns()
out["health"] = m.get_plugin_health("p")
out["summary"] = m.get_error_summary()
page1 = m.export_data(plugin="p", limit=5)
page2 = m.export_data(plugin="p", limit=5, cursor=page1["next_cursor"])
out["pages"] = [len(page1["all_records"]), page1["next_cursor"] is not None,
                len(page2["all_records"]), page2["next_cursor"]]
out["metrics"] = generate_latest(m.registry).decode()
for pid in children:
    mark_process_dead(pid)
out["metrics_after"] = generate_latest(m.registry).decode()
out["workers_after"] = len(m.shared.workers())
out["cleared"] = m.clear_old_records(0)
out["groups_after_clear"] = m.list_groups()
m.stop()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("forked")
    done = subprocess.run(
        [sys.executable, "-c", FORKED],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=clean_env(PROMETHEUS_MULTIPROC_DIR=str(directory)),
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_forked_counts_groups_and_users_add_up(forked: dict[str, Any]) -> None:
    stats = forked["stats"]
    assert stats["total_errors"] == 8
    assert stats["errors_by_plugin"] == {"p": 8}
    assert stats["recovery_attempts"] == 3 and stats["recovery_success_rate"] == 1.0
    assert stats["sessions"]["ended"]["exited"] == 3
    [group] = forked["groups"]
    assert group["occurrence_count"] == 8
    assert group["affected_users"] == 3  # u0, u1, u2 seen by several workers, counted once
    assert forked["group"]["report"]["recovery_attempted"] is True
    assert len(forked["group"]["occurrences"]) == 8
    assert forked["summary"]["plugin_error_counts"] == {"p": {"ValueError": 8}}
    assert forked["pages"] == [5, True, 3, None]


def test_forked_patterns_and_plugin_health_are_the_worst_worker(forked: dict[str, Any]) -> None:
    [pattern] = [p for p in forked["patterns"] if p["kind"] == "type"]
    assert (pattern["error_type"], pattern["count"], pattern["severity"]) == (
        "ValueError",
        4,
        "warning",
    )  # only the first worker crossed the threshold of 3
    health = forked["health"]
    assert health["status"] == "unhealthy"  # 4 errors in one worker; the others: degraded
    assert health["recent_error_count"] == 8
    assert health["total_errors"] == 8
    text = forked["metrics"]
    assert sample_values(text, "app_plugin_health") == [({"plugin": "p"}, 2.0)]
    assert sample_values(text, "app_error_pattern_severity") == [
        ({"error_type": "ValueError"}, 1.0)
    ]
    assert sample_values(text, "app_error_pattern_occurrences") == [
        ({"error_type": "ValueError"}, 8.0)
    ]
    assert sample_values(text, "app_sessions_total") == [
        ({"status": "exited"}, 3.0),
        ({"status": "errored"}, 0.0),
        ({"status": "crashed"}, 0.0),
        ({"status": "abnormal"}, 0.0),
    ]


def test_forked_gauge_modes_and_dead_workers(forked: dict[str, Any]) -> None:
    text = forked["metrics"]
    pids = {lbl["pid"] for lbl, _ in sample_values(text, "app_process_threads")}
    assert {str(p) for p in forked["children"]} <= pids  # liveall: one series per worker
    assert len(sample_values(text, "app_system_cpu_utilization_ratio")) == 1  # livemax
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["app_system_disk_read_bytes"] == "counter"
    assert families["app_errors"] == "counter"
    assert families["app_monitor_info"] == "gauge"  # an info family, in the text format
    after = forked["metrics_after"]
    pids_after = {lbl["pid"] for lbl, _ in sample_values(after, "app_process_threads")}
    assert not pids_after & {str(p) for p in forked["children"]}
    assert sample_values(after, "app_plugin_health") == []  # only the dead workers had it
    assert sum(v for _, v in sample_values(after, "app_errors_total")) == 8
    assert forked["workers_after"] == 1
    assert forked["cleared"] == 8 and forked["groups_after_clear"] == []


FORK_STORM = r"""
import os, signal, sys, time
from exporter import ErrorMonitor

m = ErrorMonitor(capture_sys_excepthook=False, capture_threading=False, capture_logging=False,
                 capture_asyncio=False).start()
m.shared.publisher.interval = 0.0005  # publishing (gauges + SQLite) all the time
for i in range(300):  # the monitor thread writes these to SQLite while we fork
    try:
        raise KeyError(i)
    except KeyError as exc:
        m.record_error(exc, component="storm")
hung = 0
for n in range(40):
    pid = os.fork()
    if pid == 0:
        try:
            raise ValueError(n)
        except ValueError as exc:
            m.record_error(exc, component="child")
        m.flush(5)
        m.shared.publisher.publish()
        os._exit(0 if m.get_statistics()["total_errors"] >= 1 else 3)
    deadline = time.monotonic() + 15
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WEXITSTATUS(status) == 0, status
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            hung += 1
            break
        time.sleep(0.005)
m.flush(5)
print("hung", hung, "errors", m.get_statistics()["total_errors"])
"""


def test_forking_while_the_monitor_threads_work_never_hangs_a_child(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORK_STORM],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=clean_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hung", "0", "errors", "340"]


# -- the directory -------------------------------------------------------------------------
def test_prepare_dir_and_mark_process_dead(tmp_path: Path) -> None:
    directory = tmp_path / "mp"
    directory.mkdir()
    for name in (
        "counter_1.db",
        "gauge_livesum_7.db",
        "gauge_liveall_7.db",
        "gauge_max_7.db",
        DB_NAME,
        DB_NAME + "-wal",
        "keep.txt",
    ):
        (directory / name).write_bytes(b"x")
    prepare_dir(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]  # not a store: gone
    for name in ("gauge_livesum_7.db", "gauge_liveall_7.db", "gauge_max_7.db"):
        (directory / name).write_bytes(b"x")
    store = SharedStore(directory)
    store.put_worker_state(7, {"queue_depth": 1})
    store.put_worker_state(8, {"queue_depth": 2})
    mark_process_dead(7, directory)
    assert sorted(p.name for p in directory.glob("*.db")) == ["gauge_max_7.db"]
    assert [w["pid"] for w in store.workers(60)] == [8]


def test_prepare_dir_keeps_the_hosts_history_for_the_next_run(
    make_monitor: Any, tmp_path: Path
) -> None:
    """The store file is the host's history (release_scope="host"): a new run of the
    server keeps its groups and resolves, and starts its own run's state afresh."""
    directory = tmp_path / "mp"
    directory.mkdir()
    writer = make_monitor(store_path=str(directory / DB_NAME), app_version="1.0")
    try:
        raise ValueError("seen in the last run")
    except ValueError as exc:
        error_id = writer.record_error(exc)
    writer.flush()
    writer.stop()
    store = SharedStore(directory)
    store.put_worker_state(7, {"queue_depth": 1})
    store.set_meta("processed", "1")
    store.close()
    prepare_dir(directory)
    store = SharedStore(directory)
    assert [g.report.error_id for g in store.groups()] == [error_id]
    assert store.groups()[0].first_seen_version == "1.0"
    assert store.workers(60) == [] and store.processed() == 0


def test_without_multiprocess_values_the_monitor_stays_single_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import exporter.multiprocess as mp

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(mp, "_warned", False)
    monitor = ErrorMonitor(
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
    )
    assert monitor.shared is None
    assert "prometheus_client was imported before" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_serve_needs_a_directory(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "exporter", "serve"]
    missing = subprocess.run(
        [*run], capture_output=True, text=True, cwd=REPO, env=clean_env(), timeout=60
    )
    assert missing.returncode == 2 and "--multiproc-dir" in missing.stderr
    wrong = subprocess.run(
        [*run, "--multiproc-dir", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(),
        timeout=60,
    )
    assert wrong.returncode == 2 and "not a directory" in wrong.stderr


def test_forked_store_info_names_the_multiprocess_backend(forked: dict[str, Any]) -> None:
    assert sample_values(forked["metrics"], "app_monitor_store_info") == [
        ({"backend": "multiprocess", "release_scope": "host"}, 1.0)
    ]


# -- the directory's file, written by two processes' backends ---------------------------------
def occurrence(
    error_id: str,
    ts: float,
    user: str | None = None,
    component: str = "c",
    plugin: str = "",
    severity: str = "medium",
) -> tuple[Any, Any]:
    from exporter.model import ErrorPriority, ErrorRecord, ErrorReport, ErrorSeverity

    rep = ErrorReport(
        error_id=error_id,
        error_type="ValueError",
        error_message=f"m {error_id}",
        severity=ErrorSeverity(severity),
        priority=ErrorPriority.MEDIUM,
        timestamp=ts,
        first_occurrence=ts,
        occurrence_count=1,
        component=component,
        plugin=plugin,
        file_path=None,
        line_number=None,
        function_name=None,
        stack_trace="",
        traceback_lines=[],
        environment={},
        user_id=user,
        last_occurrence=ts,
    )
    rec = ErrorRecord(
        error_type="ValueError",
        message=f"m {error_id}",
        timestamp=datetime.fromtimestamp(ts),
        error_id=error_id,
        component=component,
        plugin_id=plugin or None,
        severity=severity,
        user_id=user,
    )
    return rep, rec


class Writer:
    """One process's backend of the directory's file (as a worker's monitor has it)."""

    def __init__(self, path: Path) -> None:
        from exporter.config import MonitorConfig
        from exporter.store.durable.postgres_store import FleetHooks, MultiWriterBackend
        from exporter.store.durable.sqlite_shared import SqliteSharedDatabase
        from exporter.store.memory import ErrorStore

        self.new: list[str | None] = []
        self.regressed: list[str] = []
        self.backend = MultiWriterBackend(
            MonitorConfig(),
            lambda reason, n: None,
            lambda exc: None,
            FleetHooks(self.new.append, lambda g: self.regressed.append(g.report.error_id)),
            database=SqliteSharedDatabase(str(path)),
        )
        store = self.backend.start(ErrorStore(100, 100))
        assert store is not None
        store.version_at = lambda moment: "1.0"
        self.store = store


def test_two_writers_of_one_file_count_new_and_regressed_once(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    a, b = Writer(path), Writer(path)
    now = time.time()
    a.store.add(*occurrence("g", now, "u1"))
    b.store.add(*occurrence("g", now + 1, "u2"))
    assert a.store.add_to_group("g", "", 3, now + 2)  # a storm's repeats, coalesced in a
    assert b.store.add_to_group("g", "", 2, now + 3)
    a.backend.tick()
    b.backend.tick()
    b.backend.tick()  # nothing changed: nothing added twice
    assert (a.new, b.new) == (["1.0"], [])  # seen by both, new once
    [group] = SharedStore(tmp_path).groups()
    summary = group.summary()
    assert (
        summary["occurrence_count"],
        summary["affected_users"],
        summary["coalesced_occurrences"],
    ) == (7, 2, 5)
    assert b.store.groups["g"].report.occurrence_count == 7  # b reads back the directory's

    assert a.store.resolve("g", "1.0", when=now + 5) is not None
    a.backend.tick()
    b.store.add(*occurrence("g", now + 10))  # after the resolve, in the other process
    a.store.add(*occurrence("g", now + 11))  # and in the one that resolved it
    b.backend.tick()
    a.backend.tick()
    assert (b.regressed, a.regressed) == (["g"], [])  # once, by the first writer
    [group] = SharedStore(tmp_path).groups()
    assert (group.regressed, group.resolved_at, group.report.occurrence_count) == (True, None, 9)
    assert a.store.groups["g"].regressed and b.store.groups["g"].regressed

    c = Writer(path)  # a recycled worker: starts from the file's groups
    assert c.store.groups["g"].coalesced == 5
    assert c.store.add_to_group("g", "", 1, now + 12)
    c.backend.tick()
    assert c.new == [] and c.regressed == []
    [group] = SharedStore(tmp_path).groups()
    assert (group.coalesced, group.report.occurrence_count) == (6, 10)  # its own one added
    for writer in (a, b, c):
        writer.backend.close()


def test_two_writers_of_one_file_merge_a_groups_state(tmp_path: Path) -> None:
    """Each process holds only its share of a group: the file has the union of both
    (users; components and plugins with their counts), the highest severity, and the sum
    of what each coalesced, added once however many batches follow."""
    path = tmp_path / DB_NAME
    a, b = Writer(path), Writer(path)
    now = time.time()
    for n, user in enumerate(("u1", "u2")):
        a.store.add(*occurrence("g", now + n, user, "checkout", "stripe", "medium"))
    assert a.store.add_to_group("g", "", 3, now + 2)
    a.backend.tick()
    for n, (user, severity) in enumerate((("u2", "critical"), ("u3", "medium"), ("u3", "low"))):
        b.store.add(*occurrence("g", now + 3 + n, user, "search", "solr", severity))
    assert b.store.add_to_group("g", "", 2, now + 6)
    b.backend.tick()  # merged into what a wrote
    a.store.add(*occurrence("g", now + 7, "u1", "checkout", "stripe", "low"))
    a.backend.tick()  # a writes again: b's share stays
    assert b.store.add_to_group("g", "", 1, now + 8)
    b.backend.tick()
    a.backend.tick()
    b.backend.tick()  # nothing changed: nothing added twice
    [group] = SharedStore(tmp_path).groups()
    assert group.report.occurrence_count == 3 + 3 + 3 + 2 + 1
    assert group.users == {"u1", "u2", "u3"}
    assert group.components == {"checkout": 3, "search": 3}
    assert group.plugins == {"stripe": 3, "solr": 3}
    assert (group.max_severity, group.coalesced) == ("critical", 6)
    summary = group.summary()
    assert (summary["affected_users"], summary["coalesced_occurrences"]) == (3, 6)
    for writer in (a, b):
        writer.backend.close()
