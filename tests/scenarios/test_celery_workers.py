"""Celery tasks captured as well as web requests are (issue 24), with real parts only.

A real redis-server is the broker; a real ``celery -A jobsapp worker --pool=prefork
--concurrency=2`` runs a small app written here, started as the docs' "Background jobs"
section says (the app module starts the monitor; ``PROMETHEUS_MULTIPROC_DIR`` makes the
pool children one picture). The test process only enqueues (through Celery's own client)
and reads what the children recorded from the multiprocess directory: its shared store and
its metric files.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from support.jobs import (
    Process,
    group_reports,
    metric,
    python,
    records,
    start_redis,
    wait_for,
    worker_env,
)

from exporter.multiprocess import SharedStore, prepare_dir

APP = textwrap.dedent('''
    """The app of the tests: a Celery app whose module starts the monitor (docs/scaling.md)."""
    import logging
    import os
    import threading
    import time

    from celery import Celery
    from celery.exceptions import Ignore, Reject

    from exporter import get_error_monitor

    monitor = get_error_monitor()  # options from ERROR_EXPORTER_* and the environment
    monitor.start()

    app = Celery("jobsapp", broker=os.environ["BROKER_URL"], backend=os.environ["BACKEND_URL"])
    app.conf.update(task_default_queue="jobs", broker_connection_retry_on_startup=True)
    log = logging.getLogger("jobsapp")


    class LostConnection(Exception):
        """Does not pickle (it holds a lock): Celery sends and logs a copy of it."""

        def __init__(self, message):
            super().__init__(message)
            self.lock = threading.Lock()


    @app.task(name="jobs.ship")
    def ship(order_id, password="hunter2"):
        log.warning("shipping order %s", order_id)  # a breadcrumb of the task's session
        raise ValueError(f"cannot ship order {order_id}")


    @app.task(name="jobs.unpicklable")
    def unpicklable():
        raise LostConnection("the connection went away")


    @app.task(bind=True, name="jobs.flaky", max_retries=5)
    def flaky(self):
        if self.request.retries < 2:
            raise self.retry(exc=ConnectionError("upstream down"), countdown=0)
        return "delivered"


    @app.task(bind=True, name="jobs.hopeless", max_retries=2)
    def hopeless(self):
        try:
            raise TimeoutError("upstream still down")
        except TimeoutError as exc:
            raise self.retry(exc=exc, countdown=0)


    @app.task(name="jobs.skip")
    def skip():
        raise Ignore()


    @app.task(name="jobs.reject")
    def reject():
        raise Reject("malformed payload", requeue=False)


    @app.task(name="jobs.expected", throws=(KeyError,))
    def expected():
        raise KeyError("no such customer")


    @app.task(name="jobs.slow", soft_time_limit=1)
    def slow(where):
        if where == "first":
            while True:
                time.sleep(0.05)
        while True:
            time.sleep(0.05)


    @app.task(name="jobs.stuck", time_limit=1)
    def stuck():
        while True:
            time.sleep(0.05)


    @app.task(name="jobs.noisy")
    def noisy(n):
        """Records an error and logs one, then succeeds: both carry the task's context."""
        try:
            int(f"item-{n}")
        except ValueError as exc:
            monitor.record_error(exc, component="inventory")
        log.error("stock count for %s is negative", n)
        return n


    @app.task(name="jobs.traced")
    def traced():
        raise RuntimeError("payment provider refused")
