"""Every report tells the truth: each occurrence as itself, groups by raise site, storms
that bury nothing, sessions and recovery that mean what they say, async capture, fork."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.monitoring import sample, settle

from exporter import ErrorMonitor, ErrorReport


def place_order(i: int) -> None:
    raise ValueError(f"order {i} failed")


# -- every occurrence is reported as itself -------------------------------------------------


def test_callbacks_get_each_occurrence_not_the_first(monitor):
    reports: list[ErrorReport] = []
    monitor.register_error_callback(reports.append)
    for i in range(3):
        try:
            place_order(i)
        except ValueError as exc:
            monitor.record_error(
                exc,
                component=f"shop-{i}",
                context={"order": i},
                metadata={"attempt": i},
                user_id=f"u{i}",
            )
    settle(monitor)
    assert [r.error_message for r in reports] == [f"order {i} failed" for i in range(3)]
    assert [r.context for r in reports] == [{"order": i} for i in range(3)]
    assert [r.metadata for r in reports] == [{"attempt": i} for i in range(3)]
    assert [r.component for r in reports] == ["shop-0", "shop-1", "shop-2"]
    assert [r.user_id for r in reports] == ["u0", "u1", "u2"]
    assert len({r.error_id for r in reports}) == 1
    # each report's trace ends with its own message, not the first one's
    for i, report in enumerate(reports):
        assert report.stack_trace.rstrip().endswith(f"ValueError: order {i} failed")
        assert report.occurrence_count == i + 1


def test_a_critical_repeat_reaches_the_alert_callbacks(monitor):
    alerts: list[ErrorReport] = []
    monitor.register_alert_callback(alerts.append)
    for severity in ("medium", "critical", "low"):
        try:
            place_order(7)
        except ValueError as exc:
            monitor.record_error(exc, component="payments", severity=severity)
    settle(monitor)
    assert [r.severity.value for r in alerts] == ["critical"]
    [group] = monitor.list_groups()
    assert group["severity"] == "critical"  # the highest seen
    assert group["last_severity"] == "low"
    assert group["occurrence_count"] == 3


def test_the_group_lists_every_component_and_plugin_seen(monitor):
    for component, plugin in (("ui", "weather"), ("sync", "clock"), ("ui", "")):
        try:
            place_order(1)
        except ValueError as exc:
            monitor.record_error(exc, component=component, plugin=plugin)
    settle(monitor)
    [group] = monitor.list_groups()
    assert group["components"] == ["ui", "sync"]
    assert group["plugins"] == ["weather", "clock"]
    assert group["component"] == "ui"  # the latest occurrence's


def test_records_export_and_plugin_health_pair_message_and_trace(monitor):
    def fetch(city: str) -> None:
        raise ConnectionError(f"weather API down for {city}")

    for city in ("Oslo", "Lima", "Pune"):
        try:
            fetch(city)
        except ConnectionError as exc:
            monitor.record_error(exc, plugin="weather", context={"city": city})
    settle(monitor)
    records = monitor.export_data()["all_records"]
    assert [r["message"] for r in records] == [
        f"weather API down for {c}" for c in ("Oslo", "Lima", "Pune")
    ]
    for record in records:
        assert record["stack_trace"].rstrip().endswith(f"ConnectionError: {record['message']}")
        assert record["context"]["city"] in record["message"]
    last = monitor.get_plugin_health("weather")["last_error"]
    assert last["message"] == "weather API down for Pune"
    assert last["stack_trace"].rstrip().endswith("ConnectionError: weather API down for Pune")
    detail = monitor.get_group(records[0]["error_id"])
    assert [o["context"] for o in detail["occurrences"]] == [
        {"city": c} for c in ("Oslo", "Lima", "Pune")
    ]
    assert detail["report"]["error_message"] == "weather API down for Pune"


def test_chained_repeats_keep_their_own_causes(monitor):
    def load(path: str) -> None:
        try:
            open(path)  # noqa: SIM115
        except OSError as exc:
            raise RuntimeError(f"cannot load {path}") from exc

    for name in ("a.cfg", "b.cfg"):
        try:
            load(f"/nonexistent/{name}")
        except RuntimeError as exc:
            monitor.record_error(exc)
    settle(monitor)
    records = monitor.export_data()["all_records"]
    for record, name in zip(records, ("a.cfg", "b.cfg"), strict=True):
        trace = record["stack_trace"]
        assert f"'/nonexistent/{name}'" in trace  # its own cause
        assert "direct cause of the following exception" in trace
        assert trace.rstrip().endswith(f"RuntimeError: cannot load /nonexistent/{name}")


def test_a_context_dict_changed_after_recording_is_reported_as_it_was(monitor):
    context = {"step": "before"}
    try:
        place_order(1)
    except ValueError as exc:
        monitor.record_error(exc, context=context)
    context["step"] = "after"
    settle(monitor)
    assert monitor.export_data()["all_records"][0]["context"] == {"step": "before"}


# -- grouping by raise site ---------------------------------------------------------------

SHOP_V1 = """
def lookup(table, key, strict):
    if strict:
        raise KeyError(key)
    raise KeyError(key)
