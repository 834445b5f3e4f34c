"""Logging capture leaves the app's logging alone and records what users call errors.

The monitor hooks ``logging.Logger.filter`` (chained, removed by ``stop()``) instead of
owning a handler on the root logger, so ``basicConfig()``, root handlers and levels and
Python's last-resort handler behave exactly as without it (and its hook has returned before
any handler runs: tests/scenarios/test_logging_call_sites_stay_the_apps.py). ERROR records without
an
exception become ``LoggedError`` reports grouped by logger name and message template.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.monitoring import internal_errors

from exporter import ErrorMonitor
from exporter.config import ConfigError, MonitorConfig, load_config
from exporter.integrations.logging_handler import LoggedError, LoggingIntegration, MonitorLogHandler

REPO = Path(__file__).resolve().parents[3]
# Logger has no filter of its own: it inherits Filterer.filter (None here)
ORIGINAL_LOGGER_FILTER = logging.Logger.__dict__.get("filter")
ORIGINAL_CALL_HANDLERS = logging.Logger.__dict__["callHandlers"]


# -- helpers -----------------------------------------------------------------------------------


def run_app(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` as a script; ``with_monitor`` in its argv starts a monitor first."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            MONITOR = None
            if "with_monitor" in sys.argv:
                from exporter import ErrorMonitor
                MONITOR = ErrorMonitor(enable_resource_monitoring=False).start()

            def report_groups():
                # on stdout, so stderr stays exactly what the app's logging printed
                if MONITOR is not None:
                    MONITOR.flush()
                    groups = MONITOR.list_groups()
                    reports = [MONITOR.get_group(g["error_id"])["report"] for g in groups]
                    print(json.dumps([
                        {"error_type": r["error_type"], "mechanism": r["mechanism"],
                         "message": r["error_message"], "count": g["occurrence_count"]}
                        for g, r in zip(groups, reports)
                    ]))
                    MONITOR.stop()
            """
        )
        + textwrap.dedent(body)
        + "\nreport_groups()\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERROR_EXPORTER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done


def with_and_without(tmp_path: Path, body: str) -> tuple[str, str, list[dict[str, Any]]]:
    """stderr without the monitor, stderr with it, and what the monitor captured."""
    plain = run_app(tmp_path, body)
    monitored = run_app(tmp_path, body, "with_monitor")
    assert plain.stdout == ""
    return plain.stderr, monitored.stderr, json.loads(monitored.stdout)


def groups_of(monitor: ErrorMonitor) -> list[dict[str, Any]]:
    monitor.flush()
    return monitor.list_groups()


def report_of(monitor: ErrorMonitor, group: dict[str, Any]) -> dict[str, Any]:
    found = monitor.get_group(group["error_id"])
    assert found is not None
    return dict(found["report"])


def only_report(monitor: ErrorMonitor) -> dict[str, Any]:
    groups = groups_of(monitor)
    assert len(groups) == 1, groups
    return report_of(monitor, groups[0])


def crumbs(monitor: ErrorMonitor) -> list[tuple[str, str, str]]:
    return [(c.action, c.level, c.category) for c in monitor.sessions.breadcrumbs()]


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """An app logger that lets everything through (the app configured DEBUG)."""
    logger = logging.getLogger("shop.payments")
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(old_level)
    logger.propagate = old_propagate


@contextlib.contextmanager
def only_the_monitor_formats(logger: logging.Logger) -> Iterator[logging.Logger]:
    """Records of ``logger`` reach no formatting handler (so the app's own handlers do not
    trip over a bad record). Entered inside the test body: pytest attaches its capture
    handler to loggers that are non-propagating when a test phase starts."""
    null = logging.NullHandler()
    logger.propagate = False
    logger.addHandler(null)
    try:
        yield logger
    finally:
        logger.removeHandler(null)
        logger.propagate = True


def logger_filter() -> Any:
    """What ``Logger`` itself defines as ``filter`` (None: it inherits Filterer's)."""
    return logging.Logger.__dict__.get("filter")


@pytest.fixture
def restore_logger_filter() -> Iterator[None]:
    before = logger_filter()
    yield
    if before is not None:
        logging.Logger.filter = before  # type: ignore[method-assign]
    elif "filter" in logging.Logger.__dict__:
        del logging.Logger.filter


def logging_state() -> tuple[Any, ...]:
    root = logging.getLogger()
    return (
        list(root.handlers),
        root.level,
        logging.lastResort,
        logger_filter(),
        list(logging.getLogger("exporter").handlers),
    )


