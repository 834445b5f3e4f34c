"""One unit of work from start to finish: an HTTP request, a task of a queue, a job.

A scope has a session (so the breadcrumbs and errors of this unit stay together; started
only when an error or a breadcrumb needs it) whose first breadcrumb is the unit's, records
the unit's unhandled error once with what describes the unit, times it into
``app_operation_duration_seconds`` and ends the session (``crashed`` when it failed). The
web middlewares use :class:`~exporter.integrations.web.RequestScope`, a subclass; a
task-queue hook uses this one directly::

    scope = WorkScope(hub, component="worker", operation=f"task {name}",
                      breadcrumb=f"task {name}", describe=lambda: {"task_id": task_id})
    with scope:
        run_the_task()

While the unit runs it is the current unit of work (:mod:`exporter.capture.work_unit`): every
error recorded, logged or captured inside it carries its context and operation too.

A unit that arrives with a W3C ``traceparent`` (an HTTP header, a task's headers) passes it
as ``traceparent=``: while the unit runs, errors recorded without an OpenTelemetry span
carry its trace id (``capture_trace_context``; see :mod:`exporter.capture.trace_context`).
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from exporter.capture.trace_context import TraceIds, incoming_trace, parse_traceparent
from exporter.capture.work_unit import WorkUnit, current_work
from exporter.integrations import Hub, is_not_an_error

_Scope = TypeVar("_Scope", bound="WorkScope")


class WorkScope:
    """A unit of work: session, breadcrumb, its error (once) and its duration.

    What costs is deferred until an error needs it: the session (and the unit's breadcrumb,
    its first) is started on demand (:meth:`ensure_session`) by the first error or
    breadcrumb inside the unit, so a unit that meets neither only sets one context
    variable, times itself and counts its session as ``exited``.
    """

    # what every unit starts with (class defaults: a unit that never fails sets none of them)
    error_id: str | None = None
    session_id: str | None = None
    _failed = False
    _finished = False
    _started = 0.0
    _own_failure = False
    _describe: Callable[[], dict[str, Any]] | None = None
    _trace_token: contextvars.Token[TraceIds | None] | None = None
    _work_token: contextvars.Token[WorkUnit | None] | None = None

    def __init__(
        self,
        hub: Hub,
        component: str = "",
        plugin: str = "",
        operation: str = "",
        sessions: bool = True,
        breadcrumb: str | None = None,
        breadcrumb_data: dict[str, Any] | None = None,
        category: str = "work",
        describe: Callable[[], dict[str, Any]] | None = None,
        mechanism: str = "scope",
        traceparent: str | None = None,
    ) -> None:
        self.monitor = hub
        self.component = component
        self.plugin = plugin
        self._operation = operation
        self.sessions = sessions
        self.breadcrumb = breadcrumb
        self.breadcrumb_data = breadcrumb_data
        self.category = category
        self._describe = describe
        self.mechanism = mechanism
        self.traceparent = traceparent

    @property
    def operation(self) -> str:
        return self._operation

    def describe(self) -> dict[str, Any]:
        """What the error report says about this unit (its ``context``)."""
        return self._describe() if self._describe is not None else {}

    def brief(self) -> dict[str, Any]:
        """What every error inside the unit carries: a job's context is its description."""
        return self.describe()

    def add_first_breadcrumb(self, session_id: str, began: float) -> None:
        """The unit's own breadcrumb, first in its session (stamped when the unit began):
        built only when the session starts."""
        if self.breadcrumb:
            self.monitor.add_breadcrumb(
                self.breadcrumb,
                self.component,
                self.breadcrumb_data,
                category=self.category,
                session_id=session_id,
                timestamp=began,
            )

    def begin(self: _Scope) -> _Scope:
        self._started = time.perf_counter()
        self._work_token = current_work.set(self)  # errors inside the unit carry it
        if self.traceparent is not None:
            try:
                if self.monitor.config.capture_trace_context:
                    ids = parse_traceparent(self.traceparent)
                    if ids is not None:
                        self._trace_token = incoming_trace.set(ids)
            except Exception:
                self.monitor.note_internal_error()
        return self

    def ensure_session(self) -> str | None:
        """The unit's session, started when first needed, with the unit's breadcrumb first
        (stamped with the time the unit began)."""
        if self.session_id is not None or not self.sessions or self._finished:
            return self.session_id
        with _starting:  # two threads of one unit (a copied context) start one session
            if self.session_id is None:
                monitor = self.monitor
                began = time.time() - (time.perf_counter() - self._started)
                try:
                    session_id = monitor.sessions.start(None, started=began)
                    self.add_first_breadcrumb(session_id, began)
                    self.session_id = session_id
                except Exception:
                    monitor.note_internal_error()
        return self.session_id

    def fail(self, exc: BaseException, mechanism: str | None = None) -> str | None:
        """Record the unit's unhandled error (once)."""
        self._failed = True
        if self.error_id is not None:
            return self.error_id
        own = current_work.get() is self  # else: the front adds nothing of this unit
        operation = "" if own else self.operation
        context: dict[str, Any] | None = None
        if not own:  # the unit's own failure says everything about it (a request: headers)
            try:
                context = self.describe()
            except Exception:
                self.monitor.note_internal_error()
        # current: the front asks brief(), which says describe() while the unit's own failure
        # is recorded, and only for an occurrence it keeps in detail (not one only counted)
        self._own_failure = own
        try:
            self.error_id = self.monitor.capture_exception(
                exc,
                mechanism=mechanism or self.mechanism,
                component=self.component,
                plugin=self.plugin,
                operation=operation,
                context=context,
                session_id=self.ensure_session(),
                handled=not self.sessions,  # unhandled marks the session crashed: only our own
            )
        finally:
            self._own_failure = False
        return self.error_id

    def finish(self, ok: bool = True) -> None:
        """Time the unit and end its session; called exactly once."""
        self.end(ok)

    def end(self, ok: bool | str) -> None:
        """:meth:`finish` with the outcome itself when it is neither ok nor error (a task's
        ``retry`` or ``ignored``); a unit that failed ends as ``error`` whatever it says."""
        monitor = self.monitor
        if self._failed:
            ok = False
        monitor.observe_operation(
            self.component, self.plugin, self.operation, ok, time.perf_counter() - self._started
        )
        self._finished = True
        if self.sessions:
            try:
                if self.session_id is not None:
                    monitor.sessions.end(self.session_id, "crashed" if self._failed else None)
                else:  # met no error and left no breadcrumb: counted, never built
                    monitor.sessions.count_ended("crashed" if self._failed else "exited")
            except Exception:
                monitor.note_internal_error()
        if self._trace_token is not None:
            reset_var(incoming_trace, self._trace_token)
            self._trace_token = None
        token = self._work_token
        if token is not None:
            self._work_token = None
            try:  # reset_var(), inline
                current_work.reset(token)
            except ValueError:  # a token from another context (a thread switch)
                current_work.set(None)

    def __enter__(self: _Scope) -> _Scope:
        return self.begin()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not is_not_an_error(exc) and isinstance(exc, Exception):
            self.fail(exc)
        self.finish(exc is None)


_starting = threading.Lock()


def _new_lock_in_child() -> None:  # a pool's fork while another thread held it: no deadlock
    global _starting
    _starting = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def reset_var(var: contextvars.ContextVar[Any], token: contextvars.Token[Any] | None) -> None:
    """Reset a context variable; a token from another context (a thread switch) is dropped."""
    if token is None:
        return
    try:
        var.reset(token)
    except ValueError:
        var.set(None)
