"""Automatic capture: sys.excepthook, threading.excepthook, asyncio, logging.

Every hook chains to what was installed before it, is removed by ``stop()`` and counts
one exception object once however many paths see it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from exporter import handle_errors
from exporter.integrations.logging_handler import MonitorLogHandler


def total(monitor: Any) -> int:
    return int(monitor.get_statistics()["total_errors"])


def only_report(monitor: Any) -> dict[str, Any]:
    monitor.flush()
    groups = monitor.list_groups()
    assert len(groups) == 1, groups
    group = monitor.get_group(groups[0]["error_id"])
    assert group is not None
    return group["report"]


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.fixture
def saved_excepthooks() -> Iterator[None]:
    before_sys, before_threading = sys.excepthook, threading.excepthook
    yield
    sys.excepthook, threading.excepthook = before_sys, before_threading


# -- sys.excepthook ----------------------------------------------------------------------------


def test_sys_excepthook_records_chains_and_is_restored(make_monitor, saved_excepthooks):
    seen: list[BaseException] = []

    def previous(exc_type, exc, tb):
        seen.append(exc)

    sys.excepthook = previous
    monitor = make_monitor(capture_sys_excepthook=True)
    assert sys.excepthook is not previous

    error = raised(RuntimeError("boom in main"))
    sys.excepthook(type(error), error, error.__traceback__)

    assert seen == [error], "the previous hook must still be called"
    assert total(monitor) == 1
    report = only_report(monitor)
    assert report["mechanism"] == "excepthook"
    assert report["handled"] is False
    assert report["error_type"] == "RuntimeError"

    monitor.stop()
    assert sys.excepthook is previous


def test_sys_excepthook_replaced_by_someone_else_becomes_pass_through(
    make_monitor, saved_excepthooks
):
    calls: list[str] = []

    def original(exc_type, exc, tb):
        calls.append("original")

    sys.excepthook = original
    monitor = make_monitor(capture_sys_excepthook=True)
    ours = sys.excepthook

    def theirs(exc_type, exc, tb):
        calls.append("theirs")
        ours(exc_type, exc, tb)

    sys.excepthook = theirs
    monitor.stop()
    assert sys.excepthook is theirs, "stop() must not clobber a hook installed after ours"

    error = raised(ValueError("after stop"))
    sys.excepthook(type(error), error, error.__traceback__)
    assert calls == ["theirs", "original"]
    assert total(monitor) == 0


def test_two_monitors_stack_and_unstack_in_order(make_monitor, saved_excepthooks):
    def original(exc_type, exc, tb):
        pass

    sys.excepthook = original
    first = make_monitor(capture_sys_excepthook=True)
    second = make_monitor(capture_sys_excepthook=True)
    error = raised(KeyError("both"))
    sys.excepthook(type(error), error, error.__traceback__)
    assert total(first) == 1
    assert total(second) == 1
    second.stop()
    first.stop()
    assert sys.excepthook is original


def test_keyboard_interrupt_and_clean_system_exit_are_not_errors(make_monitor, saved_excepthooks):
    passed_on: list[type] = []
    sys.excepthook = lambda t, e, tb: passed_on.append(t)
    monitor = make_monitor(capture_sys_excepthook=True)

    for exc in (KeyboardInterrupt(), SystemExit(0), SystemExit(None), SystemExit()):
        error = raised(exc)
        sys.excepthook(type(error), error, error.__traceback__)
        assert monitor.record_error(error) is None

    assert total(monitor) == 0
    assert passed_on == [KeyboardInterrupt, SystemExit, SystemExit, SystemExit]

    failing_exit = raised(SystemExit(3))
    assert monitor.record_error(failing_exit) is not None
    assert total(monitor) == 1


def test_uncaught_exception_in_main_thread_subprocess():
    script = textwrap.dedent(
        """
        import json, sys
        from exporter import ErrorMonitor

        monitor = ErrorMonitor(capture_threading=False, capture_logging=False,
                               capture_asyncio=False, enable_resource_monitoring=False)

        def report_then_default(exc_type, exc, tb):
            monitor.flush(10)
            group = monitor.list_groups()[0]
            report = monitor.get_group(group["error_id"])["report"]
            print(json.dumps({
                "total": monitor.get_statistics()["total_errors"],
                "type": report["error_type"],
                "mechanism": report["mechanism"],
                "handled": report["handled"],
                "function": report["function_name"],
            }), flush=True)
            sys.__excepthook__(exc_type, exc, tb)

        sys.excepthook = report_then_default
        monitor.start()

        def load_tune():
            raise LookupError("no tune for ECU 7")

        load_tune()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "LookupError: no tune for ECU 7" in done.stderr  # the default hook still ran
    line = done.stdout.strip().splitlines()[-1]
    assert json.loads(line) == {
        "total": 1,
        "type": "LookupError",
        "mechanism": "excepthook",
        "handled": False,
        "function": "load_tune",
    }


