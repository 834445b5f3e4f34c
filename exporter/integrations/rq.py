"""RQ: every job a unit of work, captured as well as a web request is.

On by itself when ``rq`` is importable (``capture_rq``, env ``ERROR_EXPORTER_CAPTURE_RQ``),
installed when the app has imported RQ (never imported by the monitor: :mod:`.on_import`).
RQ has no signals, so the hook wraps three methods, and ``stop()`` puts them back (or, when
someone wrapped them after us, turns ours into a pass-through):

- ``Worker.perform_job`` (run in the work horse, or in the worker with ``SimpleWorker``):
  the job is a :class:`~exporter.integrations.scope.WorkScope` (its session, a breadcrumb
  ``job <function>``, and every error recorded, logged or captured during it carries the
  job's context, ``context["job"]``: id, function, queue, retries, and only with
  ``capture_body=True`` its args / kwargs, scrubbed, and its function name as
  ``operation``), timed into ``app_operation_duration_seconds{component="rq", operation,
  outcome}`` (``ok``, ``error``, ``retry``, ``ignored``: a job stopped on request). A work
  horse leaves with ``os._exit``, which skips every exit hook: before it returns, the
  wrapper flushes what the job queued (bounded by ``exit_flush_timeout``);
- ``Worker.handle_exception``: the job's exception is reported once, unhandled, mechanism
  ``rq``, before RQ logs it (that log line is then not a second report). A job with
  retries left is not an error: ``app_task_retries_total{component, operation,
  error_type}`` counts it (so does a job that returned ``Retry``); its last failure is the
  error. ``JobTimeoutException`` is one group per job function (it strikes anywhere);
- ``Queue.create_job``: the enqueuing code's W3C ``traceparent`` goes into ``job.meta``,
  and the job makes it current, so its errors carry the request's ``trace_id``.

Options come from the instance: to change them, turn the built-in one off and pass yours
(``ErrorMonitor(capture_rq=False, integrations=[RqIntegration(component="jobs")])``).
"""

from __future__ import annotations

import logging
from typing import Any

from exporter.capture.work_unit import current_work
from exporter.integrations import Hub, is_not_an_error
from exporter.integrations._task_queue import (
    ReportedFilter,
    TaskQueueIntegration,
    interrupted_standin,
    traceparent_now,
)
from exporter.integrations.on_import import when_imported
from exporter.integrations.scope import WorkScope

MECHANISM = "rq"
META_KEY = "traceparent"
WORKER_LOGGER = "rq.worker"
MAX_NAME_CHARS = 200


class JobScope(WorkScope):
    """One run of a job: a WorkScope with the job as its context."""

    def __init__(self, hub: Hub, integration: RqIntegration, job: Any, queue: Any) -> None:
        self.job = job
        self.job_id = str(getattr(job, "id", "") or "")
        try:
            name = str(job.func_name)
        except Exception:  # a job that cannot be deserialized
            name = "<unknown>"
        self.func_name = name[:MAX_NAME_CHARS]
        self.queue = str(getattr(job, "origin", "") or getattr(queue, "name", "") or "")
        self.capture_body = integration.capture_body
        self.outcome: bool | str = True
        self.quiet_logs = False
        meta = getattr(job, "meta", None)
        traceparent = meta.get(META_KEY) if isinstance(meta, dict) else None
        super().__init__(
            hub,
            integration.component,
            integration.plugin,
            operation=self.func_name,
            sessions=integration.sessions,
            breadcrumb=f"job {self.func_name}",
            breadcrumb_data={"job_id": self.job_id, "queue": self.queue},
            category="rq",
            mechanism=MECHANISM,
            traceparent=traceparent if isinstance(traceparent, str) else None,
        )

    def describe(self) -> dict[str, Any]:
        job = self.job
        retries = getattr(job, "retries_left", None)
        described: dict[str, Any] = {
            "id": self.job_id,
            "function": self.func_name,
            "queue": self.queue,
            "retries_left": retries if isinstance(retries, int) else None,
        }
        if self.capture_body:
            scrubber = self.monitor.scrubber
            try:
                described["args"] = scrubber.clean(list(job.args or ()))
                described["kwargs"] = scrubber.clean(dict(job.kwargs or {}))
            except Exception:  # not deserializable
                pass
        return {"job": described}


class _Patch:
    """One method replaced on a class; restored only if ours is still the one there."""

    def __init__(self, owner: type, name: str, make: Any) -> None:
        self.owner, self.name = owner, name
        self.original = owner.__dict__[name]
        self.active = True
        self.wrapper = make(self.original, self)
        setattr(owner, name, self.wrapper)

    def remove(self) -> None:
        self.active = False  # wherever it still sits, a pass-through from now on
        if self.owner.__dict__.get(self.name) is self.wrapper:
            setattr(self.owner, self.name, self.original)


def _defining_class(cls: type, name: str) -> type:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass
    raise AttributeError(name)


