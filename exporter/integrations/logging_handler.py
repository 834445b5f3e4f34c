"""``logging``: ERROR and above with an exception become reports, the rest breadcrumbs.

Records from the monitor's own loggers (``exporter.*``) are ignored so a failure inside
the monitor can never loop back into it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..monitor import ErrorMonitor

OWN_LOGGER_PREFIX = "exporter"


class MonitorLogHandler(logging.Handler):
    """A logging.Handler feeding one monitor."""

    def __init__(self, monitor: ErrorMonitor, breadcrumb_level: int = logging.INFO) -> None:
        super().__init__(level=min(breadcrumb_level, logging.ERROR))
        self.monitor = monitor
        self.breadcrumb_level = breadcrumb_level

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        if name == OWN_LOGGER_PREFIX or name.startswith(OWN_LOGGER_PREFIX + "."):
            return
        try:
            exc = record.exc_info[1] if record.exc_info else None
            component = getattr(record, "component", "") or ""
            plugin = getattr(record, "plugin", "") or ""
            if record.levelno >= logging.ERROR and isinstance(exc, BaseException):
                self.monitor.record_error(
                    exc, component=component, plugin=plugin,
                    operation=getattr(record, "operation", "") or "",
                    context={"logger": name, "log_message": record.getMessage()},
                    _mechanism="logging", _log_level=record.levelno,
                )
            elif record.levelno >= self.breadcrumb_level:
                self.monitor.add_breadcrumb(
                    action=record.getMessage(), component=component,
                    level=record.levelname.lower(), category=f"log:{name}",
                )
        except Exception:
            self.monitor.note_internal_error()

    def handleError(self, record: logging.LogRecord) -> None:
        self.monitor.note_internal_error()


class LoggingIntegration:
    def __init__(self) -> None:
        self.handler: MonitorLogHandler | None = None

    def install(self, monitor: ErrorMonitor) -> None:
        level = logging.getLevelName(monitor.config.logging_breadcrumb_level.upper())
        self.handler = MonitorLogHandler(monitor, level if isinstance(level, int) else 20)
        logging.getLogger().addHandler(self.handler)

    def uninstall(self) -> None:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler = None
