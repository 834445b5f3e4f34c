"""Celery: every task a unit of work, captured as well as a web request is.

On by itself when ``celery`` is importable (``capture_celery``, env
``ERROR_EXPORTER_CAPTURE_CELERY``): it listens to Celery's signals, patches nothing, and
``stop()`` disconnects it. It never imports Celery itself: it connects when the app has
imported it, at ``start()`` or right after the app's import (:mod:`.on_import`). For
each task run by a worker (or applied eagerly):

- the task is a :class:`~exporter.integrations.scope.WorkScope`: its session, a breadcrumb
  ``task <name>``, and every error recorded, logged or captured while it runs carries the
  task's context (``context["task"]``: id, name, queue, retries, eta, and only with
  ``capture_body=True`` its args / kwargs, scrubbed) and its name as ``operation``;
- an exception that escapes the task is reported once, unhandled, with mechanism
  ``celery``. Celery then logs the same failure on ``celery.app.trace``: that record is
  not a second report, whether it carries the same exception object or (an exception
  that does not pickle) a copy of it;
- :class:`~celery.exceptions.Retry` is not an error: it counts
  ``app_task_retries_total{component, operation, error_type}`` with the type of its cause;
  a retry that gives up re-raises the cause, which is then the task's error.
  ``Ignore``, ``Reject`` and the exceptions in ``task.throws`` are not errors either;
- ``SoftTimeLimitExceeded`` is one group per task (it interrupts the task anywhere: its
  raise site would make a group per line); its report still shows where it struck. A task
  killed at its hard time limit is reported by the pool's parent from its log line
  (``TimeLimitExceeded``, one group per task, no second report of that line); what the
  killed child had not stored yet is lost with it;
- the task's duration goes into ``app_operation_duration_seconds{component, plugin,
  operation=<task name>, outcome}`` with outcome ``ok``, ``error``, ``retry`` or
  ``ignored`` (Ignore, Reject, an expected exception of ``task.throws``);
- the trace travels with the task: ``before_task_publish`` puts the W3C ``traceparent`` of
  the enqueuing code (its OpenTelemetry span, or the request it serves) in the message
  headers, and the task makes it current, so its errors carry the request's ``trace_id``;
- a pool child leaves with ``os._exit`` (after ``max_tasks_per_child``, on a time limit):
  what a task queued is stored before the task counts as done (a flush bounded by
  ``exit_flush_timeout`` before its duration is observed), and the child's exit
  (``worker_process_shutdown``) does what the monitor's exit hook would: sessions ended,
  last flush and publish; in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) its live
  gauges and published state are dropped, its counters kept. No lock of ours is held
  across the pool's fork (the monitor's own are renewed in the child).

Options (component, plugin, sessions, capture_body) come from the instance: to change
them, turn the built-in one off and pass your own::

    ErrorMonitor(capture_celery=False,
                 integrations=[CeleryIntegration(component="jobs", capture_body=True)])
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

from exporter.integrations import Hub, is_not_an_error
from exporter.integrations._task_queue import (
    ReportedFilter,
    TaskQueueIntegration,
    interrupted_standin,
    traceparent_now,
)
from exporter.integrations.logging_handler import REPORTED_ATTRIBUTE
from exporter.integrations.on_import import when_imported
from exporter.integrations.scope import WorkScope

MECHANISM = "celery"
TRACE_HEADER = "traceparent"
TRACE_LOGGER = "celery.app.trace"  # where Celery logs a failed task
REQUEST_LOGGER = "celery.worker.request"  # where the pool's parent logs a hard time limit
HARD_LIMIT_LOG = "Hard time limit (%ss) exceeded for %s[%s]"
_SCOPE_ATTRIBUTE = "_error_exporter_scope"  # on the task's request while it runs
MAX_NAME_CHARS = 200


class _HardTimeLimitFilter(logging.Filter):
    """The pool's parent kills a child whose task outlived its hard time limit, and logs
    ``Hard time limit (%ss) exceeded for %s[%s]`` (an ERROR without an exception): that line
    becomes the task's report (``TimeLimitExceeded``, one group per task, the task's name
    and id), and the record is marked so the logging hook does not report it again."""

    def __init__(self, integration: CeleryIntegration) -> None:
        super().__init__()
        self.integration = integration

    def filter(self, record: logging.LogRecord) -> bool:
        hub = self.integration.hub
        if hub is None or record.msg != HARD_LIMIT_LOG or not isinstance(record.args, tuple):
            return True
        try:
            timeout, name, task_id = record.args
            error_id = self.integration.hard_time_limit(hub, timeout, str(name), str(task_id))
            setattr(record, REPORTED_ATTRIBUTE, error_id or "")
        except Exception:
            hub.note_internal_error()
        return True


class TaskScope(WorkScope):
    """One run of a task: a WorkScope with the task's request as its context."""

    def __init__(
        self,
        hub: Hub,
        integration: CeleryIntegration,
        task: Any,
        task_id: str,
        args: Any,
        kwargs: Any,
        traceparent: str | None,
    ) -> None:
        self.task_name = str(getattr(task, "name", "") or "")[:MAX_NAME_CHARS]
        request = getattr(task, "request", None)
        self.request = request
        self.task_id = str(task_id or "")
        delivery = getattr(request, "delivery_info", None) or {}
        self.queue = str(delivery.get("routing_key") or delivery.get("exchange") or "")
        self.args = args
        self.kwargs = kwargs
        self.capture_body = integration.capture_body
        self.outcome: bool | str = True
        self.quiet_logs = False
        super().__init__(
            hub,
            integration.component,
            integration.plugin,
            operation=self.task_name,
            sessions=integration.sessions,
            breadcrumb=f"task {self.task_name}",
            breadcrumb_data={"task_id": self.task_id, "queue": self.queue},
            category="celery",
            mechanism=MECHANISM,
            traceparent=traceparent,
        )

    def describe(self) -> dict[str, Any]:
        request = self.request
        task: dict[str, Any] = {
            "id": self.task_id,
            "name": self.task_name,
            "queue": self.queue,
            "retries": getattr(request, "retries", 0) or 0,
            "eta": _text(getattr(request, "eta", None)),
        }
        if self.capture_body:
            scrubber = self.monitor.scrubber
            task["args"] = scrubber.clean(list(self.args or ()))
            task["kwargs"] = scrubber.clean(dict(self.kwargs or {}))
        return {"task": task}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    iso = getattr(value, "isoformat", None)
    return str(iso() if callable(iso) else value)