# -- threading.excepthook --------------------------------------------------------------------


def test_threading_excepthook_records_chains_and_is_restored(make_monitor, saved_excepthooks):
    forwarded: list[str] = []

    def previous(args):
        forwarded.append(args.thread.name)

    threading.excepthook = previous
    monitor = make_monitor(capture_threading=True)

    def worker():
        raise ConnectionError("CAN bus lost")

    thread = threading.Thread(target=worker, name="can-reader")
    thread.start()
    thread.join()

    assert forwarded == ["can-reader"]
    assert total(monitor) == 1
    report = only_report(monitor)
    assert report["mechanism"] == "threading"
    assert report["handled"] is False
    assert report["context"] == {"thread": "can-reader"}
    assert report["function_name"].endswith("worker")

    monitor.stop()
    assert threading.excepthook is previous


def test_system_exit_in_thread_is_not_an_error(make_monitor, saved_excepthooks):
    forwarded: list[BaseException] = []
    threading.excepthook = lambda args: forwarded.append(args.exc_value)
    monitor = make_monitor(capture_threading=True)

    def quits():
        raise SystemExit(0)

    thread = threading.Thread(target=quits)
    thread.start()
    thread.join()
    assert total(monitor) == 0
    assert [type(e) for e in forwarded] == [SystemExit]


# -- asyncio ----------------------------------------------------------------------------------


def test_instrument_loop_captures_callback_errors_and_chains(monitor):
    chained: list[str] = []

    async def main() -> Any:
        loop = asyncio.get_running_loop()

        def previous(loop, context):
            chained.append(context["message"])

        loop.set_exception_handler(previous)
        monitor.instrument_loop()
        monitor.instrument_loop()  # idempotent

        def callback():
            raise ZeroDivisionError("rpm / 0")

        loop.call_soon(callback)
        await asyncio.sleep(0.01)
        monitor.stop()
        return loop.get_exception_handler() is previous

    restored = asyncio.run(main())
    assert len(chained) == 1, "the loop's previous handler must be called once"
    assert total(monitor) == 1
    report = only_report(monitor)
    assert report["mechanism"] == "asyncio"
    assert report["error_type"] == "ZeroDivisionError"
    assert report["handled"] is False
    assert restored, "stop() must restore the loop's previous exception handler"


def test_start_inside_a_running_loop_instruments_it(make_monitor):
    async def main() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        monitor = make_monitor(capture_asyncio=True)
        assert loop.get_exception_handler() is not None

        async def fails():
            raise TimeoutError("ECU did not answer")

        task = loop.create_task(fails())
        await asyncio.sleep(0.01)
        assert task.done()
        # Nobody retrieves the exception: the loop's handler hears about it when the task
        # is collected.
        del task
        gc.collect()
        count = total(monitor)
        monitor.stop()
        return count, loop.get_exception_handler() is None

    quiet = logging.getLogger("asyncio")
    old = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the default handler, chained after ours, logs it
    try:
        count, restored = asyncio.run(main())
    finally:
        quiet.setLevel(old)
    assert count == 1
    assert restored


# -- logging ----------------------------------------------------------------------------------


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("racing_tuner.ecu")
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = True
    yield logger
    logger.setLevel(old_level)
    logger.propagate = old_propagate


def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, MonitorLogHandler)]


def test_logging_error_with_exc_info_becomes_a_report(make_monitor, app_logger):
    root_handlers = list(logging.getLogger().handlers)
    dispatch = logging.Logger.filter
    monitor = make_monitor(capture_logging=True)
    assert our_handlers() == [] and logging.getLogger().handlers == root_handlers
    assert logging.Logger.filter is not dispatch  # hooked where a logger accepts a record
    try:
        {}["ecu_type"]
    except KeyError:
        app_logger.exception("could not read %s", "tune.json", extra={"component": "ECUControl"})
    assert total(monitor) == 1
    report = only_report(monitor)
    assert report["mechanism"] == "logging"
    assert report["component"] == "ECUControl"
    assert report["context"] == {
        "logger": "racing_tuner.ecu",
        "log_message": "could not read tune.json",
    }
    monitor.stop()
    assert logging.Logger.filter is dispatch
    assert logging.getLogger().handlers == root_handlers


def test_logging_critical_sets_critical_severity(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)
    try:
        raise ValueError("bad checksum")
    except ValueError:
        app_logger.critical("fatal", exc_info=True)
    assert monitor.get_statistics()["errors_by_severity"]["critical"] == 1