# -- (1)(2)(3) the app's logging prints what it printed without the monitor -------------------


def test_basicconfig_after_start_prints_exactly_as_without_the_monitor(tmp_path):
    body = """
        import logging
        logging.basicConfig(level=logging.INFO,
                            format="%(levelname)s|%(name)s|%(funcName)s|%(message)s")
        log = logging.getLogger("shop.checkout")
        log.debug("not shown: below INFO")
        log.info("cart has %d items", 3)
        log.warning("slow payment provider")
        log.error("payment failed for %s", "order-1")
        try:
            {}["sku"]
        except KeyError:
            log.exception("lookup failed")
        logging.getLogger().info("root line")
    """
    plain, monitored, captured = with_and_without(tmp_path, body)
    assert monitored == plain
    assert "INFO|shop.checkout|<module>|cart has 3 items" in plain
    assert "ERROR|shop.checkout|<module>|payment failed for order-1" in plain
    assert "INFO|root|<module>|root line" in plain
    assert "not shown" not in plain
    assert sorted((g["error_type"], g["mechanism"]) for g in captured) == [
        ("KeyError", "logging"),
        ("LoggedError", "logging"),
    ]


def test_app_without_logging_setup_keeps_last_resort_and_module_level_calls(tmp_path):
    body = """
        import logging
        logging.getLogger("shop").warning("disk almost full")  # Python's last resort prints it
        logging.getLogger("shop").info("not printed: root is at WARNING")
        logging.warning("module-level call configures root itself")
        logging.getLogger("shop").error("after basicConfig: %s", "formatted")
    """
    plain, monitored, captured = with_and_without(tmp_path, body)
    assert monitored == plain
    assert plain.splitlines() == [
        "disk almost full",
        "WARNING:root:module-level call configures root itself",
        "ERROR:shop:after basicConfig: formatted",
    ]
    assert [g["error_type"] for g in captured] == ["LoggedError"]


def test_asyncio_task_exception_never_retrieved_still_printed_and_captured(tmp_path):
    body = """
        import asyncio, gc

        async def fails():
            raise ValueError("nobody awaited me")

        async def main():
            task = asyncio.get_running_loop().create_task(fails())
            await asyncio.sleep(0.01)
            del task
            gc.collect()

        asyncio.run(main())
    """
    plain, monitored, captured = with_and_without(tmp_path, body)
    for stderr in (plain, monitored):
        assert "Task exception was never retrieved" in stderr
        assert "ValueError: nobody awaited me" in stderr
    assert monitored == plain
    assert [(g["error_type"], g["mechanism"], g["message"]) for g in captured] == [
        ("ValueError", "logging", "nobody awaited me")
    ]


def test_library_logger_prints_nothing_unless_the_app_configures_logging(tmp_path):
    """The logging HOWTO for libraries: a NullHandler on ``exporter``, no last resort."""
    body = """
        import logging
        logging.getLogger("exporter.pipeline.background_queue").warning("internal line")
        if "configure" in sys.argv:
            logging.basicConfig(format="%(name)s %(message)s")
            logging.getLogger("exporter.pipeline.background_queue").warning("now the app wants it")
    """
    quiet = run_app(tmp_path, body, "with_monitor")
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout) == []
    configured = run_app(tmp_path, body, "with_monitor", "configure")
    assert configured.stderr == "exporter.pipeline.background_queue now the app wants it\n"
    assert json.loads(configured.stdout) == []


# -- (4) install and uninstall leave logging as it was ------------------------------------------


def test_root_handlers_level_and_logger_filter_are_untouched_and_restored(make_monitor):
    before = logging_state()
    monitor = make_monitor(capture_logging=True)
    started = logging_state()
    assert started[:3] == before[:3], "root handlers, root level and lastResort unchanged"
    assert started[3] is not before[3], "Logger.filter is wrapped"
    assert "callHandlers" not in logging.Logger.__dict__ or (
        logging.Logger.__dict__["callHandlers"] is ORIGINAL_CALL_HANDLERS
    ), "callHandlers is not wrapped: handlers run beneath no monitor frame"
    assert started[4] == before[4]
    monitor.stop()
    assert logging_state() == before


