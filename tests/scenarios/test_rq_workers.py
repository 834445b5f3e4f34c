"""RQ jobs captured as well as web requests are (issue 24), with real parts only.

A real redis-server; a real ``rq worker -c rq_settings`` (the settings module starts the
monitor in the worker, before it forks a work horse per job: docs/scaling.md's "Background
jobs" section); a job module written here. The test process enqueues with RQ's own client
and reads what the horses recorded from the multiprocess directory.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Retry
from support.jobs import (
    Process,
    group_reports,
    metric,
    records,
    start_redis,
    wait_for,
    worker_env,
)

from exporter.multiprocess import prepare_dir

SETTINGS = textwrap.dedent('''
    """rq worker -c rq_settings: RQ's settings module, read by the worker before it forks."""
    import os

    from exporter import get_error_monitor

    REDIS_URL = os.environ["REDIS_URL"]
    QUEUES = ["jobs"]

    get_error_monitor().start()  # the RQ hook wraps the worker: every job's horse has it
''')

JOBS = textwrap.dedent('''
    """The jobs of the tests."""
    import logging
    import time

    from rq import get_current_job

    from exporter import get_error_monitor

    log = logging.getLogger("rqjobs")


    def ship(order_id, password="hunter2"):
        log.warning("shipping order %s", order_id)
        raise ValueError(f"cannot ship order {order_id}")


    def flaky():
        job = get_current_job()
        if job.connection.incr(f"attempts:{job.id}") <= 2:
            raise ConnectionError("upstream down")
        return "delivered"


    def hopeless():
        raise TimeoutError("upstream still down")


    def record_and_leave(n):
        """Records an error and returns: the horse exits (os._exit) right after."""
        try:
            int(f"item-{n}")
        except ValueError as exc:
            get_error_monitor().record_error(exc, component="inventory")
        return n


    def traced():
        raise RuntimeError("payment provider refused")


    def stall(where):
        if where == "first":
            while True:
                time.sleep(0.05)
        while True:
            time.sleep(0.05)