def test_lower_levels_become_breadcrumbs(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True, capture_log_messages=False)
    app_logger.debug("below the breadcrumb level")
    app_logger.info("loaded %s", "tune.json")
    app_logger.warning("boost high")
    app_logger.error("no exception attached")  # a breadcrumb with capture_log_messages off
    assert total(monitor) == 0
    try:
        raise RuntimeError("now it fails")
    except RuntimeError as exc:
        monitor.record_error(exc)
    crumbs = only_report(monitor)["breadcrumbs"]
    assert [(c["action"], c["level"], c["category"]) for c in crumbs] == [
        ("loaded tune.json", "info", "log:racing_tuner.ecu"),
        ("boost high", "warning", "log:racing_tuner.ecu"),
        ("no exception attached", "error", "log:racing_tuner.ecu"),
    ]


def test_errors_logged_without_exception_are_reports(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)
    app_logger.warning("boost high")
    app_logger.error("no exception attached")
    assert total(monitor) == 1
    report = only_report(monitor)
    assert report["error_type"] == "LoggedError"
    assert [c["action"] for c in report["breadcrumbs"]] == ["boost high"]


def test_breadcrumb_level_is_configurable(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True, logging_breadcrumb_level="WARNING")
    app_logger.info("not kept")
    app_logger.warning("kept")
    try:
        raise RuntimeError("x")
    except RuntimeError as exc:
        monitor.record_error(exc)
    assert [c["action"] for c in only_report(monitor)["breadcrumbs"]] == ["kept"]


def test_own_loggers_are_ignored(make_monitor):
    monitor = make_monitor(capture_logging=True)
    own = logging.getLogger("exporter.pipeline.background_queue")
    own.setLevel(logging.DEBUG)
    try:
        try:
            raise RuntimeError("inside the monitor")
        except RuntimeError:
            own.exception("internal")
            logging.getLogger("exporter").error("top", exc_info=True)
        own.info("a breadcrumb that must not appear")
    finally:
        own.setLevel(logging.NOTSET)
    assert total(monitor) == 0
    assert monitor.sessions.breadcrumbs() == ()


def test_logger_named_like_exporter_but_not_ours_is_captured(make_monitor):
    monitor = make_monitor(capture_logging=True)
    try:
        raise RuntimeError("from exporters_app")
    except RuntimeError:
        logging.getLogger("exporters_app").exception("failed")
    assert total(monitor) == 1


# -- one exception, many paths ----------------------------------------------------------------


def test_same_exception_via_decorator_logger_and_excepthook_is_counted_once(
    make_monitor, app_logger, saved_excepthooks
):
    sys.excepthook = lambda t, e, tb: None
    monitor = make_monitor(capture_sys_excepthook=True, capture_logging=True)

    @handle_errors(component="CANInterface", monitor=monitor)
    def read_frame():
        raise OSError("bus off")

    try:
        read_frame()
    except OSError as exc:
        app_logger.exception("read failed")
        sys.excepthook(type(exc), exc, exc.__traceback__)
        assert monitor.record_error(exc) == monitor.record_error(exc)

    stats = monitor.get_statistics()
    assert stats["total_errors"] == 1
    assert stats["errors_by_component"] == {"CANInterface": 1}
    assert only_report(monitor)["mechanism"] == "record_error"


def test_marker_does_not_keep_the_exception_alive(monitor):
    import gc
    import weakref

    class Temporary(ValueError):
        pass

    try:
        raise Temporary("temporary")
    except ValueError as exc:
        monitor.record_error(exc)
        ref = weakref.ref(exc)
    monitor.flush()
    gc.collect()
    assert ref() is None


def test_two_monitors_each_count_the_same_exception(make_monitor):
    first, second = make_monitor(), make_monitor()
    error = raised(ValueError("seen by both"))
    first.record_error(error)
    second.record_error(error)
    first.record_error(error)
    assert total(first) == 1
    assert total(second) == 1


def test_exception_that_refuses_attributes_is_still_counted(monitor):
    class Slotted(Exception):
        __slots__ = ()

        def __setattr__(self, name, value):
            raise AttributeError("read-only")

    error = raised(Slotted("frozen"))
    assert monitor.record_error(error) is not None
    assert total(monitor) == 1


def test_stop_uninstalls_everything(make_monitor, saved_excepthooks):
    sys_before, threading_before = sys.excepthook, threading.excepthook
    handlers_before = list(logging.getLogger().handlers)
    monitor = make_monitor(
        capture_sys_excepthook=True,
        capture_threading=True,
        capture_logging=True,
        capture_asyncio=True,
    )
    assert sys.excepthook is not sys_before
    assert threading.excepthook is not threading_before
    monitor.stop()
    assert sys.excepthook is sys_before
    assert threading.excepthook is threading_before
    assert logging.getLogger().handlers == handlers_before
    assert monitor.running is False
    monitor.stop()  # idempotent