@pytest.mark.parametrize("stop_order", ["first_started_first", "last_started_first"])
def test_two_monitors_chain_and_stop_in_either_order(make_monitor, app_logger, stop_order):
    original = logger_filter()
    first = make_monitor(capture_logging=True)
    second = make_monitor(capture_logging=True)
    app_logger.error("seen by %s", "both")
    assert [g["error_type"] for g in groups_of(first)] == ["LoggedError"]
    assert [g["error_type"] for g in groups_of(second)] == ["LoggedError"]

    stopped, running = (first, second) if stop_order == "first_started_first" else (second, first)
    stopped.stop()
    app_logger.error("after one stop")
    assert sum(g["occurrence_count"] for g in groups_of(stopped)) == 1
    assert sum(g["occurrence_count"] for g in groups_of(running)) == 2
    running.stop()
    assert logger_filter() is original


def test_wrapper_installed_over_ours_is_kept_and_ours_passes_through(
    make_monitor, app_logger, caplog, restore_logger_filter
):
    monitor = make_monitor(capture_logging=True)
    ours = logger_filter()
    seen_by_other: list[str] = []

    def other_sdk(logger: logging.Logger, record: logging.LogRecord) -> Any:
        seen_by_other.append(record.getMessage())
        return ours(logger, record)

    logging.Logger.filter = other_sdk  # type: ignore[method-assign]
    monitor.stop()
    assert logger_filter() is other_sdk
    with caplog.at_level(logging.ERROR, logger="shop.payments"):
        app_logger.error("still printed")
    assert seen_by_other == ["still printed"]
    assert [r.getMessage() for r in caplog.records] == ["still printed"]
    assert groups_of(monitor) == []


def test_uninstall_twice_and_integration_alone(app_logger, restore_logger_filter):
    monitor = ErrorMonitor(
        capture_logging=False,
        enable_resource_monitoring=False,
        capture_sys_excepthook=False,
        capture_threading=False,
        capture_asyncio=False,
    ).start()
    try:
        integration = LoggingIntegration()
        integration.install(monitor)
        assert integration.installed
        integration.uninstall()
        integration.uninstall()
        assert not integration.installed
        assert logger_filter() is ORIGINAL_LOGGER_FILTER
        assert "filter" not in logging.Logger.__dict__, "inherited again, as before"
    finally:
        monitor.stop()


# -- (5)(6)(7) what becomes a report ----------------------------------------------------------


def test_logged_error_without_exception_groups_by_logger_and_template(make_monitor, app_logger):
    """Needs the monitor to sign a traceback-less exception by __error_exporter_group_key__."""
    monitor = make_monitor(capture_logging=True)
    for order in ("alice-order", "bob-order", "carol-order"):
        app_logger.error("payment failed for %s", order, extra={"component": "Checkout"})
    groups = groups_of(monitor)
    assert len(groups) == 1, groups
    group = groups[0]
    assert group["error_type"] == "LoggedError"
    assert group["occurrence_count"] == 3
    assert monitor.get_statistics()["total_errors"] == 3
    report = report_of(monitor, group)
    assert report["mechanism"] == "logging"
    assert report["component"] == "Checkout"
    assert report["error_message"].startswith("payment failed for ")
    context = report["context"]
    assert context["logger"] == "shop.payments"
    assert context["log_template"] == "payment failed for %s"
    assert context["log_message"] == report["error_message"]
    assert "order" in context["log_args"]
    assert context["funcName"] == sys._getframe().f_code.co_name
    assert context["pathname"] == __file__
    assert isinstance(context["lineno"], int)

    app_logger.error("refund failed for %s", "alice-order")  # another template
    logging.getLogger("shop.refunds").error("payment failed for %s", "x")  # another logger
    assert len(groups_of(monitor)) == 3


def test_logged_error_carries_its_group_key():
    error = LoggedError("payment failed for 7", "shop.payments", "payment failed for %s")
    assert isinstance(error, Exception)
    assert error.logger_name == "shop.payments"
    assert error.template == "payment failed for %s"
    assert error.__error_exporter_group_key__ == "shop.payments\x1fpayment failed for %s"  # type: ignore[attr-defined]
    from exporter.capture.signature import GROUP_KEY_ATTRIBUTE  # the name the monitor signs by

    assert getattr(error, GROUP_KEY_ATTRIBUTE) == error.__error_exporter_group_key__  # type: ignore[attr-defined]


def test_error_with_exc_info_is_recorded_with_its_exception_type(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)
    try:
        raise KeyError("ecu_type")
    except KeyError:
        app_logger.error(
            "could not read %s",
            "tune.json",
            exc_info=True,
            extra={"component": "ECU", "plugin": "reader", "operation": "load"},
        )
    report = only_report(monitor)
    assert report["error_type"] == "KeyError"
    assert report["mechanism"] == "logging"
    assert (report["component"], report["plugin"], report["operation"]) == ("ECU", "reader", "load")
    assert report["context"] == {
        "logger": "shop.payments",
        "log_message": "could not read tune.json",
    }


