"""The demo workload must exercise every feature of the monitor, or the demo shows an
empty dashboard: several groups and severities, sessions of every ending, recoveries that
succeed and fail, timed operations, patterns and an unhealthy plugin, and a deploy that
brings one new error group and one regression (release health)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.promstack import free_port, http_get, http_json, wait_until

from exporter import ErrorMonitor
from exporter.demo.workload import (
    COMPONENTS,
    JOB_COMPONENT,
    JOB_MAX_RETRIES,
    JOB_TASKS,
    PLUGINS,
    BackgroundJobs,
    Workload,
    next_version,
)

ROOT = Path(__file__).resolve().parents[3]


def sample_sum(registry: Any, name: str, **labels: str) -> float:
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def make_monitor(**options: Any) -> ErrorMonitor:
    settings: dict[str, Any] = {
        "pattern_threshold": 5,
        "pattern_window_minutes": 1,
        "capture_sys_excepthook": False,
        "capture_threading": False,
        "enable_resource_monitoring": False,
    }
    settings.update(options)
    return ErrorMonitor(**settings)


# step() without run() leaves the current session open (and current in this thread's
# context): every test that steps by hand calls close(), so later tests start clean.


@pytest.fixture
def monitor() -> Iterator[ErrorMonitor]:
    mon = make_monitor()
    mon.start()
    try:
        yield mon
    finally:
        mon.stop()


def test_short_run_exercises_every_feature(monitor: ErrorMonitor) -> None:
    workload = Workload(monitor, rate=1000, seed=0, storm_every=0.3)
    workload.run(threading.Event(), duration=1.5)
    assert monitor.flush(timeout=10)
    assert workload.counts["workload_failures"] == 0
    assert workload.counts["storm"] >= 2

    stats = monitor.get_statistics()
    assert stats["total_errors"] > 100
    assert all(stats["errors_by_severity"][s] > 0 for s in ("low", "medium", "high", "critical"))
    assert set(COMPONENTS) <= set(stats["errors_by_component"])
    assert set(PLUGINS) <= set(stats["errors_by_plugin"])
    assert {
        "ConnectionError",
        "TimeoutError",
        "ValueError",
        "KeyError",
        "OSError",
        "CANBusError",
        "MemoryError",
        "RuntimeError",
    } <= set(stats["errors_by_type"])
    assert 0 < stats["recovery_success_rate"] < 1

    groups = monitor.list_groups()
    assert len(groups) >= 10
    assert all(g["file_path"] and g["file_path"].endswith("workload.py") for g in groups)
    assert len({g["function_name"] for g in groups}) >= 8

    ended = stats["sessions"]["ended"]
    assert ended["exited"] > 0 and ended["errored"] > 0 and ended["crashed"] > 0
    assert stats["sessions"]["users"] >= 3
    # run() ends its sessions on the way out: only the process session is left
    assert stats["sessions"]["active"] == 1

    registry = monitor.registry
    assert sample_sum(registry, "app_error_recoveries_total", result="success") > 0
    assert sample_sum(registry, "app_error_recoveries_total", result="failure") > 0
    assert sample_sum(registry, "app_operation_duration_seconds_count", outcome="ok") > 0
    assert sample_sum(registry, "app_operation_duration_seconds_count", outcome="error") > 0
    assert sample_sum(registry, "app_sessions_total", status="crashed") > 0

    severities = {p["severity"] for p in monitor.get_patterns()}
    assert "critical" in severities
    assert monitor.get_plugin_health("weather")["status"] == "unhealthy"


def test_errors_carry_breadcrumbs_context_and_users(monitor: ErrorMonitor) -> None:
    workload = Workload(monitor, rate=1000, seed=1)
    try:
        for _ in range(200):
            workload.step()
    finally:
        workload.close()
    monitor.flush()
    flash = next(g for g in monitor.list_groups() if g["function_name"] == "flash_ecu_map")
    detail = monitor.get_group(flash["error_id"])
    assert detail is not None
    report = detail["report"]
    assert report["context"]["map"] == "fuel"
    assert any(b["action"] == "flash_map" for b in report["breadcrumbs"])
    assert report["user_id"] in {"alice", "bob", "carol", "dave", "erin", "frank"}
    assert flash["affected_users"] >= 2


def test_same_seed_same_run() -> None:
    runs = []
    for _ in range(2):
        mon = make_monitor()
        mon.start()
        workload = Workload(mon, rate=1000, seed=42)
        try:
            runs.append([workload.step() for _ in range(150)])
        finally:
            workload.close()
            mon.stop()
    assert runs[0] == runs[1]
    assert len(set(runs[0])) >= 5


def test_storm_mode_is_all_critical_memory_errors(monitor: ErrorMonitor) -> None:
    workload = Workload(monitor, rate=1000, seed=0, storm=True)
    for _ in range(30):
        workload.step()
    workload.close()
    monitor.flush()
    stats = monitor.get_statistics()
    assert stats["errors_by_type"] == {"MemoryError": 30}
    assert stats["errors_by_severity"]["critical"] == 30
    assert stats["errors_by_plugin"] == {"news": 30}
    critical = [p for p in monitor.get_patterns() if p["error_type"] == "MemoryError"]
    assert critical and all(p["severity"] == "critical" for p in critical)
    assert monitor.get_plugin_health("news")["status"] == "unhealthy"


def test_run_stops_promptly(monitor: ErrorMonitor) -> None:
    stop = threading.Event()
    workload = Workload(monitor, rate=0.2, seed=0)  # a 5 s pause between steps
    thread = threading.Thread(target=workload.run, args=(stop,))
    thread.start()
    time.sleep(0.2)
    stop.set()
    thread.join(timeout=3)  # well inside the 5 s pause: stop interrupts it
    assert not thread.is_alive()


def test_rate_must_be_positive(monitor: ErrorMonitor) -> None:
    with pytest.raises(ValueError, match="rate"):
        Workload(monitor, rate=0)


# -- the simulated deploy (release health) -----------------------------------------------------


def release_counts(registry: Any, kind: str) -> dict[str, float]:
    """{app_version: value} of app_error_groups_<kind>_total."""
    name = f"app_error_groups_{kind}_total"
    return {
        sample.labels["app_version"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_the_deploy_brings_one_new_group_and_one_regression() -> None:
    mon = make_monitor(app_version="1.0.0")
    mon.start()
    regressions: list[Any] = []
    mon.register_regression_callback(regressions.append)
    try:
        workload = Workload(mon, rate=1000, seed=0, storm_every=0.3, deploy_after=0.5)
        workload.run(threading.Event(), duration=1.2)
        assert mon.flush(timeout=10)
        assert workload.counts["workload_failures"] == 0
        deployed = workload.deployed
        assert deployed is not None and workload.counts["deploy"] == 1
        assert (deployed.from_version, deployed.to_version) == ("1.0.0", "1.1.0")
        assert deployed.new_error_type == "LaunchControlError"
        assert mon.config.app_version == "1.1.0"

        before = {g["error_id"] for g in mon.list_groups(new_in="1.0.0")}
        assert len(before) >= 10
        new = mon.list_groups(new_in="1.1.0")
        assert [g["error_type"] for g in new] == ["LaunchControlError"]
        assert new[0]["first_seen_version"] == "1.1.0"
        assert new[0]["function_name"] == "arm_launch_control"

        regressed = [g for g in mon.list_groups() if g["regressed"]]
        assert [g["error_id"] for g in regressed] == [deployed.resolved_error_id]
        assert deployed.resolved_error_id in before
        back = regressed[0]
        assert back["function_name"] == "flash_ecu_map"
        assert back["first_seen_version"] == "1.0.0"
        assert back["last_seen_version"] == "1.1.0"

        assert release_counts(mon.registry, "new") == {"1.0.0": len(before), "1.1.0": 1}
        assert release_counts(mon.registry, "regressed") == {"1.0.0": 0, "1.1.0": 1}
        deadline = time.monotonic() + 10
        while not regressions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.error_id for r in regressions] == [deployed.resolved_error_id]
    finally:
        mon.stop()


def test_a_deploy_before_any_flash_raises_one_first() -> None:
    """The group to resolve must have been seen: a deploy at once raises it before."""
    mon = make_monitor(app_version="2.4")
    mon.start()
    try:
        workload = Workload(mon, rate=1000, seed=3)
        deployed = workload.deploy()
        workload.close()
        assert mon.flush(timeout=10)
        assert deployed.to_version == "2.5"
        assert deployed.resolved_error_id is not None
        [summary] = [g for g in mon.list_groups() if g["error_id"] == deployed.resolved_error_id]
        assert summary["regressed"] is True
        assert summary["first_seen_version"] == "2.4"
        assert [g["error_type"] for g in mon.list_groups(new_in="2.5")] == ["LaunchControlError"]
    finally:
        mon.stop()


def test_no_deploy_unless_asked_and_none_in_storm_mode(monitor: ErrorMonitor) -> None:
    quiet = Workload(monitor, rate=1000, seed=0)
    quiet.run(threading.Event(), duration=0.5)
    storm = Workload(monitor, rate=1000, seed=0, storm=True, deploy_after=0.01)
    storm.run(threading.Event(), duration=0.3)
    assert monitor.flush(timeout=10)
    assert quiet.deployed is None and storm.deployed is None
    assert "LaunchControlError" not in monitor.get_statistics()["errors_by_type"]
    assert not [g for g in monitor.list_groups() if g["regressed"]]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.0.0", "1.1.0"),
        ("2.4", "2.5"),
        ("1.9.3", "1.10.0"),
        (None, "1.1.0"),
        ("7", "7-next"),
        ("blue", "blue-next"),
        ("1.0.0-rc1", "1.0.0-rc1-next"),
    ],
)
def test_next_version(version: str | None, expected: str) -> None:
    assert next_version(version) == expected


def test_the_demo_command_deploys_and_serves_what_it_broke(tmp_path: Path) -> None:
    """``error-exporter demo --deploy-after``: a real process, its API and /metrics."""
    port = free_port()
    log = tmp_path / "demo.out"
    argv = [
        sys.executable,
        "-m",
        "exporter",
        "demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-live",
        "--rate",
        "50",
        "--seed",
        "1",
        "--deploy-after",
        "2",
        "--duration",
        "120",
    ]
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        demo = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:

        def new_in_1_1_0() -> list[dict[str, Any]]:
            assert demo.poll() is None, log.read_text()
            found: list[dict[str, Any]] = http_json(f"{url}/api/v1/errors?new_in=1.1.0")["errors"]
            return found

        new = wait_until(new_in_1_1_0, 60, what="a group new in 1.1.0")
        assert [g["error_type"] for g in new] == ["LaunchControlError"]
        regressed = wait_until(
            lambda: [
                g for g in http_json(f"{url}/api/v1/errors?limit=100")["errors"] if g["regressed"]
            ],
            30,
            what="a regressed group",
        )
        assert [
            (g["error_type"], g["first_seen_version"], g["last_seen_version"]) for g in regressed
        ] == [("ValueError", "1.0.0", "1.1.0")]
        status, body = http_get(f"{url}/metrics")
        assert status == 200
        metrics = body.decode()
        assert 'app_error_groups_new_total{app_version="1.1.0"} 1.0' in metrics
        assert 'app_error_groups_regressed_total{app_version="1.1.0"} 1.0' in metrics
        banner = log.read_text().split("Press Ctrl-C")[0]
        assert "In 2s the app (version 1.0.0) deploys 1.1.0" in banner
        assert f"{url}/api/v1/errors?new_in=1.1.0" in banner
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=30)
    assert demo.returncode == 0, log.read_text()[-2000:]


@pytest.mark.parametrize(
    "extra",
    [["--deploy-after", "75"], ["--storm", "--deploy-after", "0.5"]],
    ids=["run-ends-first", "storm"],
)
def test_the_banner_announces_no_deploy_that_will_not_happen(
    tmp_path: Path, extra: list[str]
) -> None:
    argv = [
        sys.executable,
        "-m",
        "exporter",
        "demo",
        "--port",
        str(free_port()),
        "--no-live",
        "--rate",
        "50",
        "--duration",
        "2",
        *extra,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    banner = done.stdout.split("Press Ctrl-C")[0]
    assert "API:" in banner
    assert "deploys" not in banner and "new_in" not in banner
    assert "LaunchControlError" not in done.stdout


# -- the background jobs (the drill-down's Background jobs row) ---------------------------------


def test_background_jobs_are_units_of_work_with_every_outcome(monitor: ErrorMonitor) -> None:
    """The demo's jobs are timed and reported as the Celery integration reports a task."""
    jobs = BackgroundJobs(monitor, seed=0, sleep=lambda seconds: None)
    outcomes = Counter(jobs.run_one() for _ in range(600))
    assert monitor.flush(timeout=10)
    assert set(outcomes) == {"ok", "error", "retry", "ignored"}
    assert outcomes["ok"] > outcomes["error"] + outcomes["retry"] + outcomes["ignored"]

    registry = monitor.registry
    names = {t.name for t in JOB_TASKS}
    assert names == {"reports.build", "emails.send", "billing.charge"}
    runs: Counter[tuple[str, str]] = Counter()
    for family in registry.collect():
        for sample in family.samples:
            if (
                sample.name == "app_operation_duration_seconds_count"
                and sample.labels["component"] == JOB_COMPONENT
            ):
                runs[sample.labels["operation"], sample.labels["outcome"]] += int(sample.value)
    assert {operation for operation, _ in runs} == names
    assert {outcome for _, outcome in runs} == {"ok", "error", "retry", "ignored"}
    for outcome in ("ok", "error", "retry", "ignored"):
        assert sum(n for (_, o), n in runs.items() if o == outcome) == outcomes[outcome]
    assert all(runs[name, "ok"] > 0 and runs[name, "error"] > 0 for name in names)
    assert JOB_COMPONENT in ("celery", "rq"), "the Background jobs row selects celery|rq"

    # Retries: counted with their cause, as the Celery integration counts them.
    retries = {
        (sample.labels["operation"], sample.labels["error_type"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "app_task_retries_total"
    }
    assert set(retries) == {
        ("emails.send", "SMTPServerDisconnected"),
        ("billing.charge", "TimeoutError"),
    }
    assert sum(retries.values()) == outcomes["retry"]

    # Failures: app_errors_total of the component, and the task's context on the report.
    assert sample_sum(registry, "app_errors_total", component=JOB_COMPONENT) == outcomes["error"]
    groups = [g for g in monitor.list_groups() if g["component"] == JOB_COMPONENT]
    assert {g["error_type"] for g in groups} == {
        "KeyError",
        "ValueError",
        "SMTPServerDisconnected",
        "TimeoutError",
    }
    for group in groups:
        detail = monitor.get_group(group["error_id"])
        assert detail is not None
        report = detail["report"]
        task = report["context"]["task"]
        assert task["name"] == report["operation"] in names
        assert task["id"].startswith(task["queue"] + "-")
        assert report["breadcrumbs"][0]["action"] == f"task {task['name']}"
    given_up = [g for g in groups if g["error_type"] == "SMTPServerDisconnected"]
    assert (
        monitor.get_group(given_up[0]["error_id"])["report"]["context"]["task"]["retries"]
        == JOB_MAX_RETRIES
    )


def test_the_jobs_run_beside_the_app_and_stop_with_it(monitor: ErrorMonitor) -> None:
    workload = Workload(monitor, rate=50, seed=0, jobs_rate=50)
    workload.run(threading.Event(), duration=2.0)
    assert monitor.flush(timeout=10)
    jobs = workload.jobs
    assert jobs is not None and jobs.counts["ok"] > 0 and jobs.counts["job_failures"] == 0
    assert not [t for t in threading.enumerate() if t.name == "demo-jobs"]
    # Real durations: each task sleeps its run time.
    seconds = {
        s.labels["operation"]: s.value
        for f in monitor.registry.collect()
        for s in f.samples
        if s.name == "app_operation_duration_seconds_sum"
        and s.labels["outcome"] == "ok"
        and s.labels["component"] == JOB_COMPONENT
    }
    assert seconds and all(v > 0 for v in seconds.values())
    assert monitor.get_statistics()["sessions"]["active"] == 1
    assert Workload(monitor, storm=True).jobs is None


def test_a_deploy_primes_the_job_failures_so_none_is_new_in_it() -> None:
    mon = make_monitor(app_version="1.0.0")
    mon.start()
    try:
        workload = Workload(mon, rate=1000, seed=5)
        workload.deploy()
        workload.close()
        assert mon.flush(timeout=10)
        jobs = [g for g in mon.list_groups() if g["component"] == JOB_COMPONENT]
        assert len(jobs) == 4 and all(g["first_seen_version"] == "1.0.0" for g in jobs)
        assert [g["error_type"] for g in mon.list_groups(new_in="1.1.0")] == ["LaunchControlError"]
    finally:
        mon.stop()
