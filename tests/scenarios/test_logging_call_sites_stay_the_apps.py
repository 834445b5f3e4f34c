"""The app's logging call sites stay the app's while the monitor captures logging.

Handlers and formatters often find where a record was logged by walking up the stack from
themselves, past the frames of ``logging``: loguru's documented ``InterceptHandler``
recipe (frames whose file is ``logging.__file__``), structlog's ``CallsiteParameterAdder``
(modules named ``logging*`` / ``structlog*``), home-made "where was this logged" helpers.
When the monitor's hook wrapped ``Logger.callHandlers``, a frame of
``exporter.integrations.logging_handler`` sat between the app's call and every handler,
and those tools reported the monitor (``exporter.integrations.logging_handler:
callHandlers:237 | card declined``) instead of the app. The hook now wraps
``Logger.filter`` and has returned before any handler runs (see the module docstring of
``exporter.integrations.logging_handler``).

Each case runs in a real app, in a subprocess, without and with a started monitor: the
call sites it reports must be the app's in both runs, and the monitor must still have
captured the records (a fix that stopped capturing would pass the call-site checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPORTER_DIR = REPO / "exporter"

# The app. Each logging call carries a "# CALL <case>" marker: the test reads the expected
# line numbers from the script itself. Everything the app learns goes to stdout as JSON,
# so its stderr stays empty.
APP = '''
import inspect
import io
import json
import logging
import sys

MONITOR = None
if "with_monitor" in sys.argv:
    from exporter import ErrorMonitor

    MONITOR = ErrorMonitor(enable_resource_monitoring=False).start(serve=False)

RESULTS = {}


def isolated(name, handler, level=logging.DEBUG):
    """A logger of the app with one handler of its own (nothing reaches root)."""
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


# (a) loguru's InterceptHandler, copied from loguru's README (0.7) -----------------------
from loguru import logger


class InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        # Get corresponding Loguru level if it exists.
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno

        # Find caller from where originated the logged message.
        frame, depth = inspect.currentframe(), 0
        while frame:
            filename = frame.f_code.co_filename
            is_logging = filename == logging.__file__
            is_frozen = "importlib" in filename and "_bootstrap" in filename
            if depth > 0 and not (is_logging or is_frozen):
                break
            frame = frame.f_back
            depth += 1

        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


loguru_out = io.StringIO()
logger.remove()
logger.add(loguru_out, format="{name}:{function}:{line} | {message}")
intercepted = isolated("shop.intercepted", InterceptHandler())


def checkout():
    intercepted.error("card declined")  # CALL a


checkout()
RESULTS["a"] = loguru_out.getvalue()


# (b) structlog through its stdlib integration: CallsiteParameterAdder in the
# ProcessorFormatter, i.e. run by the handler, walking the stack from there -----------
import structlog

structlog_out = io.StringIO()
structlog_handler = logging.StreamHandler(structlog_out)
structlog_handler.setFormatter(
    structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.processors.CallsiteParameterAdder(
                [
                    structlog.processors.CallsiteParameter.FUNC_NAME,
                    structlog.processors.CallsiteParameter.LINENO,
                    structlog.processors.CallsiteParameter.MODULE,
                ]
            ),
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(sort_keys=True),
        ]
    )
)
isolated("shop.structured", structlog_handler)
structlog.configure(
    processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=False,
)
slog = structlog.get_logger("shop.structured")


def pay():
    slog.error("payment failed", order=7)  # CALL b


pay()
RESULTS["b"] = [json.loads(line) for line in structlog_out.getvalue().splitlines()]


# (c) a plain handler walking sys._getframe() past the frames of the logging module -----
class WhereHandler(logging.Handler):
    def emit(self, record):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame = frame.f_back
        RESULTS["c"] = [frame.f_globals["__name__"], frame.f_code.co_name, frame.f_lineno]
        # every frame on the stack while a handler emits
        stack = []
        frame = sys._getframe()
        while frame is not None:
            stack.append([frame.f_code.co_filename, frame.f_code.co_name])
            frame = frame.f_back
        RESULTS["stack"] = stack


located = isolated("shop.located", WhereHandler())


def locate():
    located.warning("where am I")  # CALL c


locate()


# (d) logging.Formatter's own call-site fields -------------------------------------------
formatted_out = io.StringIO()
formatted_handler = logging.StreamHandler(formatted_out)
formatted_handler.setFormatter(logging.Formatter("%(funcName)s %(lineno)d %(module)s %(message)s"))
formatted_logger = isolated("shop.formatted", formatted_handler)


def ship():
    formatted_logger.error("parcel lost")  # CALL d


ship()
RESULTS["d"] = formatted_out.getvalue()

if MONITOR is not None:
    MONITOR.flush()
    RESULTS["captured"] = sorted(
        MONITOR.get_group(g["error_id"])["report"]["error_message"] for g in MONITOR.list_groups()
    )
    RESULTS["breadcrumbs"] = [c.action for c in MONITOR.sessions.breadcrumbs()]
    MONITOR.stop()
print(json.dumps(RESULTS))
'''


def call_lines() -> dict[str, int]:
    """The line of each "# CALL <case>" marker in the app (1-based, as Python counts)."""
    lines = {}
    for number, line in enumerate(APP.splitlines(), start=1):
        if "# CALL " in line:
            lines[line.rsplit("# CALL ", 1)[1].strip()] = number
    assert sorted(lines) == ["a", "b", "c", "d"]
    return lines


def run_app(tmp_path: Path, *args: str) -> dict[str, Any]:
    script = tmp_path / "app.py"
    script.write_text(APP, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERROR_EXPORTER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """What the app reported without and with the monitor (one subprocess each)."""
    return {
        "without": run_app(tmp_path_factory.mktemp("without")),
        "with": run_app(tmp_path_factory.mktemp("with"), "with_monitor"),
    }


@pytest.mark.parametrize("run", ["without", "with"])
def test_loguru_intercept_handler_prints_the_apps_call_site(runs, run):
    assert runs[run]["a"] == f"__main__:checkout:{call_lines()['a']} | card declined\n"


@pytest.mark.parametrize("run", ["without", "with"])
def test_structlog_callsite_parameters_are_the_apps(runs, run):
    (event,) = runs[run]["b"]
    assert event == {
        "event": "payment failed",
        "order": 7,
        "func_name": "pay",
        "lineno": call_lines()["b"],
        "module": "app",
    }


@pytest.mark.parametrize("run", ["without", "with"])
def test_a_stack_walk_past_the_logging_module_finds_the_apps_frame(runs, run):
    assert runs[run]["c"] == ["__main__", "locate", call_lines()["c"]]


@pytest.mark.parametrize("run", ["without", "with"])
def test_formatter_call_site_fields_are_unchanged(runs, run):
    assert runs[run]["d"] == f"ship {call_lines()['d']} app parcel lost\n"


def test_no_monitor_frame_is_on_the_stack_while_a_handler_emits(runs):
    """Not only the first frame past ``logging``: nowhere between the app and the handler
    (nor above the app: in this app the logging call is at the top of the stack)."""
    stack = runs["with"]["stack"]
    assert [name for _, name in stack][:1] == ["emit"]
    assert stack[-1][1] == "<module>"
    under_exporter = [
        (filename, name)
        for filename, name in stack
        if Path(filename).resolve().is_relative_to(EXPORTER_DIR)
    ]
    assert under_exporter == []
    assert len(stack) == len(runs["without"]["stack"]), "the same frames as without it"


def test_the_monitor_still_captured_the_records(runs):
    """The call sites are right because the hook returned before the handlers ran, not
    because it stopped seeing records: the ERROR lines are reports, the WARNING a crumb."""
    # structlog hands the stdlib logger its event dict: the message is that dict's text
    assert runs["with"]["captured"] == [
        "card declined",
        "parcel lost",
        "{'order': 7, 'event': 'payment failed'}",
    ]
    assert "where am I" in runs["with"]["breadcrumbs"]
    assert "captured" not in runs["without"]
