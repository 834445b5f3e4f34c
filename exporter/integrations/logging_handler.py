"""``logging``: ERROR and above become reports, lower levels breadcrumbs.

How records are seen, and why
-----------------------------
The monitor does not own a handler on the root logger. A handler there changes the app's
logging: ``logging.basicConfig()`` does nothing once root has a handler (so an app that
configures logging after ``start()`` printed nothing at all), and Python's last-resort
handler (which prints WARNING and above when nobody configured logging, e.g. asyncio's
"Task exception was never retrieved") is only used when no handler is found.

Nor may the monitor stand between the app's logging call and its handlers. Handlers and
formatters find where a record was logged by walking up the stack from themselves past the
frames of ``logging`` (structlog's ``CallsiteParameterAdder`` skips modules named
``logging*``, loguru's documented ``InterceptHandler`` skips frames of
``logging.__file__``, many "where was this logged" helpers do the same): a monitor frame
in between is taken for the app's call site. So the monitor does not wrap
``Logger.callHandlers`` (or ``handle``), whose wrapper is on the stack while every
handler runs.

Instead ``install()`` wraps ``logging.Logger.filter``. ``Logger.handle()`` calls it once
per record, on the logger the record was logged on, after its ``disabled`` check and
before ``callHandlers``: it is the logger's own filters. The wrapper calls the previous
``filter`` unchanged and, when the record passed (on Python 3.12+ a filter may return a
replacement ``LogRecord``, which is what ``handle()`` dispatches: that one is offered),
offers it to the monitor and returns the previous result. It has returned before any
handler or formatter runs, so they see the same stack as without the monitor, and what
the app's logging prints, and how it is configured (root handlers, levels,
``basicConfig``, the last-resort handler), is exactly what it would be without the
monitor. So the monitor sees every record that passes its logger's level and filters,
from any logger, propagating or not, with handlers or without. Records a logger's level
or filters reject are seen by nobody, the monitor included. Only ``Logger`` is patched:
handlers' ``filter`` (also ``Filterer.filter``) is untouched. A ``Logger`` subclass
whose own ``filter``/``handle`` never reaches ``Logger.filter`` is not seen (use
:class:`MonitorLogHandler` for such records).

Wrappers chain: several monitors (or another SDK) may wrap in any order. ``uninstall()``
puts the previous function back only if ours is still the one installed (when
``Logger`` had no ``filter`` of its own, the attribute is removed again, so the inherited
``Filterer.filter`` is used as before); otherwise ours becomes a pass-through that the
wrapper above it keeps calling (and that a later ``uninstall()`` of one of ours skips
when it restores).

What a record becomes (``record_error`` / ``add_breadcrumb`` of the monitor):

* ERROR and above with an exception (``exc_info``): that exception, as a report.
* ERROR and above without one (``logger.error("payment failed for %s", order)``), when
  ``capture_log_messages`` is on: a :class:`LoggedError` grouped by logger name and the
  *unformatted* message template, so ``%s`` arguments do not split the group; its report
  shows where it was logged (the record's file, line and function).
* Otherwise, at or above ``logging_breadcrumb_level``: a breadcrumb. The default, INFO,
  is a floor under what the app's logger levels already let through: under Python's
  default root level (WARNING) INFO records never reach a logger's ``filter``, so WARNING and
  up become breadcrumbs; an app that calls ``basicConfig(level=logging.INFO)`` gets its
  INFO lines as breadcrumbs too; DEBUG lines only when the option says DEBUG.

Records of the monitor's own loggers (``exporter`` / ``exporter.*``) are never offered,
and a thread-local flag stops a record logged while the monitor is handling one (e.g. by
an argument's ``__str__``) from re-entering it: a failure inside the monitor can never
loop back into it. Nothing here raises into the app's logging call.
"""

from __future__ import annotations

import logging
import reprlib
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from exporter.capture.signature import PLACE_ATTRIBUTE, place_frames
from exporter.integrations import Hub
from exporter.scrub import TRUNCATED_MARKER, safe_text

OWN_LOGGER_PREFIX = "exporter"
GROUP_KEY_ATTRIBUTE = "__error_exporter_group_key__"  # what the monitor signs by, if set
# set on a LogRecord (by a task-queue hook's logging filter) whose failure is already a
# report: a task's failure logged by the task library itself is not a second one
REPORTED_ATTRIBUTE = "error_exporter_reported"
MAX_TEMPLATE_CHARS = 1024  # of the template kept in a group key and in the context
MAX_ARGS_REPR_CHARS = 1024

LoggerFilter = Callable[[logging.Logger, logging.LogRecord], Any]
# Logger.handle() dispatches the LogRecord a filter returned in place of the original
# from 3.12 on; before, any true result meant "the original record".
_FILTER_MAY_REPLACE = sys.version_info >= (3, 12)