''')


@dataclass
class Worker:
    process: Process
    directory: Path
    client: Celery


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, url = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        server.stop()


def start_worker(tmp: Path, redis: str, *extra: str, db: int = 0) -> Worker:
    """A worker of its own broker database (another worker never takes its tasks)."""
    (tmp / "jobsapp.py").write_text(APP)
    directory = prepare_dir(tmp / "multiproc")
    broker, backend = f"{redis}/{db}", f"{redis}/{db + 1}"
    env = worker_env(directory, PYTHONPATH=str(tmp), BROKER_URL=broker, BACKEND_URL=backend)
    process = Process(
        [
            python(),
            "-m",
            "celery",
            "-A",
            "jobsapp",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=INFO",
            "-Q",
            "jobs",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"w{tmp.name}@%h",
            *extra,
        ],
        tmp / "worker.log",
        cwd=tmp,
        env=env,
    )
    client = Celery("client", broker=broker, backend=backend)
    client.conf.update(task_default_queue="jobs")
    return Worker(process, directory, client)


def stop_worker(worker: Worker) -> None:
    try:
        worker.client.close()
    finally:
        worker.process.stop()


@pytest.fixture(scope="module")
def worker(redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    started = start_worker(tmp_path_factory.mktemp("celery"), redis)
    try:
        yield started
    except BaseException:
        print(started.process.output()[-6000:])
        raise
    finally:
        stop_worker(started)


def finished(worker: Worker, task: str, outcome: str, count: int = 1) -> None:
    """Wait until ``count`` runs of ``task`` ended with ``outcome`` (their duration is
    observed after what they queued is stored)."""
    wait_for(
        lambda: (
            metric(
                worker.directory,
                "app_operation_duration_seconds_count",
                component="celery",
                operation=task,
                outcome=outcome,
            )
            >= count
        ),
        what=f"{count} x {task} {outcome}",
        process=worker.process,
    )


def of_task(worker: Worker, task: str) -> list[dict[str, Any]]:
    return [r for r in records(worker.directory) if r["operation"] == task]


def report_of(worker: Worker, record: dict[str, Any]) -> dict[str, Any]:
    return group_reports(worker.directory)[record["error_id"]]


@pytest.mark.tools  # a real redis-server
def test_a_failing_task_is_one_unhandled_report_with_the_task_context(worker: Worker) -> None:
    result = worker.client.send_task("jobs.ship", args=["A-17"], kwargs={"password": "s3"})
    finished(worker, "jobs.ship", "error")
    [record] = of_task(worker, "jobs.ship")  # Celery's own log line of it is no second one
    assert record["error_type"] == "ValueError" and record["component"] == "celery"
    task = record["context"]["task"]
    assert task["id"] == result.id and task["name"] == "jobs.ship"
    assert task["queue"] == "jobs" and task["retries"] == 0 and task["eta"] is None
    assert "args" not in task and "kwargs" not in task  # capture_body is off by default
    report = report_of(worker, record)
    assert report["mechanism"] == "celery" and report["handled"] is False
    assert [c["action"] for c in report["breadcrumbs"]][:2] == [
        "task jobs.ship",
        "shipping order A-17",
    ]
    assert (
        metric(worker.directory, "app_errors_total", error_type="ValueError", component="celery")
        == 1
    )


@pytest.mark.tools  # a real redis-server
def test_an_exception_that_does_not_pickle_is_still_one_report(worker: Worker) -> None:
    worker.client.send_task("jobs.unpicklable")
    finished(worker, "jobs.unpicklable", "error")
    [record] = of_task(worker, "jobs.unpicklable")  # the logged copy is another object
    assert record["error_type"] == "LostConnection"
    assert report_of(worker, record)["mechanism"] == "celery"
    assert metric(worker.directory, "app_errors_total", error_type="LostConnection") == 1


@pytest.mark.tools  # a real redis-server
def test_retries_then_success_are_counted_and_are_no_error(worker: Worker) -> None:
    assert worker.client.send_task("jobs.flaky").get(timeout=120) == "delivered"
    finished(worker, "jobs.flaky", "ok")
    finished(worker, "jobs.flaky", "retry", 2)
    assert (
        metric(
            worker.directory,
            "app_task_retries_total",
            component="celery",
            operation="jobs.flaky",
            error_type="ConnectionError",
        )
        == 2
    )
    assert of_task(worker, "jobs.flaky") == []
    assert metric(worker.directory, "app_errors_total", error_type="ConnectionError") == 0


@pytest.mark.tools  # a real redis-server
def test_retries_exhausted_the_cause_is_the_error(worker: Worker) -> None:
    worker.client.send_task("jobs.hopeless")
    finished(worker, "jobs.hopeless", "error")
    assert (
        metric(
            worker.directory,
            "app_operation_duration_seconds_count",
            operation="jobs.hopeless",
            outcome="retry",
        )
        == 2
    )
    assert (
        metric(
            worker.directory,
            "app_task_retries_total",
            operation="jobs.hopeless",
            error_type="TimeoutError",
        )
        == 2
    )
    [record] = of_task(worker, "jobs.hopeless")
    assert record["error_type"] == "TimeoutError"
    assert record["context"]["task"]["retries"] == 2


@pytest.mark.tools  # a real redis-server
def test_ignore_reject_and_expected_exceptions_are_outcomes_not_errors(worker: Worker) -> None:
    for name in ("jobs.skip", "jobs.reject", "jobs.expected"):
        worker.client.send_task(name)
    for name in ("jobs.skip", "jobs.reject", "jobs.expected"):
        finished(worker, name, "ignored")
        assert of_task(worker, name) == []
    assert metric(worker.directory, "app_errors_total", error_type="KeyError") == 0


@pytest.mark.tools  # a real redis-server
def test_soft_time_limit_is_one_group_per_task_wherever_it_strikes(worker: Worker) -> None:
    worker.client.send_task("jobs.slow", args=["first"])
    worker.client.send_task("jobs.slow", args=["second"])
    finished(worker, "jobs.slow", "error", 2)
    found = of_task(worker, "jobs.slow")
    assert len(found) == 2
    assert {r["error_type"] for r in found} == {"SoftTimeLimitExceeded"}
    assert len({r["error_id"] for r in found}) == 1  # two places, one group: the task's
    assert all("slow" in (r["stack_trace"] or "") for r in found)  # where it struck


@pytest.mark.tools  # a real redis-server
def test_a_task_killed_at_its_hard_time_limit_is_one_report_of_the_parent(worker: Worker) -> None:
    result = worker.client.send_task("jobs.stuck")
    result.get(timeout=120, propagate=False)  # stored after the parent logged the kill
    assert result.state == "FAILURE"
    found = [r for r in records(worker.directory) if r["operation"] == "jobs.stuck"]
    if not found:
        found = wait_for(
            lambda: [r for r in records(worker.directory) if r["operation"] == "jobs.stuck"],
            what="the hard time limit's report",
            process=worker.process,
        )
    [record] = found
    assert record["error_type"] == "TimeLimitExceeded" and record["component"] == "celery"
    assert record["context"]["task"] == {"id": result.id, "name": "jobs.stuck", "time_limit": 1}
    assert record["pid"] == worker.process.pid  # the pool's parent: the child was killed
    assert report_of(worker, record)["mechanism"] == "celery"
    # the parent's log line of the kill is no second report (billiard may also log, from the
    # multiprocessing logger, that the killed child exited: a line about the process, kept)
    celery_lines = [
        r
        for r in group_reports(worker.directory).values()
        if r["error_type"] == "LoggedError"
        and str((r.get("context") or {}).get("logger", "")).startswith("celery")
    ]
    assert celery_lines == []
    assert metric(worker.directory, "app_errors_total", error_type="TimeLimitExceeded") == 1


@pytest.mark.tools  # a real redis-server
def test_what_the_task_records_and_logs_carries_its_context(worker: Worker) -> None:
    result = worker.client.send_task("jobs.noisy", args=[3])
    assert result.get(timeout=120) == 3
    finished(worker, "jobs.noisy", "ok")
    found = {r["error_type"]: r for r in of_task(worker, "jobs.noisy")}
    assert set(found) == {"ValueError", "LoggedError"}
    for record in found.values():
        assert record["context"]["task"]["id"] == result.id
    assert found["ValueError"]["component"] == "inventory"  # the call's own wins


def published_pids(directory: Path) -> set[int]:
    return {int(w["pid"]) for w in SharedStore(directory).workers(3600.0)}


@pytest.mark.tools  # a real redis-server
def test_a_recycled_child_loses_nothing(redis: str, tmp_path: Path) -> None:
    recycled = start_worker(tmp_path, redis, "--max-tasks-per-child=1", db=2)
    try:
        results = [recycled.client.send_task("jobs.noisy", args=[n]) for n in range(4)]
        assert [r.get(timeout=120) for r in results] == [0, 1, 2, 3]
        finished(recycled, "jobs.noisy", "ok", 4)
        found = of_task(recycled, "jobs.noisy")
        assert len(found) == 8  # each child exited right after its task: all stored
        children = {r["pid"] for r in found}
        assert len(children) >= 3  # really several children
        # each exited child dropped its published state (a server's child_exit would)
        wait_for(
            lambda: not children & published_pids(recycled.directory),
            what="the exited children's state dropped",
            process=recycled.process,
        )
    except BaseException:
        print(recycled.process.output()[-6000:])
        raise
    finally:
        stop_worker(recycled)


@pytest.mark.tools  # a real redis-server
def test_the_enqueuing_requests_trace_reaches_the_tasks_error(
    worker: Worker, make_monitor: Any
) -> None:
    from werkzeug.test import Client

    from exporter.integrations.wsgi import WsgiMiddleware

    monitor = make_monitor(capture_celery=True)  # the web app's: traceparent into the headers
    sent: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        sent.append(worker.client.send_task("jobs.traced").id)
        start_response("202 Accepted", [("Content-Type", "text/plain")])
        return [b"queued"]

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = Client(WsgiMiddleware(app, monitor)).post(
        "/orders", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    assert response.status_code == 202
    finished(worker, "jobs.traced", "error")
    [record] = of_task(worker, "jobs.traced")
    assert record["trace_id"] == trace_id
    assert record["context"]["task"]["id"] == sent[0]


# -- in this process: eager tasks (Celery runs them through the same tracer and signals) -------


def eager_app() -> Celery:
    app = Celery("eager", broker="memory://", backend="cache+memory://")
    app.conf.update(task_store_eager_result=False)
    return app


def test_capture_body_adds_the_scrubbed_args_and_kwargs(make_monitor: Any) -> None:
    from exporter.integrations.celery import CeleryIntegration

    monitor = make_monitor(integrations=[CeleryIntegration(component="jobs", capture_body=True)])
    app = eager_app()

    @app.task(name="eager.charge")
    def charge(order_id: str, card: dict[str, str], api_key: str = "") -> None:
        raise ValueError(f"card declined for {order_id}")

    charge.apply(args=["A-1", {"number": "4111", "password": "pw"}], kwargs={"api_key": "k-123"})
    assert monitor.flush(10)
    [group] = monitor.list_groups()
    report = monitor.get_group(group["error_id"])["report"]
    assert report["mechanism"] == "celery" and report["handled"] is False
    assert report["component"] == "jobs" and report["operation"] == "eager.charge"
    task = report["context"]["task"]
    assert task["args"] == ["A-1", {"number": "4111", "password": "[Filtered]"}]
    assert task["kwargs"] == {"api_key": "[Filtered]"}
    assert (
        monitor.registry.get_sample_value(
            "app_operation_duration_seconds_count",
            {"component": "jobs", "plugin": "", "operation": "eager.charge", "outcome": "error"},
        )
        == 1
    )


def test_stop_disconnects_the_hook(make_monitor: Any) -> None:
    from celery import signals

    monitor = make_monitor(capture_celery=True)
    receivers = lambda: len(signals.task_prerun.receivers)  # noqa: E731
    connected = receivers()
    assert connected >= 1
    monitor.stop()
    assert receivers() == connected - 1
    app = eager_app()

    @app.task(name="eager.after_stop")
    def after_stop() -> None:
        raise ValueError("not seen")

    after_stop.apply()
    assert monitor.list_groups() == []


LATE_IMPORT = """
import json, sys
import exporter
monitor = exporter.ErrorMonitor(enable_resource_monitoring=False).start()
before = sorted(m for m in sys.modules if m.split(".")[0] in ("celery", "rq", "kombu", "redis"))
from celery import Celery
app = Celery("late", broker="memory://")
@app.task(name="late.fail")
def fail():
    raise ValueError("seen")
fail.apply()
from rq.worker import Worker
monitor.flush(10)
[group] = monitor.list_groups()
report = monitor.get_group(group["error_id"])["report"]
print(json.dumps({"before": before, "mechanism": report["mechanism"],
                  "operation": report["operation"],
                  "rq": Worker.perform_job.__qualname__}))
monitor.stop()
print(json.dumps({"rq": Worker.perform_job.__qualname__}))
"""


def test_the_hooks_wait_for_the_app_to_import_the_library(tmp_path: Path) -> None:
    """A plain start imports neither library; an app that imports one later gets its hook."""
    import json
    import subprocess

    from support.jobs import clean_env

    done = subprocess.run(
        [python(), "-c", LATE_IMPORT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen, after_stop = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert seen["before"] == []
    assert seen["mechanism"] == "celery" and seen["operation"] == "late.fail"
    assert seen["rq"].startswith("RqIntegration.")  # wrapped when the app imported rq
    assert "RqIntegration" not in after_stop["rq"]  # stop() put RQ's own back
