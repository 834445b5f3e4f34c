"""``handle_errors``: record, time and optionally recover around a sync or async function."""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from exporter.monitor import ErrorMonitor

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(
    component: str = "",
    plugin: str = "",
    operation: str = "",
    severity: str | None = None,
    reraise: bool = True,
    default: Any = None,
    recovery: Callable[[BaseException], Any] | None = None,
    monitor: ErrorMonitor | None = None,
) -> Callable[[F], F]:
    """Decorate a function so its errors are recorded and its calls timed.

    Every call is observed in ``app_operation_duration_seconds`` (outcome ok / error;
    operation defaults to the function's name). On an exception: it is recorded; if a
    ``recovery`` callable is given it is called with the exception, timed and counted as
    success or failure; then the exception is re-raised (``reraise=True``) or the
    recovery's result (or ``default``) is returned.

    Without ``monitor``, each call reports to ``get_error_monitor()``, looked up at call
    time, not when decorating: a function decorated at import reports to the monitor the
    application builds and starts later (its own ``ErrorMonitor`` or
    ``ErrorMonitoringService`` included), and to the next one in line once that one stops.
    """

    def decorate(func: F) -> F:
        op = operation or getattr(func, "__name__", "call")

        def resolve() -> ErrorMonitor:
            if monitor is not None:
                return monitor
            from exporter.global_monitor import get_error_monitor

            return get_error_monitor()  # at each call: the app may start its monitor later

        def failed(mon: ErrorMonitor, exc: Exception, started: float) -> Any:
            mon.observe_operation(component, plugin, op, False, time.perf_counter() - started)
            error_id = mon.record_error(exc, component, plugin, op, severity=severity)
            result = default
            if recovery is not None:
                # timed from the error itself (error_id), as monitor.recovery() does
                with contextlib.suppress(Exception), mon.recovery(component, plugin, error_id):
                    result = recovery(exc)
            return result

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                mon = resolve()
                started = time.perf_counter()
                try:
                    result = await func(*args, **kwargs)
                except Exception as exc:
                    fallback = failed(mon, exc, started)
                    if reraise:
                        raise
                    return fallback
                mon.observe_operation(component, plugin, op, True, time.perf_counter() - started)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            mon = resolve()
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                fallback = failed(mon, exc, started)
                if reraise:
                    raise
                return fallback
            mon.observe_operation(component, plugin, op, True, time.perf_counter() - started)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
