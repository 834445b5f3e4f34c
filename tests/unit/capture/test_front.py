"""What the cheaper capture path must still guarantee.

Reports and records are formatted on first read (exporter/pipeline/deferred.py) and error counts are
lock-free counters moved into the metric children before every read
(metrics/capture_path.py): neither may
change what a reader sees, lose a count, or race with the worker.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from support.monitoring import errors_total, sample, settle

from exporter import ErrorMonitor, ErrorRecord, ErrorReport
from exporter.metrics import capture_path as metrics
from exporter.pipeline.deferred import DeferredRecord, DeferredReport


def _raise(value: str) -> None:
    raise ValueError(f"bad value {value}")


def _record(monitor: ErrorMonitor, value: str = "x", **kwargs: object) -> str | None:
    try:
        _raise(value)
    except ValueError as exc:
        return monitor.record_error(exc, **kwargs)  # type: ignore[arg-type]
    return None


def test_deferred_fields_read_directly_are_formatted(monitor):
    """Attribute reads, not only to_dict(), format the deferred fields (a dataclass default
    on the class must not hide them)."""
    error_id = _record(monitor, "1", context={"order": 7})
    settle(monitor)
    group = monitor.store.groups[error_id]
    report, record = group.report, group.records[-1][1]
    assert isinstance(report, DeferredReport) and isinstance(record, DeferredRecord)
    assert "_raise" in record.stack_trace and "ValueError: bad value 1" in record.stack_trace
    assert report.stack_trace == record.stack_trace
    assert report.traceback_lines == report.stack_trace.splitlines()
    assert report.function_name == "_raise"
    assert report.error_class == "ValueError"
    assert report.exception_chain == [
        {"relation": "raised", "type": "ValueError", "message": "bad value 1"}
    ]
    assert report.context == {"order": 7} and record.context == {"order": 7}
    assert report.environment["thread"] == threading.current_thread().name


def test_a_deferred_report_reads_as_a_plain_report(monitor):
    """Same JSON keys in the same order as a plain ErrorReport / ErrorRecord, same repr name,
    equal to its own plain copy."""
    error_id = _record(monitor)
    settle(monitor)
    group = monitor.store.groups[error_id]
    report, record = group.report, group.records[-1][1]
    data = report.to_dict()
    plain = ErrorReport(
        **{f.name: getattr(report, f.name) for f in dataclasses.fields(ErrorReport)}
    )
    assert list(data) == list(plain.to_dict())
    assert data == plain.to_dict()
    assert plain == report and report == plain
    assert repr(report).startswith("ErrorReport(error_id=")
    plain_record = ErrorRecord(
        **{f.name: getattr(record, f.name) for f in dataclasses.fields(ErrorRecord)}
    )
    assert list(record.to_dict()) == list(plain_record.to_dict())
    assert repr(record).startswith("ErrorRecord(error_type=")
    assert not [k for k in vars(report) if k.startswith("_")]  # nothing of the occurrence left


def test_counts_set_before_formatting_survive_it(monitor):
    """The store keeps counting on a report nobody has read yet; the first read keeps them."""
    for _ in range(5):
        error_id = _record(monitor)
    settle(monitor)
    report = monitor.store.groups[error_id].report
    assert "_occurrence" in vars(report)  # not formatted yet
    assert report.occurrence_count == 5
    assert report.to_dict()["occurrence_count"] == 5
    assert report.stack_trace  # formatted now
    assert report.occurrence_count == 5


def test_readers_and_the_worker_format_concurrently(make_monitor):
    """Many threads reading the export while errors keep coming: no reader fails, every
    record carries its own message and trace."""
    monitor = make_monitor(occurrence_budget_per_second=10**6)
    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                for record in monitor.export_data()["all_records"]:
                    assert record["stack_trace"].endswith(record["message"] + "\n")
                for group in monitor.list_groups():
                    assert group["frames"]
            except BaseException as exc:
                failures.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for i in range(3000):
        _record(monitor, str(i))
    settle(monitor)
    stop.set()
    for thread in readers:
        thread.join(30)
    assert failures == []
    records = monitor.export_data()["all_records"]
    assert len(records) > 100
    assert len({r["message"] for r in records}) == len(records)  # each its own occurrence
    assert errors_total(monitor) == 3000


def test_counts_are_exact_at_a_scrape_before_the_worker_runs(make_monitor):
    """Counted on the caller, moved into the children by the scrape itself."""
    monitor = ErrorMonitor(
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )  # never started
    for _ in range(7):
        _record(monitor, component="billing")
    name = f"{monitor.config.namespace}_errors_total"
    assert (
        sample(
            monitor,
            name,
            {
                "error_type": "ValueError",
                "component": "billing",
                "plugin": "",
                "severity": "medium",
            },
        )
        == 7
    )
    assert errors_total(monitor) == 7


def test_counts_stay_exact_while_the_counter_cache_is_emptied(make_monitor, monkeypatch):
    """Threads recording errors with ever new labels empty the child cache again and again;
    entries a caller still holds are applied after they leave it: nothing is lost."""
    monkeypatch.setattr(metrics, "_CHILD_CACHE_LIMIT", 20)
    monitor = make_monitor(label_value_limit=10_000)
    per_thread, threads = 2000, 4

    def work(index: int) -> None:
        for i in range(per_thread):
            _record(monitor, component=f"c{index}-{i % 300}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    settle(monitor)
    assert monitor.metrics.generation > 10  # the cache was emptied many times
    assert errors_total(monitor) == per_thread * threads


@pytest.mark.parametrize("severity", [None, "critical"])
def test_the_cached_severity_follows_the_arguments(monitor, severity):
    """The per-group cache serves only calls without an explicit severity or log level."""
    _record(monitor, component="shop")
    _record(monitor, component="shop", severity=severity)
    settle(monitor)
    name = f"{monitor.config.namespace}_errors_total"
    labels = {"error_type": "ValueError", "component": "shop", "plugin": ""}
    if severity is None:
        assert sample(monitor, name, {**labels, "severity": "medium"}) == 2
    else:
        assert sample(monitor, name, {**labels, "severity": "medium"}) == 1
        assert sample(monitor, name, {**labels, "severity": "critical"}) == 1


def _raise_at(site: int) -> None:
    raise ValueError(f"site {site}")


def _sites() -> list:
    """20 distinct raise sites (one line each, so 20 groups)."""
    return [
        eval(compile(f"lambda: _raise_at({i})", f"<site-{i}>", "eval"), {"_raise_at": _raise_at})
        for i in range(20)
    ]


def test_under_pressure_known_repeats_are_counted_and_new_or_urgent_errors_still_queued():
    """A backlog (the worker paused here) makes a known group's repeats count-only, even
    within its per-second budget; a new group and a critical error still get their reports,
    and every count stays exact."""
    monitor = ErrorMonitor(
        queue_size=1000,
        occurrence_budget_per_second=10**6,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    sites = _sites()
    calls = 0
    for round_ in range(30):
        for site in sites:
            try:
                site()
            except ValueError as exc:
                monitor.record_error(exc, component=f"r{round_}")
                calls += 1
    assert monitor.queue_depth == 100  # the pressure point: queue_size // 10
    try:
        raise KeyError("fresh")
    except KeyError as exc:
        fresh_id = monitor.record_error(exc)
    try:
        sites[0]()
    except ValueError as exc:
        critical_id = monitor.record_error(exc, severity="critical")
    assert monitor.queue_depth == 102
    monitor.start()
    try:
        settle(monitor)
        groups = monitor.store.groups
        assert groups[fresh_id].report.occurrence_count == 1
        assert groups[critical_id].report.severity.value == "critical"
        assert sum(g.report.occurrence_count for g in groups.values()) == calls + 2
        assert monitor.metrics.dropped_total() == calls - 100  # coalesced, counted
        assert errors_total(monitor) == calls + 2
    finally:
        monitor.stop()


def test_a_stored_occurrence_keeps_none_of_the_apps_context_objects(monitor):
    """Reports format on first read, so the stored ones keep their occurrence: it must hold
    the scrubbed copies of context and metadata, not the app's objects."""
    import gc
    import weakref

    class Request:
        def __repr__(self) -> str:
            return "<Request /checkout>"

    request, extra = Request(), Request()
    alive = [weakref.ref(request), weakref.ref(extra)]
    error_id = _record(monitor, context={"request": request}, metadata={"extra": extra})
    settle(monitor)
    del request, extra
    gc.collect()
    assert [ref() for ref in alive] == [None, None]
    report = monitor.store.groups[error_id].report
    assert "_occurrence" in vars(report)  # still deferred
    assert "/checkout" in str(report.to_dict()["context"])


def test_copies_and_pickles_of_a_deferred_report_are_plain(monitor):
    """An app's callback may copy or pickle the report it gets (to send it elsewhere)."""
    import copy
    import pickle

    error_id = _record(monitor, "7")
    settle(monitor)
    group = monitor.store.groups[error_id]
    report, record = group.report, group.records[-1][1]
    for clone in (copy.copy(report), copy.deepcopy(report), pickle.loads(pickle.dumps(report))):
        assert type(clone) is ErrorReport
        assert clone == report and clone.to_dict() == report.to_dict()
    for clone in (copy.copy(record), pickle.loads(pickle.dumps(record))):
        assert type(clone) is ErrorRecord
        assert clone.to_dict() == record.to_dict()
    changed = dataclasses.replace(report, error_message="changed")
    assert type(changed) is ErrorReport and changed.error_message == "changed"
    assert changed.stack_trace == report.stack_trace
    assert type(dataclasses.replace(record, message="m")) is ErrorRecord
