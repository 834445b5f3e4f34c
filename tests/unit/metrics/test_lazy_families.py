"""prometheus_client is imported when a metric object is first needed, not at the start
(issue 23): importing it is a large share of a monitor's start-up.

Checked as behaviour, never as time: what a plain start leaves out of ``sys.modules``,
exact counts and exemplars for errors counted before the families existed, no thread of the
monitor ever importing prometheus_client first (an app thread importing one of its
submodules meanwhile would fail), the starts that make them at once because a thread of the
monitor will read them, and every series at 0 from the first read on.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from support.fresh_python import run_python

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from exporter.metrics.capture_path import DROP_REASONS

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
    error and one scrape: the families exist, each at 0 but the error's, which is exact."""
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
    after_default, after_quiet, text = run_python(code)
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


# Errors of three groups (new groups on the worker), drops (queue_size=1: queue_full on the
# callers' threads; error_buffer_size=2: store_evicted on the worker...), recoveries with
# their durations, timings past the queue's limit (folded on this thread) and queued ones;
# several of the worker's ticks; every prometheus_client import noted with its thread.
# Every import of prometheus_client, noted with the thread that made it (an audit hook).
NOTE_IMPORTS = """
import json, sys, threading, time
imports = []
def noted(event, args):
    if event == "import" and str(args[0]).split(".")[0] == "prometheus_client":
        imports.append(threading.current_thread().name)
sys.addaudithook(noted)
"""

WITHOUT_PROMETHEUS_CLIENT = (
    NOTE_IMPORTS
    + """
import exporter
from exporter.metrics import capture_path
capture_path._PENDING_OBSERVATIONS_LIMIT = 10
monitor = exporter.ErrorMonitor(queue_size=1, error_buffer_size=2).start(serve=False)
drops, lock = {}, threading.Lock()
count_drop = monitor.metrics.count_drop
def noted_drop(reason, amount=1):
    with lock:
        drops[reason] = drops.get(reason, 0) + amount
    count_drop(reason, amount)
monitor.metrics.count_drop = noted_drop
new_groups = []
count_new_group = monitor.metrics.count_new_group
def noted_new_group(version):
    new_groups.append(threading.current_thread().name)
    count_new_group(version)
monitor.metrics.count_new_group = noted_new_group
errors = (ValueError, KeyError, TypeError)
def fail(kind):
    try:
        raise kind("x")
    except Exception as exc:
        return monitor.record_error(exc, component="ECU")
def storm():
    for n in range(300):
        fail(errors[n % 3])
threads = [threading.Thread(target=storm) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
error_id = fail(ValueError)
monitor.record_recovery(True, 0.5, component="ECU", error_id=error_id)
monitor.record_recovery(False, 2.0, component="ECU")
for n in range(25):
    monitor.observe_operation("db", "", "query", True, 0.25)
monitor.observe_operation("db", "", "query", False, 2.0)
deadline = time.monotonic() + 60
while monitor.queue_depth and time.monotonic() < deadline:
    time.sleep(0.01)
monitor.flush()
time.sleep(1.0)  # lets the worker tick several times (every 0.25 s); nothing is timed
before = "prometheus_client" in sys.modules
made_before = monitor.metrics.materialized
from prometheus_client import generate_latest
text = generate_latest(monitor.registry).decode()
monitor.stop()
print(json.dumps([before, made_before, imports, drops, new_groups, text]))
"""
)


def sample(text: str, series: str) -> float:
    """The value of ``series`` (name and labels exactly as exposed) in ``text``."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in the exposition")


def test_no_thread_of_the_monitor_imports_prometheus_client_and_nothing_is_lost():
    """Errors, new groups, drops, recoveries and timings while nobody imported
    prometheus_client: after the worker's ticks it is still not imported (the worker
    left everything pending); the app's first read imports it, on the app's thread, and
    every figure is exact."""
    before, made_before, imports, drops, new_groups, text = run_python(WITHOUT_PROMETHEUS_CLIENT)
    assert before is False
    assert made_before is False
    assert imports and set(imports) == {"MainThread"}
    series = 'app_errors_total{{component="ECU",error_type="{}",plugin="",severity="medium"}}'
    assert sample(text, series.format("ValueError")) == 301
    assert sample(text, series.format("KeyError")) == 300
    assert sample(text, series.format("TypeError")) == 300
    assert set(new_groups) == {"error-exporter-worker"}
    assert sample(text, 'app_error_groups_new_total{app_version="unknown"}') == len(new_groups)
    assert drops.get("queue_full", 0) > 0
    for reason in DROP_REASONS:
        dropped = sample(text, f'app_error_reports_dropped_total{{reason="{reason}"}}')
        assert dropped == drops.get(reason, 0), reason
    recovery = 'app_error_recoveries_total{{component="ECU",plugin="",result="{}"}}'
    assert sample(text, recovery.format("success")) == 1
    assert sample(text, recovery.format("failure")) == 1
    durations = 'app_error_recovery_duration_seconds_{}{{component="ECU",plugin=""}}'
    assert sample(text, durations.format("count")) == 2
    assert sample(text, durations.format("sum")) == 2.5
    half_second = 'app_error_recovery_duration_seconds_bucket{component="ECU",le="0.5",plugin=""}'
    assert sample(text, half_second) == 1
    timing = (
        'app_operation_duration_seconds_{}{{component="db",operation="query",'
        'outcome="{}",plugin=""}}'
    )
    assert sample(text, timing.format("count", "ok")) == 25
    assert sample(text, timing.format("sum", "ok")) == 6.25
    assert sample(text, timing.format("count", "error")) == 1
    assert sample(text, timing.format("sum", "error")) == 2.0
    ok_bucket = (
        'app_operation_duration_seconds_bucket{component="db",le="0.25",operation="query",'
        'outcome="ok",plugin=""}'
    )
    assert sample(text, ok_bucket) == 25
    assert sample(text, "app_monitor_internal_errors_total") == 0


def test_the_worker_makes_the_families_once_the_app_imported_prometheus_client():
    """The app imports prometheus_client itself after the first errors: the worker's tick
    then makes the families on its own (importing nothing of prometheus_client), exact."""
    code = (
        NOTE_IMPORTS
        + """