_guard = threading.local()  # .active: this thread is inside an offer to a monitor
_install_lock = threading.Lock()
_hooked: weakref.WeakSet[Any] = weakref.WeakSet()  # monitors with an installed hook

_args_repr = reprlib.Repr()
_args_repr.maxstring = 200
_args_repr.maxother = 200
_args_repr.maxlevel = 3


class LoggedError(Exception):
    """An ERROR (or CRITICAL) log record that carried no exception.

    Its message is the formatted log line; it groups by ``logger_name`` and ``template``
    (the message before ``%`` formatting), carried in ``__error_exporter_group_key__``.
    """

    def __init__(
        self,
        message: str,
        logger_name: str = "",
        template: str = "",
        record: logging.LogRecord | None = None,
    ) -> None:
        super().__init__(message)
        self.logger_name = logger_name
        self.template = template
        setattr(self, GROUP_KEY_ATTRIBUTE, f"{logger_name}\x1f{template}")
        if record is not None and isinstance(record.pathname, str) and record.pathname:
            # where it was logged: the report's file, line, function and trace
            setattr(
                self,
                PLACE_ATTRIBUTE,
                place_frames(
                    record.pathname,
                    record.lineno if isinstance(record.lineno, int) else 0,
                    safe_text(record.funcName),
                ),
            )


def is_own_logger(name: object) -> bool:
    return isinstance(name, str) and (
        name == OWN_LOGGER_PREFIX or name.startswith(OWN_LOGGER_PREFIX + ".")
    )


def level_number(name: object, default: int = logging.INFO) -> int:
    """``"INFO"`` -> 20; anything unknown -> ``default``."""
    level = logging.getLevelName(str(name).upper())
    return level if isinstance(level, int) else default