def test_exception_call_outside_an_except_block_is_a_logged_error(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)
    app_logger.exception("no exception is being handled")  # exc_info == (None, None, None)
    assert only_report(monitor)["error_type"] == "LoggedError"


def test_critical_log_message_is_critical(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)
    app_logger.critical("database unreachable")
    assert monitor.get_statistics()["errors_by_severity"]["critical"] == 1


def test_option_off_keeps_messages_as_breadcrumbs(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True, capture_log_messages=False)
    app_logger.error("payment failed for %s", "order-1")
    assert groups_of(monitor) == []
    assert crumbs(monitor) == [("payment failed for order-1", "error", "log:shop.payments")]
    try:
        raise RuntimeError("with an exception it is still a report")
    except RuntimeError:
        app_logger.exception("failed")
    assert [g["error_type"] for g in groups_of(monitor)] == ["RuntimeError"]


def test_capture_log_messages_option_default_env_and_validation():
    assert MonitorConfig().capture_log_messages is True
    env = {"ERROR_EXPORTER_CAPTURE_LOG_MESSAGES": "false"}
    assert load_config(environ=env).capture_log_messages is False
    with pytest.raises(ConfigError, match="capture_log_messages: must be true or false"):
        load_config(environ={"ERROR_EXPORTER_CAPTURE_LOG_MESSAGES": "sometimes"})


def test_logger_without_propagation_is_still_seen(make_monitor, app_logger):
    app_logger.propagate = False  # its records never reach root: a root handler missed them
    monitor = make_monitor(capture_logging=True)
    app_logger.error("isolated logger failed")
    assert only_report(monitor)["error_type"] == "LoggedError"


# -- (8) breadcrumbs: only what the app's logger levels let through ----------------------------


def test_breadcrumb_default_level_matches_the_configuration_reference():
    assert MonitorConfig().logging_breadcrumb_level == "INFO"
    reference = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = reference.splitlines()
    row = next(line for line in rows if line.startswith("| `logging_breadcrumb_level`"))
    assert "`'INFO'`" in row


def test_info_records_become_breadcrumbs_when_the_app_logs_at_info(make_monitor, app_logger):
    app_logger.setLevel(logging.INFO)
    monitor = make_monitor(capture_logging=True)
    app_logger.debug("filtered by the logger's level: nobody sees it")
    app_logger.info("cart has %d items", 2)
    app_logger.warning("slow provider")
    assert crumbs(monitor) == [
        ("cart has 2 items", "info", "log:shop.payments"),
        ("slow provider", "warning", "log:shop.payments"),
    ]


def test_records_below_a_loggers_level_are_never_seen(make_monitor, app_logger):
    app_logger.setLevel(logging.WARNING)
    monitor = make_monitor(capture_logging=True, logging_breadcrumb_level="DEBUG")
    app_logger.debug("debug")
    app_logger.info("info")
    app_logger.warning("warning")
    assert [c[0] for c in crumbs(monitor)] == ["warning"]


def test_breadcrumb_level_above_info(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True, logging_breadcrumb_level="WARNING")
    app_logger.info("not kept")
    app_logger.warning("kept")
    assert [c[0] for c in crumbs(monitor)] == ["kept"]


# -- (9) the library's own logger ---------------------------------------------------------------


def test_library_logger_has_a_null_handler_and_does_not_loop(make_monitor, caplog):
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("exporter").handlers)
    monitor = make_monitor(capture_logging=True)
    own = logging.getLogger("exporter.pipeline.background_queue")
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        own.error("internal error line")
        own.info("internal info line")
        try:
            raise RuntimeError("inside the monitor")
        except RuntimeError:
            logging.getLogger("exporter").exception("top")
    assert groups_of(monitor) == []
    assert crumbs(monitor) == []
    # ... and still propagate to whatever the app configured (here: pytest's capture)
    assert [r.getMessage() for r in caplog.records] == [
        "internal error line",
        "internal info line",
        "top",
    ]


def test_record_logged_while_the_monitor_handles_one_does_not_recurse(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)
    nested: list[str] = []

    class Chatty:
        def __str__(self) -> str:
            nested.append("formatted")
            app_logger.error("logged from __str__")  # re-enters logging during our offer
            return "chatty"

    with only_the_monitor_formats(app_logger):
        app_logger.error("order %s", Chatty())
    assert nested == ["formatted"], "only the monitor formatted the record, once"
    report = only_report(monitor)  # the nested record reached the app's handlers, not us
    assert report["context"]["log_template"] == "order %s"
    assert report["error_message"] == "order chatty"
    assert internal_errors(monitor) == 0


