"""Breadcrumbs (bounded, per session), sessions and their end states, resource snapshots."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from exporter.metrics.resources import ResourceSampler
from exporter.model import ResourceSnapshot
from exporter.scrub import FILTERED
from exporter.sessions import MAX_ACTIVE_SESSIONS, SessionTracker

QUIET = {k: v for k, v in HOOKS_OFF.items() if k != "enable_resource_monitoring"}


def fail(
    monitor: Any, message: str = "boom", kind: type[Exception] = RuntimeError, **kwargs: Any
) -> dict[str, Any]:
    """Record one error; each ``kind`` is a distinct group, so it gets its own full report."""
    try:
        raise kind(message)
    except kind as exc:
        monitor.record_error(exc, **kwargs)
    assert monitor.flush()
    return latest_record_report(monitor)


def latest_record_report(monitor: Any) -> dict[str, Any]:
    groups = monitor.list_groups("last_seen")
    return monitor.get_group(groups[0]["error_id"])["report"]


def crumbs(report: dict[str, Any]) -> list[str]:
    return [c["action"] for c in report["breadcrumbs"]]


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- breadcrumbs -------------------------------------------------------------------------


def test_breadcrumb_fields_as_seed_000_defines_them(monitor):
    before = time.time()
    monitor.add_breadcrumb(
        action="load_ecu_config",
        component="ECUControl",
        data={"config_file": "tune.json", "ecu_type": "Holley"},
    )
    report = fail(monitor)
    [crumb] = report["breadcrumbs"]
    assert before <= crumb["timestamp_epoch"] <= time.time()
    assert datetime.fromisoformat(crumb["timestamp"]).timestamp() == pytest.approx(
        crumb["timestamp_epoch"], abs=1e-6
    )  # ISO-8601 in UTC, the epoch beside
    assert crumb == {
        "timestamp": crumb["timestamp"],
        "timestamp_epoch": crumb["timestamp_epoch"],
        "action": "load_ecu_config",
        "component": "ECUControl",
        "data": {"config_file": "tune.json", "ecu_type": "Holley"},
        "level": "info",
        "category": "default",
    }


def test_breadcrumbs_are_bounded_keeping_the_latest(make_monitor):
    monitor = make_monitor(max_breadcrumbs=5)
    for i in range(50):
        monitor.add_breadcrumb(action=f"step {i}")
    assert crumbs(fail(monitor)) == [f"step {i}" for i in range(45, 50)]
    assert len(monitor.sessions.breadcrumbs()) == 5


def test_a_report_keeps_the_breadcrumbs_of_its_moment(monitor):
    monitor.add_breadcrumb(action="before")
    first = fail(monitor, "first")
    monitor.add_breadcrumb(action="after")
    assert crumbs(first) == ["before"]
    second = fail(monitor, "second", kind=KeyError)
    assert crumbs(second) == ["before", "after"]


def test_breadcrumb_data_is_scrubbed(monitor):
    monitor.add_breadcrumb(
        action="login https://driver:hunter2@tuner.example/api",
        data={"user": "driver", "password": "hunter2", "nested": {"api_token": "t0k"}},
    )
    [crumb] = fail(monitor)["breadcrumbs"]
    assert "hunter2" not in crumb["action"]
    assert crumb["data"] == {
        "user": "driver",
        "password": FILTERED,
        "nested": {"api_token": FILTERED},
    }


def test_breadcrumbs_can_be_disabled(make_monitor):
    monitor = make_monitor(enable_breadcrumbs=False)
    monitor.add_breadcrumb(action="ignored")
    assert fail(monitor)["breadcrumbs"] == []
    monitor.enable_breadcrumbs = True  # seed 000's attribute style
    monitor.add_breadcrumb(action="kept")
    assert crumbs(fail(monitor, "another", kind=KeyError)) == ["kept"]


def test_breadcrumbs_are_per_session_across_threads(monitor):
    results: dict[str, dict[str, Any]] = {}
    barrier = threading.Barrier(2)

    def driver(name: str) -> None:
        with monitor.session(user_id=name) as sid:
            monitor.add_breadcrumb(action=f"{name} opened the tune")
            barrier.wait()
            monitor.add_breadcrumb(action=f"{name} pressed flash")
            barrier.wait()
            try:
                raise ValueError(f"flash failed for {name}")
            except ValueError as exc:
                error_id = monitor.record_error(exc)
            results[name] = {"sid": sid, "error_id": error_id}

    threads = [threading.Thread(target=driver, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monitor.flush()
    occurrences = monitor.get_group(results["alice"]["error_id"])["occurrences"]
    assert {o["user_id"] for o in occurrences} == {"alice", "bob"}
    for name in ("alice", "bob"):
        [record] = [o for o in occurrences if o["user_id"] == name]
        assert record["session_id"] == results[name]["sid"]
    # the full report is the first one built; its crumbs are its own session's only
    report = monitor.get_group(results["alice"]["error_id"])["report"]
    owner = report["user_id"]
    assert crumbs(report) == [f"{owner} opened the tune", f"{owner} pressed flash"]
    assert monitor.sessions.breadcrumbs() == ()  # nothing leaked into the process session


def test_explicit_session_id_for_breadcrumbs(monitor):
    sid = monitor.sessions.start("carol")
    monitor.add_breadcrumb(action="in carol's session", session_id=sid)
    monitor.add_breadcrumb(action="in the process session")
    report = fail(monitor, session_id=sid)
    assert crumbs(report) == ["in carol's session"]
    assert report["session_id"] == sid
    assert report["user_id"] == "carol"


# -- sessions --------------------------------------------------------------------------


def test_session_end_states_and_crash_free_ratio(monitor):
    with monitor.session(user_id="u1"):
        pass  # exited
    with monitor.session(user_id="u2"):
        fail(monitor, "handled")  # errored
    with pytest.raises(KeyError), monitor.session(user_id="u3"):
        raise KeyError("escaped")  # crashed
    with monitor.session():
        pass  # exited
    sid = monitor.start_session(user_id="u4")
    assert monitor.sessions.expire(now=time.time() + monitor.config.session_timeout + 1) == 1
    assert monitor.end_session(sid) is None  # already ended as abnormal

    summary = monitor.get_statistics()["sessions"]
    assert summary["ended"] == {"exited": 2, "errored": 1, "crashed": 1, "abnormal": 1}
    assert summary["total_ended"] == 5
    assert summary["crash_free_ratio"] == pytest.approx(1 - 1 / 5)
    assert summary["users"] == 4
    assert summary["active"] == 1  # the process session
    assert monitor.get_statistics()["total_errors"] == 2
    for status, count in summary["ended"].items():
        value = monitor.registry.get_sample_value("app_sessions_total", {"status": status})
        assert value == count


def test_a_stale_current_session_falls_back_to_the_process_session(make_monitor):
    first, second = make_monitor(), make_monitor()
    sid = first.start_session(user_id="left-open")  # current in this thread, never ended
    try:
        second.add_breadcrumb(action="for the second monitor")
        report = fail(second)
        assert crumbs(report) == ["for the second monitor"]
        assert report["session_id"] == second.sessions.process_session_id
        assert first.sessions.expire(now=time.time() + first.config.session_timeout + 1) == 1
        first.add_breadcrumb(action="after my session expired")
        report = fail(first, kind=KeyError)
        assert crumbs(report) == ["after my session expired"]
        assert report["session_id"] == first.sessions.process_session_id
    finally:
        first.end_session(sid)


def test_keyboard_interrupt_in_a_session_is_not_a_crash(monitor):
    with pytest.raises(KeyboardInterrupt), monitor.session():
        raise KeyboardInterrupt
    assert monitor.sessions.ended["exited"] == 1
    assert monitor.sessions.ended["crashed"] == 0


def test_start_and_end_session_explicitly(monitor):
    sid = monitor.start_session(user_id="driver-7")
    assert monitor.sessions.current_id() == sid
    report = fail(monitor)
    assert report["session_id"] == sid
    assert report["user_id"] == "driver-7"
    assert monitor.end_session() == "errored"
    assert monitor.sessions.current_id() == monitor.sessions.process_session_id
    other = monitor.start_session()
    assert monitor.end_session(other, status="abnormal") == "abnormal"
    assert monitor.sessions.ended == {"exited": 0, "errored": 1, "crashed": 0, "abnormal": 1}


def test_unhandled_error_crashes_the_process_session(make_monitor):
    monitor = make_monitor()
    try:
        raise RuntimeError("nobody caught me")
    except RuntimeError as exc:
        monitor.capture_unhandled(exc, mechanism="excepthook")
    open_session = monitor.start_session()
    monitor.sessions.end_all()  # what the exit hook does
    assert monitor.sessions.ended["crashed"] == 1
    assert monitor.sessions.ended["abnormal"] == 1
    assert open_session not in [s for s in monitor.sessions.active]


def test_session_timeout_option(make_monitor):
    monitor = make_monitor(session_timeout=60.0)
    monitor.start_session()
    now = time.time()
    assert monitor.sessions.expire(now=now + 30) == 0
    assert monitor.sessions.expire(now=now + 61) == 1
    assert monitor.sessions.expire(now=now + 10_000) == 0  # the process session stays


def test_active_sessions_are_bounded():
    tracker = SessionTracker(timeout=3600, max_breadcrumbs=10)
    for _ in range(MAX_ACTIVE_SESSIONS + 5):
        tracker.start()
    assert tracker.active_count == MAX_ACTIVE_SESSIONS
    assert tracker.ended["abnormal"] == 6  # the process session was the oldest


# -- resource snapshots -----------------------------------------------------------------


def test_resource_snapshot_attached_with_psutil(make_monitor):
    monitor = make_monitor(enable_resource_monitoring=True, resource_check_interval=0.05)
    report = fail(monitor)
    snapshot = report["resource_snapshot"]
    assert snapshot is not None
    assert set(snapshot) >= {
        "timestamp",
        "cpu_percent",
        "memory_percent",
        "memory_used_mb",
        "memory_available_mb",
        "disk_io_read_mb",
        "disk_io_write_mb",
        "network_sent_mb",
        "network_recv_mb",
        "process_count",
        "thread_count",
    }
    assert snapshot["thread_count"] >= 1
    assert snapshot["process_count"] >= 1
    assert 0 < snapshot["memory_percent"] <= 100
    assert snapshot["memory_used_mb"] > 0
    first = monitor.resources.latest
    assert wait_until(lambda: monitor.resources.latest is not first)  # sampled in background
    assert monitor.get_statistics()["resources"] is not None


def test_resource_monitoring_off_means_no_snapshot(monitor):
    assert fail(monitor)["resource_snapshot"] is None
    assert monitor.get_statistics()["resources"] is None


def test_resource_monitoring_can_be_switched_at_runtime(make_monitor):
    monitor = make_monitor(enable_resource_monitoring=True, resource_check_interval=0.05)
    monitor.enable_resource_monitoring = False
    assert monitor.resources._thread is None
    assert fail(monitor)["resource_snapshot"] is None


def monitor_with_sampler(sampler: ResourceSampler) -> ErrorMonitor:
    monitor = ErrorMonitor(enable_resource_monitoring=True, **QUIET)
    sampler.on_failure = monitor.metrics.count_internal_error
    monitor.resources = sampler
    return monitor.start()


def test_works_without_psutil():
    sampler = ResourceSampler(0.01, psutil_module=None)
    assert sampler.available is False
    assert sampler.sample() is None
    monitor = monitor_with_sampler(sampler)
    try:
        assert sampler._thread is None  # nothing to sample, no thread
        report = fail(monitor)
        assert report["resource_snapshot"] is None
        assert monitor.get_statistics()["total_errors"] == 1
        assert monitor.get_statistics()["resources"] is None
    finally:
        monitor.stop()


class BrokenPsutil(SimpleNamespace):
    """A psutil whose every reading raises (permissions, containers, ...)."""

    def __getattr__(self, name: str) -> Any:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise PermissionError(f"psutil.{name} denied")

        return broken


def test_works_when_psutil_raises():
    sampler = ResourceSampler(0.01, psutil_module=BrokenPsutil())
    monitor = monitor_with_sampler(sampler)
    try:
        assert wait_until(lambda: sampler.failures >= 3)  # keeps trying in the background
        report = fail(monitor)
        assert report["resource_snapshot"] is None
        assert monitor.get_statistics()["total_errors"] == 1
        internal = monitor.registry.get_sample_value("app_monitor_internal_errors_total")
        assert internal is not None and internal >= 3
    finally:
        monitor.stop()


def test_failing_psutil_keeps_the_last_good_values():
    import psutil

    class FlakyPsutil:
        def __init__(self) -> None:
            self.broken = False

        def __getattr__(self, name: str) -> Any:
            if self.broken and name == "virtual_memory":
                raise OSError("gone")
            return getattr(psutil, name)

    flaky = FlakyPsutil()
    sampler = ResourceSampler(3600.0, psutil_module=flaky)
    good = sampler.sample()
    assert isinstance(good, ResourceSnapshot)
    flaky.broken = True
    assert sampler.sample() is good
    assert sampler.latest is good
    assert sampler.failures == 1


def test_sessions_counted_without_an_object_add_up_across_threads():
    """count_ended takes no lock: eight threads counting at once lose none, and a store's
    counts loaded into the tracker replace both kinds."""
    tracker = SessionTracker(timeout=60.0, max_breadcrumbs=10)
    threads = [
        threading.Thread(target=lambda: [tracker.count_ended("exited") for _ in range(10000)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tracker.count_ended("crashed")
    assert tracker.ended == {"exited": 80000, "errored": 0, "crashed": 1, "abnormal": 0}
    assert tracker.summary()["total_ended"] == 80001
    tracker.ended = {"exited": 3, "crashed": 1}
    assert tracker.ended == {"exited": 3, "errored": 0, "crashed": 1, "abnormal": 0}