def _type_name(error: BaseException | None, default: str) -> str:
    return type(error).__name__ if error is not None else default


class CeleryIntegration(TaskQueueIntegration):
    """Connects to Celery's task signals for one monitor (see the module docstring)."""

    def __init__(
        self,
        component: str = "celery",
        plugin: str = "",
        sessions: bool = True,
        capture_body: bool = False,
    ) -> None:
        super().__init__(component, plugin, sessions, capture_body)
        self._filter = ReportedFilter(TaskScope)
        self._hard_limit_filter = _HardTimeLimitFilter(self)
        self._connected: list[tuple[Any, Any]] = []

    def install(self, hub: Hub) -> None:
        """Connects now if the app imported Celery already, else right after it does."""
        self.hub = hub
        self._cancel = when_imported("celery", self._connect)

    def _connect(self) -> None:
        from celery import signals

        if self.hub is None or self._connected:
            return
        for signal, receiver in (
            (signals.before_task_publish, self._before_publish),
            (signals.task_prerun, self._prerun),
            (signals.task_retry, self._retry),
            (signals.task_failure, self._failure),
            (signals.task_postrun, self._postrun),
            (signals.worker_process_shutdown, self._process_shutdown),
        ):
            signal.connect(receiver, weak=False)
            self._connected.append((signal, receiver))
        logging.getLogger(TRACE_LOGGER).addFilter(self._filter)
        logging.getLogger(REQUEST_LOGGER).addFilter(self._hard_limit_filter)

    def uninstall(self) -> None:
        self._cancel()
        for signal, receiver in self._connected:
            with contextlib.suppress(Exception):
                signal.disconnect(receiver)
        self._connected.clear()
        logging.getLogger(TRACE_LOGGER).removeFilter(self._filter)
        logging.getLogger(REQUEST_LOGGER).removeFilter(self._hard_limit_filter)
        self.hub = None

    def hard_time_limit(self, hub: Hub, timeout: Any, name: str, task_id: str) -> str | None:
        """The task killed at its hard time limit, reported by the pool's parent (its child
        is gone): unhandled, in a session of its own that crashed; no duration observed."""
        from celery.exceptions import TimeLimitExceeded

        name = name[:MAX_NAME_CHARS]
        error = interrupted_standin(
            TimeLimitExceeded(timeout), f"celery\x1fhard time limit\x1f{name}"
        )
        session_id = hub.start_session() if self.sessions else None
        try:
            return hub.capture_exception(
                error,
                mechanism=MECHANISM,
                handled=False,
                component=self.component,
                plugin=self.plugin,
                operation=name,
                session_id=session_id,
                context={"task": {"id": task_id, "name": name, "time_limit": timeout}},
            )
        finally:
            if session_id is not None:
                hub.end_session(session_id, "crashed")

    # -- the enqueuing side ----------------------------------------------------------------
    def _before_publish(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        hub = self.hub
        if hub is None or not isinstance(headers, dict) or TRACE_HEADER in headers:
            return
        try:
            traceparent = traceparent_now(hub)
            if traceparent is not None:
                headers[TRACE_HEADER] = traceparent
        except Exception:
            hub.note_internal_error()

    # -- the worker side -------------------------------------------------------------------
    def _prerun(
        self,
        sender: Any = None,
        task_id: Any = None,
        task: Any = None,
        args: Any = None,
        kwargs: Any = None,
        **_: Any,
    ) -> None:
        hub = self.hub
        if hub is None or task is None:
            return
        try:
            request = task.request
            traceparent = getattr(request, TRACE_HEADER, None)
            if not isinstance(traceparent, str):
                nested = getattr(request, "headers", None)  # apply_async(headers=...) on 5.x
                traceparent = nested.get(TRACE_HEADER) if isinstance(nested, dict) else None
            scope = TaskScope(hub, self, task, task_id, args, kwargs, traceparent)
            scope.begin()
            setattr(request, _SCOPE_ATTRIBUTE, scope)
        except Exception:
            hub.note_internal_error()

    def _scope_of(self, task: Any) -> TaskScope | None:
        scope = getattr(getattr(task, "request", None), _SCOPE_ATTRIBUTE, None)
        return scope if isinstance(scope, TaskScope) else None

    def _retry(self, sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
        hub = self.hub
        if hub is None:
            return
        try:
            scope = getattr(request, _SCOPE_ATTRIBUTE, None)
            name = (
                scope.task_name
                if isinstance(scope, TaskScope)
                else str(getattr(sender, "name", ""))
            )
            cause = getattr(reason, "exc", None)
            if not isinstance(cause, BaseException):  # retry() inside an except block
                cause = getattr(reason, "__context__", None)
            hub.count_task_retry(self.component, name, _type_name(cause, "Retry"))
            if isinstance(scope, TaskScope):
                scope.outcome = "retry"
        except Exception:
            hub.note_internal_error()

    def _failure(self, sender: Any = None, exception: Any = None, **_: Any) -> None:
        hub = self.hub
        scope = self._scope_of(sender)
        if hub is None or scope is None:
            return
        try:
            # inside Celery's except block: the exception the task raised, the very object
            # (``exception`` is a copy when the original does not pickle)
            error = sys.exc_info()[1]
            if not isinstance(error, BaseException):
                error = exception
            if not isinstance(error, BaseException) or is_not_an_error(error):
                return
            throws = getattr(sender, "throws", None) or ()
            if throws and isinstance(error, throws):
                scope.outcome = "ignored"  # an expected exception: an outcome, not an error
                return
            from celery.exceptions import SoftTimeLimitExceeded

            if isinstance(error, SoftTimeLimitExceeded):
                error = interrupted_standin(
                    error, f"celery\x1fsoft time limit\x1f{scope.task_name}"
                )
            scope.fail(error, MECHANISM)
            scope.quiet_logs = True  # Celery's log line of this failure: no second report
        except Exception:
            hub.note_internal_error()

    def _postrun(self, sender: Any = None, task: Any = None, state: Any = None, **_: Any) -> None:
        hub = self.hub
        scope = self._scope_of(task if task is not None else sender)
        if scope is None:
            return
        with contextlib.suppress(Exception):
            delattr(scope.request, _SCOPE_ATTRIBUTE)
        if hub is None:
            hub = scope.monitor
        try:
            outcome: bool | str = scope.outcome
            if state in ("IGNORED", "REJECTED"):
                outcome = "ignored"
            elif state == "RETRY":
                outcome = "retry"
            elif state == "FAILURE" and outcome is True:
                outcome = False
            if not getattr(scope.request, "is_eager", False):
                # a pool child may leave at any time, with os._exit: what the task queued is
                # stored before the task counts as done (its duration observed)
                hub.flush(hub.config.exit_flush_timeout)
            scope.end(outcome)
        except Exception:
            hub.note_internal_error()

    def _process_shutdown(self, **_: Any) -> None:
        """A pool child leaves (``max_tasks_per_child``, a shrinking pool, shutdown) with
        ``os._exit``, which skips the monitor's exit hook: do what it does here, bounded by
        ``exit_flush_timeout``, then (multiprocess mode) drop the child's live gauges and
        published state, as a server's ``child_exit`` does for its workers."""
        hub = self.hub
        if hub is None:
            return
        try:
            hub.sessions.end_all()
            stop = getattr(hub, "stop", None)
            if callable(stop):
                stop(hub.config.exit_flush_timeout)  # flush, publish a last time, threads
            else:
                hub.flush(hub.config.exit_flush_timeout)
            from exporter import multiprocess

            if multiprocess.enabled():
                multiprocess.mark_process_dead(os.getpid())
        except Exception:
            hub.note_internal_error()
