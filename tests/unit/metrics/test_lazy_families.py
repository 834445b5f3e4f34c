"""prometheus_client is imported when a metric object is first needed, not at the start
(issue 23): importing it is a large share of a monitor's start-up.

Checked as behaviour, never as time: what a plain start leaves out of ``sys.modules``,
exact counts and exemplars for errors counted before the families existed, the worker (not
the app's thread) making them after the first error, and every series at 0 from the first
read on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from exporter.metrics.capture_path import DROP_REASONS

REPO = Path(__file__).resolve().parents[3]
QUIET = HOOKS_OFF
ERROR_SERIES = (
    'app_errors_total{component="ECU",error_type="ValueError",plugin="",severity="medium"}'
)
FAMILIES = (
    "app_errors",
    "app_error_recoveries",
    "app_error_recovery_duration_seconds",
    "app_operation_duration_seconds",
    "app_task_retries",
    "app_error_reports_dropped",
    "app_monitor_internal_errors",
    "app_label_values_overflow",
    "app_error_groups_new",
    "app_error_groups_regressed",
)


def fail(monitor: Any, message: str = "bad", **kwargs: Any) -> str | None:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return monitor.record_error(exc, **kwargs)


def wait_until(condition: Any, timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_start_that_never_errs_never_imports_prometheus_client():
    """Default options and hooks off, started and stopped with nothing recorded; then one
    error and one scrape: the families exist, each at 0 but the error's, which is exact.

    The scrape imports prometheus_client on the main thread right after the error, while
    the worker may be importing it for its tick: the package imported as a whole on both
    sides, one waits for the other (a worker starting with a submodule made this import
    fail with "partially initialized module")."""
    code = (
        "import sys, json\n"
        "import exporter\n"
        "from exporter.config import HOOKS_OFF\n"
        "def loaded():\n"
        "    return sorted(m for m in sys.modules if m.split('.')[0] == 'prometheus_client')\n"
        "exporter.ErrorMonitor().start(serve=False).stop()\n"
        "after_default = loaded()\n"
        "quiet = exporter.ErrorMonitor(**HOOKS_OFF).start(serve=False)\n"
        "quiet.stop()\n"
        "after_quiet = loaded()\n"
        "monitor = exporter.ErrorMonitor(**HOOKS_OFF).start(serve=False)\n"
        "try:\n"
        "    raise ValueError('once')\n"
        "except ValueError as exc:\n"
        "    monitor.record_error(exc, component='ECU')\n"
        "from prometheus_client import generate_latest\n"
        "text = generate_latest(monitor.registry).decode()\n"
        "monitor.stop()\n"
        "print(json.dumps([after_default, after_quiet, text]))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    after_default, after_quiet, text = json.loads(done.stdout.strip().splitlines()[-1])
    assert after_default == []
    assert after_quiet == []
    assert f"{ERROR_SERIES} 1.0" in text
    for family in FAMILIES:
        assert f"# TYPE {family}" in text, family
    for reason in DROP_REASONS:
        assert f'app_error_reports_dropped_total{{reason="{reason}"}} 0.0' in text
    assert 'app_error_groups_new_total{app_version="unknown"}' in text
    assert "app_monitor_internal_errors_total 0.0" in text


def test_errors_counted_before_the_families_exist_are_exact_with_their_exemplar():
    monitor = ErrorMonitor(**QUIET)  # not started: no worker tick makes them meanwhile
    monitor.set_app_version("2.0")  # remembered: its release series exist at 0
    ids = [fail(monitor, component="ECU") for _ in range(3)]
    monitor.observe_operation("ECU", "", "read", True, 0.01)
    assert not monitor.metrics.materialized
    text = generate_openmetrics(monitor.registry).decode()
    assert monitor.metrics.materialized
    line = next(x for x in text.splitlines() if x.startswith(ERROR_SERIES))
    assert line.startswith(f"{ERROR_SERIES} 3.0 # ")
    assert f'error_id="{ids[-1]}"' in line
    assert 'app_error_groups_new_total{app_version="2.0"} 0.0' in text
    assert 'app_error_groups_regressed_total{app_version="2.0"} 0.0' in text
    assert (
        'app_operation_duration_seconds_count{component="ECU",operation="read",'
        'outcome="ok",plugin=""} 1.0'
    ) in text
    for reason in DROP_REASONS:
        assert f'app_error_reports_dropped_total{{reason="{reason}"}} 0.0' in text
    fail(monitor, component="ECU")  # after: straight into the child at the next read
    assert f"{ERROR_SERIES} 4.0" in generate_latest(monitor.registry).decode()


def test_the_worker_makes_the_families_after_the_first_error_without_a_scrape(monitor):
    assert not monitor.metrics.materialized
    made_on: list[str] = []
    bind = monitor.metrics.bind

    def noted_bind(registry: Any) -> Any:
        made_on.append(threading.current_thread().name)
        return bind(registry)

    monitor.metrics.bind = noted_bind
    fail(monitor, component="ECU")
    assert wait_until(lambda: monitor.metrics.materialized)
    assert made_on and threading.main_thread().name not in made_on
    assert f"{ERROR_SERIES} 1.0" in generate_latest(monitor.registry).decode()


def test_reads_and_rare_counts_make_the_families():
    for read in (
        lambda m: m.registry,
        lambda m: m.get_statistics(),
        lambda m: m.metrics.count_drop("queue_full"),
        lambda m: m.note_internal_error(RuntimeError("inside")),
    ):
        monitor = ErrorMonitor(**QUIET)
        assert not monitor.metrics.materialized
        read(monitor)
        assert monitor.metrics.materialized


def test_a_forked_child_starts_from_zero_before_the_families_exist():
    monitor = ErrorMonitor(**QUIET)
    fail(monitor, component="ECU")
    fail(monitor, component="ECU")
    assert not monitor.metrics.materialized
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            fail(monitor, component="ECU")
            text = generate_latest(monitor.registry).decode()
            os.write(write, ("ok" if f"{ERROR_SERIES} 1.0" in text else text).encode())
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 65536).decode() == "ok"
    assert f"{ERROR_SERIES} 2.0" in generate_latest(monitor.registry).decode()


def test_the_app_registry_collects_the_monitor_from_the_start(make_monitor):
    """A registry the app supplies (prometheus_client already imported): the families are
    made at once, so the app's first scrape shows them."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    monitor = make_monitor(registry=registry)
    assert monitor.metrics.materialized
    text = generate_latest(registry).decode()
    assert 'app_error_reports_dropped_total{reason="queue_full"} 0.0' in text


def test_a_fork_waits_while_another_thread_makes_the_registry():
    """A child forked in the middle of prometheus_client's import (on the worker) would
    find the module's import lock held by a thread it does not have, and hang at its first
    metric: the fork waits for the registry instead."""
    monitor = ErrorMonitor(**QUIET)
    entered, release = threading.Event(), threading.Event()
    bind = monitor.metrics.bind

    def slow_bind(registry: Any) -> Any:
        entered.set()
        release.wait(30)
        return bind(registry)

    monitor.metrics.bind = slow_bind
    maker = threading.Thread(target=lambda: monitor.registry)
    maker.start()
    assert entered.wait(30)  # the maker holds the registry's lock, inside bind
    threading.Timer(0.05, release.set).start()  # only lets it finish; nothing is timed
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os._exit(0 if monitor.metrics.materialized else 1)
    made_at_fork = monitor.metrics.materialized
    _, status = os.waitpid(child, 0)
    maker.join(30)
    assert made_at_fork
    assert os.waitstatus_to_exitcode(status) == 0
