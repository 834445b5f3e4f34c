"""error-exporter: capture a Python app's errors and expose them to Prometheus and people.

The public API, re-exported from the modules that define it::

    from exporter import get_error_monitor, handle_errors
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.compat import (
        ErrorAggregator,
        ErrorMonitoringService,
        get_error_aggregator,
        record_error,
    )
    from exporter.config import ConfigError, MonitorConfig, load_config
    from exporter.decorators import handle_errors
    from exporter.global_monitor import get_error_monitor, reset_error_monitor
    from exporter.model import (
        Breadcrumb,
        ErrorPattern,
        ErrorPriority,
        ErrorRecord,
        ErrorReport,
        ErrorSeverity,
        ResourceSnapshot,
    )
    from exporter.monitor import ErrorMonitor

# The public API, imported when first used (``from exporter import ErrorMonitor``, or
# ``exporter.ErrorMonitor``): a process that imports the package for one name, or not at all
# for the monitor, does not pay for the rest (prometheus_client among it).
_PUBLIC = {
    "ErrorAggregator": "compat",
    "ErrorMonitoringService": "compat",
    "get_error_aggregator": "compat",
    "record_error": "compat",
    "ConfigError": "config",
    "MonitorConfig": "config",
    "load_config": "config",
    "handle_errors": "decorators",
    "get_error_monitor": "global_monitor",
    "reset_error_monitor": "global_monitor",
    "Breadcrumb": "model",
    "ErrorPattern": "model",
    "ErrorPriority": "model",
    "ErrorRecord": "model",
    "ErrorReport": "model",
    "ErrorSeverity": "model",
    "ResourceSnapshot": "model",
    "ErrorMonitor": "monitor",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"exporter.{module}"), name)
    globals()[name] = value  # once: the next read is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


# The logging HOWTO for libraries: the app decides where the monitor's own lines go.
logging.getLogger("exporter").addHandler(logging.NullHandler())


def wsgi_app(monitor: ErrorMonitor) -> Any:
    """The monitor's HTTP routes as a WSGI app (mount it in Flask, Django, ...)."""
    from exporter.http import make_wsgi_app

    return make_wsgi_app(monitor)


def asgi_app(monitor: ErrorMonitor) -> Any:
    """The same routes as an ASGI app (mount it in Starlette or FastAPI)."""
    from exporter.http import asgi_app as make_asgi_app

    return make_asgi_app(monitor)


__all__ = [
    "Breadcrumb",
    "ConfigError",
    "ErrorAggregator",
    "ErrorMonitor",
    "ErrorMonitoringService",
    "ErrorPattern",
    "ErrorPriority",
    "ErrorRecord",
    "ErrorReport",
    "ErrorSeverity",
    "MonitorConfig",
    "ResourceSnapshot",
    "asgi_app",
    "get_error_aggregator",
    "get_error_monitor",
    "handle_errors",
    "load_config",
    "record_error",
    "reset_error_monitor",
    "wsgi_app",
]