class RqIntegration(TaskQueueIntegration):
    """Wraps RQ's worker and queue for one monitor (see the module docstring)."""

    def __init__(
        self,
        component: str = "rq",
        plugin: str = "",
        sessions: bool = True,
        capture_body: bool = False,
    ) -> None:
        super().__init__(component, plugin, sessions, capture_body)
        self._patches: list[_Patch] = []
        self._filter = ReportedFilter(JobScope)

    def install(self, hub: Hub) -> None:
        """Wraps RQ now if the app imported it already, else right after it does."""
        self.hub = hub
        self._cancel = when_imported("rq", self._wrap)

    def _wrap(self) -> None:
        from rq.queue import Queue
        from rq.worker import Worker

        if self.hub is None or self._patches:
            return
        self._patches = [
            _Patch(_defining_class(Worker, "perform_job"), "perform_job", self._perform_job),
            _Patch(
                _defining_class(Worker, "handle_exception"),
                "handle_exception",
                self._handle_exception,
            ),
            _Patch(_defining_class(Queue, "create_job"), "create_job", self._create_job),
        ]
        logging.getLogger(WORKER_LOGGER).addFilter(self._filter)

    def uninstall(self) -> None:
        self._cancel()
        for patch in reversed(self._patches):
            patch.remove()
        self._patches = []
        logging.getLogger(WORKER_LOGGER).removeFilter(self._filter)
        self.hub = None

    def _perform_job(self, original: Any, patch: _Patch) -> Any:
        integration = self

        def perform_job(worker: Any, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
            hub = integration.hub
            if hub is None or not patch.active:
                return original(worker, job, queue, *args, **kwargs)
            scope: JobScope | None = None
            try:
                scope = JobScope(hub, integration, job, queue)
                scope.begin()
            except Exception:
                hub.note_internal_error()
            try:
                return original(worker, job, queue, *args, **kwargs)
            finally:
                if scope is not None:
                    integration._finish(hub, scope, worker, job)

        return perform_job

    def _finish(self, hub: Hub, scope: JobScope, worker: Any, job: Any) -> None:
        try:
            outcome = scope.outcome
            if outcome is True and _returned_retry(job):
                hub.count_task_retry(self.component, scope.func_name, "Retry")
                outcome = "retry"
            if getattr(worker, "_is_horse", False):
                # the horse leaves with os._exit: what the job queued is stored before the
                # job counts as done (its duration observed)
                hub.flush(hub.config.exit_flush_timeout)
            scope.end(outcome)
        except Exception:
            hub.note_internal_error()

    def _handle_exception(self, original: Any, patch: _Patch) -> Any:
        integration = self

        def handle_exception(worker: Any, job: Any, *exc_info: Any) -> Any:
            hub = integration.hub
            unit = current_work.get()
            if (
                hub is None
                or not patch.active
                or not isinstance(unit, JobScope)
                or unit.job is not job
            ):
                return original(worker, job, *exc_info)
            try:
                integration._failed(hub, unit, worker, job, exc_info)
            except Exception:
                hub.note_internal_error()
            unit.quiet_logs = True  # RQ's own log line of this failure: no second report
            try:
                return original(worker, job, *exc_info)
            finally:
                unit.quiet_logs = False

        return handle_exception

    def _failed(
        self, hub: Hub, scope: JobScope, worker: Any, job: Any, exc_info: tuple[Any, ...]
    ) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if not isinstance(error, BaseException) or is_not_an_error(error):
            return
        if getattr(worker, "_stopped_job_id", None) == job.id:
            scope.outcome = "ignored"  # stopped on request: an outcome, not an error
            return
        if _will_retry(job):
            hub.count_task_retry(self.component, scope.func_name, type(error).__name__)
            scope.outcome = "retry"
            return
        from rq.timeouts import JobTimeoutException

        if isinstance(error, JobTimeoutException):
            error = interrupted_standin(error, f"rq\x1fjob timeout\x1f{scope.func_name}")
        scope.fail(error, MECHANISM)

    def _create_job(self, original: Any, patch: _Patch) -> Any:
        integration = self

        def create_job(queue: Any, *args: Any, **kwargs: Any) -> Any:
            job = original(queue, *args, **kwargs)
            hub = integration.hub
            if hub is not None and patch.active:
                try:
                    meta = job.meta
                    if isinstance(meta, dict) and META_KEY not in meta:
                        traceparent = traceparent_now(hub)
                        if traceparent is not None:
                            meta[META_KEY] = traceparent
                except Exception:
                    hub.note_internal_error()
            return job

        return create_job


def _will_retry(job: Any) -> bool:
    retries = getattr(job, "retries_left", None)
    return isinstance(retries, int) and retries > 0


def _returned_retry(job: Any) -> bool:
    try:
        from rq.retry import Retry
    except ImportError:  # RQ before jobs could return a Retry
        return False
    return isinstance(getattr(job, "_result", None), Retry)