import exporter
from exporter.config import HOOKS_OFF
monitor = exporter.ErrorMonitor(**HOOKS_OFF).start(serve=False)
made_by = []
bind = monitor.metrics.bind
def noted_bind(registry):
    made_by.append(threading.current_thread().name)
    return bind(registry)
monitor.metrics.bind = noted_bind
for n in range(5):
    try:
        raise ValueError("x")
    except ValueError as exc:
        monitor.record_error(exc, component="ECU")
monitor.observe_operation("db", "", "query", True, 0.5)
monitor.flush()
made_early = monitor.metrics.materialized
import prometheus_client.core
deadline = time.monotonic() + 60
while not monitor.metrics.materialized and time.monotonic() < deadline:
    time.sleep(0.01)
from prometheus_client import generate_latest
text = generate_latest(monitor.registry).decode()
monitor.stop()
print(json.dumps([made_early, made_by, sorted(set(imports)), text]))
"""
    )
    made_early, made_by, import_threads, text = run_python(code)
    assert made_early is False
    assert set(made_by) == {"error-exporter-worker"}  # (bound, then asked again)
    assert import_threads == ["MainThread"]
    assert sample(text, ERROR_SERIES) == 5
    timing = (
        'app_operation_duration_seconds_count{component="db",operation="query",'
        'outcome="ok",plugin=""}'
    )
    assert sample(text, timing) == 1


# An app thread's first import of prometheus_client is a submodule (as a custom collector's
# ``from prometheus_client.core import GaugeMetricFamily``) while another thread records the
# first errors. It is placed in the window where it failed: as soon as another thread has
# begun importing the package (the worker did, for its tick), or after a second of the
# worker's ticks without that (a bound, not an assertion).
RACE = """
import json, sys, threading, time
import exporter
from exporter.config import HOOKS_OFF
monitor = exporter.ErrorMonitor(**HOOKS_OFF).start(serve=False)
def errors():
    for n in range(200):
        try:
            raise ValueError(n)
        except ValueError as exc:
            monitor.record_error(exc, component="ECU")
        monitor.observe_operation("db", "", "query", True, 0.001)
thread = threading.Thread(target=errors)
thread.start()
deadline = time.monotonic() + 1.0
while "prometheus_client" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0)
failure = None
try:
    from prometheus_client.core import GaugeMetricFamily
except Exception as exc:
    failure = repr(exc)
thread.join()
monitor.flush()
from prometheus_client import generate_latest
text = generate_latest(monitor.registry).decode()
monitor.stop()
print(json.dumps([failure, text]))
"""


def test_an_app_thread_importing_a_submodule_first_never_fails():
    """The regression test: fresh interpreters, each racing an app thread's first import
    of ``prometheus_client.core`` with the monitor's first errors. None fails, and the
    counts are exact."""
    for _ in range(10):
        failure, text = run_python(RACE)
        assert failure is None
        assert sample(text, ERROR_SERIES) == 200


EAGER = """
import json, sys
import exporter
from exporter.config import HOOKS_OFF
monitor = exporter.ErrorMonitor(**HOOKS_OFF, **{options})
{before_start}
monitor.start()
loaded = "prometheus_client" in sys.modules
made = monitor.metrics.materialized
monitor.stop()
print(json.dumps([loaded, made]))
"""


def test_starts_whose_threads_read_the_metrics_make_them_at_once(tmp_path):
    """The auto-export (the callback thread reads the statistics), the server (its thread
    serves /metrics) and the app's callbacks (run on the callback thread): the families
    are made at the start, on the app's thread; a plain start does not."""
    cases = {
        "plain": ("{}", ""),
        "export_path": (f"{{'export_path': {str(tmp_path)!r}}}", ""),
        "serve": ("{'serve': True, 'port': 0, 'host': '127.0.0.1'}", ""),
        "callback": ("{}", "monitor.register_error_callback(print)"),
    }
    for name, (options, before_start) in cases.items():
        loaded, made = run_python(EAGER.format(options=options, before_start=before_start))
        assert (loaded, made) == ((False, False) if name == "plain" else (True, True)), name