''')


@dataclass
class Worker:
    process: Process
    directory: Path
    queue: Queue


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("rq")
    server, url = start_redis(tmp)
    (tmp / "rq_settings.py").write_text(SETTINGS)
    (tmp / "rqjobs.py").write_text(JOBS)
    directory = prepare_dir(tmp / "multiproc")
    rq = str(Path(sys.executable).parent / "rq")
    process = Process(
        [rq, "worker", "-c", "rq_settings", "--name", "w1"],
        tmp / "worker.log",
        cwd=tmp,
        env=worker_env(directory, PYTHONPATH=str(tmp), REDIS_URL=url),
    )
    connection = Redis.from_url(url)
    try:
        yield Worker(process, directory, Queue("jobs", connection=connection))
    except BaseException:
        print(process.output()[-6000:])
        raise
    finally:
        try:
            connection.close()
        finally:
            process.stop()
            server.stop()


def finished(worker: Worker, job: str, outcome: str, count: int = 1) -> None:
    """Wait until ``count`` runs of ``job`` ended with ``outcome`` (their duration is
    observed after what they queued is stored)."""
    wait_for(
        lambda: (
            metric(
                worker.directory,
                "app_operation_duration_seconds_count",
                component="rq",
                operation=job,
                outcome=outcome,
            )
            >= count
        ),
        what=f"{count} x {job} {outcome}",
        process=worker.process,
    )


def of_job(worker: Worker, name: str) -> list[dict[str, Any]]:
    return [r for r in records(worker.directory) if r["operation"] == name]


@pytest.mark.tools  # a real redis-server
def test_a_failing_job_is_one_unhandled_report_with_the_job_context(worker: Worker) -> None:
    job = worker.queue.enqueue("rqjobs.ship", "A-17", password="s3")
    finished(worker, "rqjobs.ship", "error")
    [record] = of_job(worker, "rqjobs.ship")  # RQ's own log line of it is no second one
    assert record["error_type"] == "ValueError" and record["component"] == "rq"
    described = record["context"]["job"]
    assert described["id"] == job.id and described["function"] == "rqjobs.ship"
    assert described["queue"] == "jobs"
    assert "args" not in described and "kwargs" not in described  # capture_body is off
    report = group_reports(worker.directory)[record["error_id"]]
    assert report["mechanism"] == "rq" and report["handled"] is False
    assert [c["action"] for c in report["breadcrumbs"]][:2] == [
        "job rqjobs.ship",
        "shipping order A-17",
    ]
    assert metric(worker.directory, "app_errors_total", component="rq") == 1
    assert metric(worker.directory, "app_errors_total", error_type="LoggedError") == 0


@pytest.mark.tools  # a real redis-server
def test_retries_then_success_are_counted_and_are_no_error(worker: Worker) -> None:
    worker.queue.enqueue("rqjobs.flaky", retry=Retry(max=3))
    finished(worker, "rqjobs.flaky", "ok")
    assert (
        metric(
            worker.directory,
            "app_operation_duration_seconds_count",
            operation="rqjobs.flaky",
            outcome="retry",
        )
        == 2
    )
    assert (
        metric(
            worker.directory,
            "app_task_retries_total",
            component="rq",
            operation="rqjobs.flaky",
            error_type="ConnectionError",
        )
        == 2
    )
    assert of_job(worker, "rqjobs.flaky") == []


@pytest.mark.tools  # a real redis-server
def test_retries_exhausted_the_last_failure_is_the_error(worker: Worker) -> None:
    worker.queue.enqueue("rqjobs.hopeless", retry=Retry(max=2))
    finished(worker, "rqjobs.hopeless", "error")
    assert (
        metric(
            worker.directory,
            "app_task_retries_total",
            operation="rqjobs.hopeless",
            error_type="TimeoutError",
        )
        == 2
    )
    [record] = of_job(worker, "rqjobs.hopeless")
    assert record["error_type"] == "TimeoutError"
    assert record["context"]["job"]["retries_left"] == 0


@pytest.mark.tools  # a real redis-server
def test_what_a_horse_records_right_before_it_exits_is_kept(worker: Worker) -> None:
    jobs = [worker.queue.enqueue("rqjobs.record_and_leave", n) for n in range(3)]
    finished(worker, "rqjobs.record_and_leave", "ok", 3)
    found = of_job(worker, "rqjobs.record_and_leave")
    assert len(found) == 3 and {r["error_type"] for r in found} == {"ValueError"}
    assert {r["context"]["job"]["id"] for r in found} == {j.id for j in jobs}
    assert len({r["pid"] for r in found}) == 3  # one horse each, each gone with os._exit
    assert {r["component"] for r in found} == {"inventory"}


@pytest.mark.tools  # a real redis-server
def test_a_job_timeout_is_one_group_per_job_wherever_it_strikes(worker: Worker) -> None:
    worker.queue.enqueue("rqjobs.stall", "first", job_timeout=1)
    worker.queue.enqueue("rqjobs.stall", "second", job_timeout=1)
    finished(worker, "rqjobs.stall", "error", 2)
    found = of_job(worker, "rqjobs.stall")
    assert len(found) == 2 and {r["error_type"] for r in found} == {"JobTimeoutException"}
    assert len({r["error_id"] for r in found}) == 1
    assert all("stall" in (r["stack_trace"] or "") for r in found)  # where it struck


@pytest.mark.tools  # a real redis-server
def test_the_enqueuing_requests_trace_reaches_the_jobs_error(
    worker: Worker, make_monitor: Any
) -> None:
    from werkzeug.test import Client

    from exporter.integrations.wsgi import WsgiMiddleware

    monitor = make_monitor(capture_rq=True)  # the web app's: traceparent into job.meta
    sent: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        sent.append(worker.queue.enqueue("rqjobs.traced").id)
        start_response("202 Accepted", [("Content-Type", "text/plain")])
        return [b"queued"]

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = Client(WsgiMiddleware(app, monitor)).post(
        "/orders", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    assert response.status_code == 202
    finished(worker, "rqjobs.traced", "error")
    [record] = of_job(worker, "rqjobs.traced")
    assert record["trace_id"] == trace_id
    assert record["context"]["job"]["id"] == sent[0]


def test_stop_puts_rqs_methods_back(make_monitor: Any) -> None:
    from rq.worker import Worker as RqWorker

    before = (RqWorker.perform_job, RqWorker.handle_exception, Queue.create_job)
    monitor = make_monitor(capture_rq=True)
    assert RqWorker.perform_job is not before[0] and Queue.create_job is not before[2]
    monitor.stop()
    assert (RqWorker.perform_job, RqWorker.handle_exception, Queue.create_job) == before