# -- (10) hostile records -----------------------------------------------------------------------


def test_message_whose_formatting_raises(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)

    class Broken:
        def __str__(self) -> str:
            raise ValueError("cannot print")

    with only_the_monitor_formats(app_logger):
        app_logger.error("needs two %s %s", "only-one")  # TypeError inside getMessage()
        app_logger.error("broken %s", Broken())
        app_logger.warning("crumb %d", "not a number")
    reports = {
        r["context"]["log_template"]: r for r in (report_of(monitor, g) for g in groups_of(monitor))
    }
    assert set(reports) == {"needs two %s %s", "broken %s"}
    assert reports["needs two %s %s"]["error_message"].startswith("needs two %s %s (arguments:")
    assert "only-one" in reports["needs two %s %s"]["context"]["log_args"]
    assert reports["broken %s"]["error_type"] == "LoggedError"
    assert crumbs(monitor)[-1][0].startswith("crumb %d (arguments:")
    assert internal_errors(monitor) == 0  # handled, not failures


def test_huge_message_is_capped(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True, max_message_length=1000)
    with only_the_monitor_formats(app_logger):
        app_logger.error("x" * 1_000_000)
        app_logger.error("%s", "y" * 1_000_000)
        app_logger.info("z" * 1_000_000)
    reports = [report_of(monitor, g) for g in groups_of(monitor)]
    assert len(reports) == 2
    for report in reports:
        assert len(report["error_message"]) <= 1000
        assert "truncated" in report["error_message"]
        assert len(report["context"]["log_template"]) <= 2048
    assert len(crumbs(monitor)[-1][0]) <= 1100


def test_non_string_messages(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with only_the_monitor_formats(app_logger):
        app_logger.error({"event": "payment_failed", "order": 1})
        app_logger.error({"event": "payment_failed", "order": 2})
        app_logger.error(Unprintable())
        app_logger.error(42)
    groups = groups_of(monitor)
    templates = sorted(report_of(monitor, g)["context"]["log_template"] for g in groups)
    assert templates == ["Unprintable", "dict", "int"]
    assert sum(g["occurrence_count"] for g in groups) == 4
    assert internal_errors(monitor) == 0


def test_hand_made_records_do_not_break_the_app(make_monitor, app_logger):
    monitor = make_monitor(capture_logging=True)
    odd = logging.LogRecord("shop.payments", logging.ERROR, __file__, 1, "odd", None, None)
    odd.exc_info = "not a tuple"  # type: ignore[assignment]

    class BadName:
        def __str__(self) -> str:
            raise RuntimeError("no name")

    nameless = logging.LogRecord(BadName(), logging.ERROR, __file__, 1, "nameless", None, None)  # type: ignore[arg-type]
    with only_the_monitor_formats(app_logger):
        app_logger.handle(odd)
        app_logger.handle(nameless)
    assert [g["error_type"] for g in groups_of(monitor)] == ["LoggedError", "LoggedError"]
    assert internal_errors(monitor) == 0


def test_a_failing_monitor_never_raises_into_the_logging_call(
    make_monitor, app_logger, caplog, monkeypatch
):
    monitor = make_monitor(capture_logging=True)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("monitor bug")

    monkeypatch.setattr(monitor, "capture_exception", broken)
    monkeypatch.setattr(monitor, "add_breadcrumb", broken)
    with caplog.at_level(logging.INFO, logger="shop.payments"):
        app_logger.error("still logged")
        app_logger.info("also logged")
    app_lines = [r.getMessage() for r in caplog.records if r.name == "shop.payments"]
    assert app_lines == ["still logged", "also logged"]
    assert internal_errors(monitor) == 2


# -- the explicit handler, for records that do not pass through Logger.filter ---------------------


def test_explicit_handler_records_only_without_the_hook(make_monitor, app_logger):
    hooked = make_monitor(capture_logging=True)
    plain = make_monitor(capture_logging=False)
    handlers = [MonitorLogHandler(hooked), MonitorLogHandler(plain)]
    for handler in handlers:
        app_logger.addHandler(handler)
    try:
        app_logger.error("payment failed for %s", "order-9")
    finally:
        for handler in handlers:
            app_logger.removeHandler(handler)
    assert sum(g["occurrence_count"] for g in groups_of(hooked)) == 1, "not counted twice"
    assert sum(g["occurrence_count"] for g in groups_of(plain)) == 1