def _cap(text: str, limit: int) -> str:
    """At most ``limit`` characters, the marker saying how many were cut included."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - len(TRUNCATED_MARKER.format(n=len(text))))
    return text[:kept] + TRUNCATED_MARKER.format(n=len(text) - kept)


def _template_of(record: logging.LogRecord) -> str:
    msg = record.msg
    if isinstance(msg, str):
        return _cap(msg, MAX_TEMPLATE_CHARS)
    return type(msg).__name__


def _repr_args(args: Any) -> str:
    try:
        text = _args_repr.repr(args)
    except Exception:
        text = f"<unrepresentable {type(args).__name__}>"
    return _cap(text, MAX_ARGS_REPR_CHARS)


def _message_of(record: logging.LogRecord) -> str:
    """``record.getMessage()``; bad format arguments give the template and the args."""
    try:
        message = record.getMessage()
        if isinstance(message, str):
            return message
    except Exception:
        pass
    try:
        template = record.msg if isinstance(record.msg, str) else object.__repr__(record.msg)
    except Exception:
        template = "<unprintable log message>"
    return f"{template} (arguments: {_repr_args(record.args)})"


def offer(monitor: Hub, record: logging.LogRecord, breadcrumb_level: int | None = None) -> None:
    """What one record becomes for one monitor. Never raises."""
    name = record.name
    if is_own_logger(name):
        return
    try:
        config = monitor.config
        levelno = record.levelno
        if breadcrumb_level is None:
            breadcrumb_level = level_number(config.logging_breadcrumb_level)
        exc_info = record.exc_info
        exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
        is_error = levelno >= logging.ERROR
        if is_error and getattr(record, REPORTED_ATTRIBUTE, None) is not None:
            return  # already reported by the hook of its unit of work (a task, a job)
        if is_error and isinstance(exc, BaseException):
            monitor.capture_exception(
                exc,
                component=_extra(record, "component"),
                plugin=_extra(record, "plugin"),
                operation=_extra(record, "operation"),
                context={"logger": name, "log_message": _message_of(record)},
                mechanism="logging",
                level=levelno,
            )
        elif is_error and config.capture_log_messages:
            _record_message(monitor, record, levelno)
        elif levelno >= breadcrumb_level and config.enable_breadcrumbs:
            monitor.add_breadcrumb(
                action=_message_of(record),
                component=_extra(record, "component"),
                level=safe_text(record.levelname).lower(),
                category="log:" + safe_text(name),
            )
    except Exception:
        monitor.note_internal_error()


def _extra(record: logging.LogRecord, key: str) -> Any:
    return getattr(record, key, "") or ""


def _record_message(monitor: Hub, record: logging.LogRecord, levelno: int) -> None:
    name = safe_text(record.name)
    template = _template_of(record)
    message = _cap(_message_of(record), monitor.config.max_message_length)
    error = LoggedError(message, name, template, record)
    monitor.capture_exception(
        error,
        component=_extra(record, "component"),
        plugin=_extra(record, "plugin"),
        operation=_extra(record, "operation"),
        context={
            "logger": name,
            "log_message": message,
            "log_template": template,
            "log_args": _repr_args(record.args),
            "pathname": record.pathname,
            "lineno": record.lineno,
            "funcName": record.funcName,
        },
        mechanism="logging",
        level=levelno,
    )


class LoggingIntegration:
    """Wraps ``logging.Logger.filter`` for one monitor (see the module docstring)."""

    def __init__(self) -> None:
        self.monitor: Hub | None = None  # None: uninstalled, a pass-through
        self.breadcrumb_level = logging.INFO
        self._hook: LoggerFilter | None = None
        self._previous: LoggerFilter | None = None  # None: Logger's inherited filter

    def install(self, monitor: Hub) -> None:
        self.monitor = monitor
        self.breadcrumb_level = level_number(monitor.config.logging_breadcrumb_level)
        with _install_lock:
            previous: LoggerFilter | None = logging.Logger.__dict__.get("filter")
            hook = _make_hook(self, previous)
            self._previous, self._hook = previous, hook
            _set_filter(hook)
            _hooked.add(monitor)

    def uninstall(self) -> None:
        with _install_lock:
            monitor, hook = self.monitor, self._hook
            self.monitor = None  # from now on a pass-through, wherever it still sits
            if monitor is not None:
                _hooked.discard(monitor)
            if hook is not None and logging.Logger.__dict__.get("filter") is hook:
                _set_filter(_live(self._previous))
            self._hook = self._previous = None

    @property
    def installed(self) -> bool:
        return self.monitor is not None


def _make_hook(integration: LoggingIntegration, previous: LoggerFilter | None) -> LoggerFilter:
    """The wrapper: call ``previous``; if the record passed, offer it to the monitor.

    ``previous`` None: ``Logger`` had no ``filter`` of its own, the one it inherits
    (``Filterer.filter``, looked up on each call) decides. The wrapper returns what
    ``previous`` returned, before the logger calls any handler.
    """

    def filter(logger: logging.Logger, record: logging.LogRecord) -> Any:
        if previous is None:
            result = logging.Filterer.filter(logger, record)
        else:
            result = previous(logger, record)
        monitor = integration.monitor
        if result and monitor is not None and not getattr(_guard, "active", False):
            dispatched = (
                result if _FILTER_MAY_REPLACE and isinstance(result, logging.LogRecord) else record
            )
            _guard.active = True
            try:
                offer(monitor, dispatched, integration.breadcrumb_level)
            except Exception:  # pragma: no cover - offer() does not raise
                pass
            finally:
                _guard.active = False
        return result

    filter.__wrapped__ = (  # type: ignore[attr-defined]
        previous if previous is not None else logging.Filterer.filter
    )
    filter._error_exporter_previous = previous  # type: ignore[attr-defined]
    filter._error_exporter_integration = integration  # type: ignore[attr-defined]
    return filter


def _set_filter(function: LoggerFilter | None) -> None:
    """Install ``function`` as ``Logger.filter``; None: back to the inherited one."""
    if function is not None:
        logging.Logger.filter = function  # type: ignore[method-assign, assignment]
    elif "filter" in logging.Logger.__dict__:
        del logging.Logger.filter


def _live(function: LoggerFilter | None) -> LoggerFilter | None:
    """Skip our own uninstalled pass-throughs when putting a previous function back."""
    while function is not None:
        owner = getattr(function, "_error_exporter_integration", None)
        if owner is None or owner.monitor is not None:
            return function
        function = function._error_exporter_previous  # type: ignore[attr-defined]
    return None


class MonitorLogHandler(logging.Handler):
    """A ``logging.Handler`` feeding one monitor; ``start()`` does not install it.

    For records that reach a handler without passing through ``Logger.filter`` in
    this process (e.g. handed to it by a ``QueueListener`` fed from other processes).
    While the monitor's own hook is installed it does nothing: the hook saw the record.
    """

    def __init__(self, monitor: Hub, breadcrumb_level: int = logging.INFO) -> None:
        super().__init__(level=min(breadcrumb_level, logging.ERROR))
        self.monitor = monitor
        self.breadcrumb_level = breadcrumb_level

    def emit(self, record: logging.LogRecord) -> None:
        if self.monitor in _hooked or getattr(_guard, "active", False):
            return
        _guard.active = True
        try:
            offer(self.monitor, record, self.breadcrumb_level)
        finally:
            _guard.active = False

    def handleError(self, record: logging.LogRecord) -> None:
        self.monitor.note_internal_error()