def test_reads_make_the_families():
    for read in (
        lambda m: m.registry,
        lambda m: m.get_statistics(),
        lambda m: m.export_data(),
    ):
        monitor = ErrorMonitor(**QUIET)
        assert not monitor.metrics.materialized
        read(monitor)
        assert monitor.metrics.materialized


def test_rare_counts_wait_for_the_families_and_are_applied_once():
    """Counted from any thread (the worker's among them): kept, not made into families;
    applied once when a read makes them, and straight into them afterwards."""
    monitor = ErrorMonitor(**QUIET, label_value_limits={"component": 2})
    metrics = monitor.metrics
    metrics.count_drop("queue_full")
    metrics.count_drop("store_evicted", 3)
    monitor.note_internal_error(RuntimeError("inside"))
    metrics.count_new_group("1.0")
    metrics.count_regressed_group(None)
    metrics.count_task_retry("jobs", "send", "Timeout")
    metrics.count_recovery("A", "", True, 0.02)
    metrics.count_recovery("B", "", False, None)  # component over its limit: other
    assert not metrics.materialized
    text = generate_latest(monitor.registry).decode()
    assert 'app_error_reports_dropped_total{reason="queue_full"} 1.0' in text
    assert 'app_error_reports_dropped_total{reason="store_evicted"} 3.0' in text
    assert 'app_error_reports_dropped_total{reason="coalesced"} 0.0' in text
    assert "app_monitor_internal_errors_total 1.0" in text
    assert 'app_error_groups_new_total{app_version="1.0"} 1.0' in text
    assert 'app_error_groups_regressed_total{app_version="unknown"} 1.0' in text
    retry = 'app_task_retries_total{component="jobs",error_type="Timeout",operation="send"}'
    assert f"{retry} 1.0" in text
    assert 'app_error_recoveries_total{component="A",plugin="",result="success"} 1.0' in text
    other = 'app_error_recoveries_total{component="other",plugin="",result="failure"}'
    assert f"{other} 1.0" in text
    assert 'app_label_values_overflow_total{label="component"} 1.0' in text
    bucket = 'app_error_recovery_duration_seconds_bucket{component="A",le="0.05",plugin=""}'
    assert f"{bucket} 1.0" in text
    assert 'app_error_recovery_duration_seconds_sum{component="A",plugin=""} 0.02' in text
    metrics.count_drop("queue_full")  # now straight into the family
    text = generate_latest(monitor.registry).decode()
    assert 'app_error_reports_dropped_total{reason="queue_full"} 2.0' in text
    assert 'app_error_reports_dropped_total{reason="store_evicted"} 3.0' in text


def test_timings_past_the_queue_limit_fold_into_tallies_until_the_families_exist(monkeypatch):
    """No 40 ms import in a request: past its limit the queue is folded on the caller's
    thread into a tally per label set, the same histogram once the families exist."""
    from prometheus_client import CollectorRegistry, Histogram

    from exporter.metrics import capture_path

    monkeypatch.setattr(capture_path, "_PENDING_OBSERVATIONS_LIMIT", 5)
    monitor = ErrorMonitor(**QUIET)
    values = [-1.0, 0.0, 0.001, 0.0011, 0.5, 0.5, 30.0, 31.0, 1e9, 0.25, 0.25, 0.125]
    for seconds in values:
        monitor.observe_operation("db", "", "query", True, seconds)
    metrics = monitor.metrics
    assert not metrics.materialized
    assert len(metrics._pending_observations) <= 5
    assert list(metrics._operation_tallies) == [("db", "", "query", "ok")]
    registry = CollectorRegistry()
    Histogram("ref", "x", buckets=capture_path.OPERATION_BUCKETS, registry=registry)
    for seconds in values:
        registry._names_to_collectors["ref"].observe(max(seconds, 0.0))

    def samples(source: Any, family: str) -> list[tuple[str, str | None, float]]:
        return [
            (s.name.removeprefix(family), s.labels.get("le"), s.value)
            for m in source.collect()
            if m.name == family
            for s in m.samples
            if not s.name.endswith("_created")
        ]

    assert samples(monitor.registry, "app_operation_duration_seconds") == samples(registry, "ref")


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
