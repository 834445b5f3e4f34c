"""The process-wide monitor: ``get_error_monitor()`` and ``reset_error_monitor()``.

``get_error_monitor`` looks up, in order: the monitor an earlier call created; the monitor
the app started most recently and still runs (``_running_monitors.py``); else a new one.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, cast

from exporter import _running_monitors
from exporter._process_events import ForkSafeLock
from exporter.monitor import ErrorMonitor

_global_monitor: ErrorMonitor | None = None  # the one get_error_monitor() created
_global_lock = ForkSafeLock()


def _ignored_options(monitor: ErrorMonitor, options: dict[str, Any]) -> list[str]:
    """``name=requested (in use: effective)`` for each option ``monitor`` does not have."""
    cfg = monitor.config
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    ignored = []
    for name, value in options.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)  # export_path=Path(...) is the same directory as its str
        if name == "config":
            if value is not cfg and value != cfg:
                ignored.append("config=MonitorConfig(...) (in use: a different MonitorConfig)")
        elif name == "registry":
            if value is not None:
                ignored.append(f"registry={value!r} (in use: the monitor's own bridge, if any)")
        elif name not in fields:
            ignored.append(f"{name}={value!r} (not an option)")
        elif value != getattr(cfg, name):
            if fields[name].repr:
                ignored.append(f"{name}={value!r} (in use: {getattr(cfg, name)!r})")
            else:  # a secret (api_token): name it, never print it
                ignored.append(f"{name}=*** (in use: a different value)")
    return ignored


def _ignored_message(function: str, reason: str, ignored: list[str]) -> str:
    return f"{function}(): {reason}; ignored options: {', '.join(ignored)}"


def _process_monitor(options: dict[str, Any]) -> tuple[ErrorMonitor, list[str], str]:
    """get_error_monitor's lookup: (monitor, ignored options, which existing one it is)."""
    global _global_monitor
    with _global_lock:
        monitor = explicit = _global_monitor
        if monitor is None:
            monitor = cast("ErrorMonitor | None", _running_monitors.latest())
        if monitor is None:
            monitor = _global_monitor = ErrorMonitor(**options)
            return monitor, [], ""
    if explicit is not None:
        existing = "the existing process-wide monitor"
    else:
        existing = f"the running monitor started most recently ({monitor!r})"
    return monitor, _ignored_options(monitor, options) if options else [], existing


def get_error_monitor(**options: Any) -> ErrorMonitor:
    """The process-wide monitor: the app's monitor, wherever the app made it.

    Looked up in this order:

    1. the monitor an earlier ``get_error_monitor`` call created (started or not);
    2. otherwise the most recently started monitor that is still running, e.g. an
       ``ErrorMonitor`` or ``ErrorMonitoringService`` the application built and started
       itself: a plugin calling ``get_error_monitor()`` gets the app's monitor, not a
       second, idle one. It is not pinned: once it stops, the lookup moves on;
    3. otherwise a new monitor built from ``options`` (not started), which then is (1).

    The first settings win. Options given when a monitor already exists are ignored; those
    that differ from its configuration are named, with the value in use, in a
    ``RuntimeWarning``. ``handle_errors`` without ``monitor=`` reports through this lookup,
    made at each call.
    """
    monitor, ignored, existing = _process_monitor(options)
    if ignored:
        reason = f"returning {existing}, whose settings stay"
        if monitor is _global_monitor:
            reason += " (reset_error_monitor() first to reconfigure it)"
        message = _ignored_message("get_error_monitor", reason, ignored)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return monitor


def reset_error_monitor() -> None:
    """Stop and forget the process-wide monitor, and forget the running ones (tests).

    Monitors the application started itself keep running; the lookup just no longer
    returns them (until they are started again).
    """
    global _global_monitor
    with _global_lock:
        monitor, _global_monitor = _global_monitor, None
    _running_monitors.forget_all()
    if monitor is not None:  # outside the lock: stop() reports back through _note_stopped
        monitor.stop(timeout=1.0)