"""

SHOP_V2 = """
import os  # lines added above the function


def helper():
    return 1


def lookup(table, key, strict):
    # a new comment inside the function
    if strict:
        raise KeyError(key)  # a trailing comment
    raise KeyError(key)
"""


def load_module(path: Path, source: str) -> Any:
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("shop_orders", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def error_id_of(monitor: Any, func: Any, *args: Any) -> str:
    try:
        func(*args)
    except Exception as exc:
        error_id = monitor.record_error(exc)
        assert error_id is not None
        return error_id
    raise AssertionError("expected an exception")


def test_two_raise_statements_are_two_groups_and_edits_keep_both(monitor, tmp_path):
    v1 = load_module(tmp_path / "shop_orders.py", SHOP_V1)
    strict_1 = error_id_of(monitor, v1.lookup, {}, "a", True)
    loose_1 = error_id_of(monitor, v1.lookup, {}, "b", False)
    assert strict_1 != loose_1  # identical text, but the second such line of the function
    v2 = load_module(tmp_path / "shop_orders.py", SHOP_V2)
    assert error_id_of(monitor, v2.lookup, {}, "c", True) == strict_1
    assert error_id_of(monitor, v2.lookup, {}, "d", False) == loose_1


def test_two_raise_sites_in_one_function_without_source(monitor):
    namespace: dict[str, Any] = {}
    exec(
        compile(
            textwrap.dedent("""
        def parse(kind):
            if kind == "empty":
                raise ValueError("empty")
            raise ValueError("bad: " + kind)
    """),
            "<generated>",
            "exec",
        ),
        namespace,
    )
    first = error_id_of(monitor, namespace["parse"], "empty")
    second = error_id_of(monitor, namespace["parse"], "x")
    assert first != second
    assert error_id_of(monitor, namespace["parse"], "y") == second


def test_the_same_statement_groups_whatever_the_message(monitor):
    ids = {error_id_of(monitor, place_order, i) for i in range(20)}
    assert len(ids) == 1


# -- a storm of one error does not bury the others ------------------------------------------


@pytest.mark.slow
def test_a_storm_does_not_bury_the_other_errors(make_monitor, capsys):
    monitor = make_monitor()
    callbacks: list[ErrorReport] = []
    alerts: list[ErrorReport] = []
    monitor.register_error_callback(
        lambda r: callbacks.append(r) if r.error_type == "KeyError" else None
    )
    monitor.register_alert_callback(
        lambda r: alerts.append(r) if r.error_type == "KeyError" else None
    )
    stop = threading.Event()
    storm_counts = [0] * 4

    def storm(slot: int) -> None:
        while not stop.is_set():
            try:
                raise TimeoutError("upstream timed out")
            except TimeoutError as exc:
                monitor.record_error(exc, component="gateway")
            storm_counts[slot] += 1

    def rare(i: int) -> None:
        raise KeyError(f"sku-{i}")

    threads = [threading.Thread(target=storm, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    for i in range(20):
        try:
            rare(i)
        except KeyError as exc:
            monitor.record_error(exc, component="catalog", severity="critical", context={"sku": i})
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(30)
    settle(monitor)
    storm_total = sum(storm_counts)
    groups = {g["error_type"]: g for g in monitor.list_groups()}
    # exact counts, everywhere
    assert monitor.get_statistics()["total_errors"] == storm_total + 20
    assert groups["TimeoutError"]["occurrence_count"] == storm_total
    assert groups["KeyError"]["occurrence_count"] == 20
    # the rare group's occurrences all kept, all called back, all alerted, each as itself
    kept = monitor.export_data(error_type="KeyError")["all_records"]
    assert sorted(r["context"]["sku"] for r in kept) == list(range(20))
    assert sorted(r.context["sku"] for r in callbacks) == list(range(20))
    assert sorted(r.context["sku"] for r in alerts) == list(range(20))
    # the storm was coalesced at the caller, so nothing was dropped for a full queue
    coalesced = sample(monitor, "app_error_reports_dropped_total", {"reason": "coalesced"})
    assert sample(monitor, "app_error_reports_dropped_total", {"reason": "queue_full"}) == 0
    assert groups["TimeoutError"]["coalesced_occurrences"] == coalesced > 0
    with capsys.disabled():
        print(
            f"\nstorm: {storm_total} TimeoutErrors in 4 threads, {int(coalesced)} coalesced, "
            f"20/20 KeyErrors kept, called back and alerted"
        )


def test_a_storm_never_evicts_another_groups_records(make_monitor):
    monitor = make_monitor(max_records=50, occurrence_budget_per_second=10_000)
    for i in range(5):
        try:
            raise KeyError(f"rare {i}")
        except KeyError as exc:
            monitor.record_error(exc)
    for _ in range(500):
        try:
            raise TimeoutError("storm")
        except TimeoutError as exc:
            monitor.record_error(exc)
    settle(monitor)
    records = monitor.export_data()["all_records"]
    assert len(records) == 50  # the one global bound
    assert sum(r["error_type"] == "KeyError" for r in records) == 5


def test_counts_coalesced_before_the_groups_first_report_is_stored_are_kept():
    monitor = ErrorMonitor(
        occurrence_budget_per_second=2,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )
    # the worker is not started yet
    for _ in range(50):
        try:
            place_order(1)
        except ValueError as exc:
            monitor.record_error(exc, plugin="shop")
    monitor.pipeline.tick()  # the worker's upkeep runs while the first report still waits
    monitor.start()
    try:
        settle(monitor)
        [group] = monitor.list_groups()
        assert group["occurrence_count"] == 50
        assert group["coalesced_occurrences"] == 50 - len(monitor.export_data()["all_records"])
        assert monitor.get_plugin_health("shop")["total_errors"] == 50
    finally:
        monitor.stop()


def test_coalesced_repeats_of_a_group_whose_first_report_was_dropped_are_still_counted():
    monitor = ErrorMonitor(
        queue_size=1,
        occurrence_budget_per_second=2,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_logging=False,
        capture_asyncio=False,
        enable_resource_monitoring=False,
    )  # the worker is not started yet
    try:
        raise KeyError("fills the one-item queue")
    except KeyError as exc:
        monitor.record_error(exc)
    for _ in range(50):  # its first two reports find the queue full, the rest are coalesced
        try:
            place_order(1)
        except ValueError as exc:
            monitor.record_error(exc, plugin="shop")
    monitor.start()
    try:
        settle(monitor)
        dropped = {
            reason: int(sample(monitor, "app_error_reports_dropped_total", {"reason": reason}))
            for reason in ("queue_full", "coalesced")
        }
        assert dropped == {"queue_full": 2, "coalesced": 48}
        assert monitor._reports.processed + sum(dropped.values()) == 51
        assert monitor.get_statistics()["total_errors"] == 51
        assert monitor.get_plugin_health("shop")["total_errors"] == 48  # no report reached it
    finally:
        monitor.stop()


# -- sessions and recovery -----------------------------------------------------------------


def test_recording_errors_keeps_a_session_alive_and_idle_ones_end_without_a_scrape(
    make_monitor,
):
    monitor = make_monitor(session_timeout=1)
    session = monitor.start_session(user_id="driver")
    for _ in range(12):  # 3 s of errors every 0.25 s: never idle for 1 s
        try:
            place_order(1)
        except ValueError as exc:
            monitor.record_error(exc)
        time.sleep(0.25)
    assert session in monitor.sessions.active
    deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
    while session in monitor.sessions.active and time.monotonic() < deadline:
        time.sleep(0.1)  # nobody scrapes /metrics here
    assert session not in monitor.sessions.active
    assert monitor.sessions.ended["abnormal"] == 1


def test_recovery_duration_is_from_the_error_to_its_recovery(monitor):
    try:
        place_order(1)
    except ValueError as exc:
        error_id = monitor.record_error(exc, component="ECU")
    time.sleep(1.0)
    with monitor.recovery(component="ECU", error_id=error_id):
        pass
    seconds = sample(
        monitor, "app_error_recovery_duration_seconds_sum", {"component": "ECU", "plugin": ""}
    )
    assert seconds >= 1.0
    # without an error id, the block's own duration
    with monitor.recovery(component="other"):
        time.sleep(0.05)
    assert (
        sample(
            monitor, "app_error_recovery_duration_seconds_sum", {"component": "other", "plugin": ""}
        )
        >= 0.05
    )


def test_success_rate_is_null_until_something_was_attempted(monitor):
    assert monitor.get_statistics()["recovery_success_rate"] is None
    assert monitor.get_error_analysis()["recovery"]["success_rate"] is None
    monitor.record_recovery(True)
    assert monitor.get_statistics()["recovery_success_rate"] == 1.0


# -- async capture and fork --------------------------------------------------------------


def test_async_with_capture_works_like_with(monitor):
    async def main() -> None:
        async with monitor.capture(component="fetcher", operation="poll", reraise=False):
            await asyncio.sleep(0)
            raise ConnectionError("feed down")
        with pytest.raises(ConnectionError):
            async with monitor.capture(component="fetcher", operation="poll"):
                raise ConnectionError("feed down again")
        async with monitor.capture(component="fetcher", operation="poll"):
            await asyncio.sleep(0)

    asyncio.run(main())
    settle(monitor)
    assert monitor.get_statistics()["total_errors"] == 2
    ok = sample(
        monitor,
        "app_operation_duration_seconds_count",
        {"component": "fetcher", "plugin": "", "operation": "poll", "outcome": "ok"},
    )
    failed = sample(
        monitor,
        "app_operation_duration_seconds_count",
        {"component": "fetcher", "plugin": "", "operation": "poll", "outcome": "error"},
    )
    assert (ok, failed) == (1, 2)


def test_capture_lets_cancellation_through_unrecorded(monitor):
    async def main() -> None:
        task = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with monitor.capture(component="fetcher", reraise=False):
                await task

    asyncio.run(main())
    settle(monitor)
    assert monitor.get_statistics()["total_errors"] == 0


FORK_SCRIPT = textwrap.dedent(
    """
    import json, os
    from exporter import ErrorMonitor

    monitor = ErrorMonitor(serve=False, enable_resource_monitoring=False,
                           capture_logging=False).start()

    def fail(kind):
        try:
            raise kind("x")
        except kind as exc:
            monitor.record_error(exc)

    for _ in range(5):
        fail(ValueError)
    monitor.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        fail(KeyError)
        fail(KeyError)
        monitor.flush()
        stats = monitor.get_statistics()
        os.write(write, json.dumps({
            "total": stats["total_errors"], "types": stats["errors_by_type"],
            "groups": [g["error_type"] for g in monitor.list_groups()],
            "metric": monitor.registry.get_sample_value(
                "app_errors_total", {"error_type": "ValueError", "component": "",
                                     "plugin": "", "severity": "medium"}),
        }).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = json.loads(os.read(read, 65536))
    print(json.dumps({"child": child, "parent": monitor.get_statistics()["total_errors"]}))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_counts_its_own_errors_only():
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["child"]["total"] == 2
    assert out["child"]["types"] == {"KeyError": 2}
    assert out["child"]["groups"] == ["KeyError"]
    assert out["child"]["metric"] in (None, 0.0)
    assert out["parent"] == 5
