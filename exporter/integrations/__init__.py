"""Capture hooks, one small module each: installed by ``start()``, removed by ``stop()``.

Every hook chains to whatever was installed before it and, on removal, restores it only
if nobody replaced ours in the meantime (otherwise it turns itself into a pass-through).

A hook sees the monitor only as a :class:`Hub`: the public capture entry
(``capture_exception`` with its mechanism, handled flag and log level), breadcrumbs,
sessions, operation timings and the internal-error counter. The built-in hooks are listed
once in :data:`BUILT_IN`, each behind its config flag; an app adds its own with
``ErrorMonitor(integrations=[...])`` (anything with ``install(hub)`` / ``uninstall()``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from typing import Any, Protocol

from exporter.config import MonitorConfig
from exporter.scrub import Scrubber
from exporter.sessions import SessionTracker


class Hub(Protocol):
    """What a capture hook calls on its monitor."""

    config: MonitorConfig
    scrubber: Scrubber

    @property
    def sessions(self) -> SessionTracker: ...

    def capture_exception(
        self,
        error: BaseException,
        *,
        mechanism: str,
        handled: bool = True,
        level: int | None = None,
        component: str = "",
        plugin: str = "",
        operation: str = "",
        context: Any = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> str | None: ...

    def add_breadcrumb(
        self,
        action: str,
        component: str = "",
        data: dict[str, Any] | None = None,
        level: str = "info",
        category: str = "default",
        session_id: str | None = None,
        timestamp: float | None = None,
    ) -> None: ...

    def observe_operation(
        self, component: str, plugin: str, operation: str, ok: bool | str, seconds: float
    ) -> None: ...

    def count_task_retry(self, component: str, operation: str, error_type: str) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...

    def start_session(self, user_id: str | None = None, session_id: str | None = None) -> str: ...

    def end_session(
        self, session_id: str | None = None, status: str | None = None
    ) -> str | None: ...

    def note_internal_error(self, exc: BaseException | None = None) -> None: ...


class Integration(Protocol):
    """A capture hook: installs itself on a hub, and removes itself without a trace."""

    def install(self, hub: Hub) -> None: ...

    def uninstall(self) -> None: ...


# config flag -> "module:class" of the hook it turns on (imported only when enabled)
BUILT_IN: tuple[tuple[str, str], ...] = (
    ("capture_sys_excepthook", "exporter.integrations.excepthook:ExcepthookIntegration"),
    ("capture_threading", "exporter.integrations.threads:ThreadingIntegration"),
    ("capture_logging", "exporter.integrations.logging_handler:LoggingIntegration"),
    ("capture_celery", "exporter.integrations.celery:CeleryIntegration"),
    ("capture_rq", "exporter.integrations.rq:RqIntegration"),
)
# hooks of a library: on only when it is importable (never installed for it)
REQUIRES: dict[str, str] = {"capture_celery": "celery", "capture_rq": "rq"}


def enabled_integrations(config: MonitorConfig) -> Iterator[Integration]:
    """The built-in hooks the configuration turns on, new instances, in install order."""
    for flag, path in BUILT_IN:
        if getattr(config, flag) and _importable(REQUIRES.get(flag)):
            module, _, name = path.partition(":")
            factory: Any = getattr(importlib.import_module(module), name)
            yield factory()


def _importable(library: str | None) -> bool:
    if library is None:
        return True
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False


def is_not_an_error(exc: BaseException | None) -> bool:
    """KeyboardInterrupt and a clean SystemExit are how programs stop, not errors."""
    if exc is None or isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
        return True
    return isinstance(exc, SystemExit) and exc.code in (None, 0)
