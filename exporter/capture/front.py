"""The capture front: everything the caller's thread does for one error, and nothing more.

Recognise the exception once (a marker attribute on it, no reference kept), find its group
(one cached lookup per raise site), pick its severity, count it, take the occurrence's own
fields (message, context, session, breadcrumbs; no frame, no local) and hand a plain
:class:`~exporter.capture.occurrence.Occurrence` to the queue, unless the group's storm budget says
only to count it. The caller never waits: a full queue drops the detail and counts the drop.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from exporter.capture import headroom
from exporter.capture.budget import COALESCED, FIRST, GroupBudget
from exporter.capture.occurrence import (
    Occurrence,
    has_chain,
    merged_context,
    new_occurrence,
    summarize_chain,
)
from exporter.capture.signature import GROUP_KEY_ATTRIBUTE, PLACE_ATTRIBUTE, Signer, Site
from exporter.capture.trace_context import lookup_for
from exporter.capture.work_unit import current_work, with_work
from exporter.classify import SeverityRules
from exporter.config import SEVERITIES, MonitorConfig
from exporter.integrations import is_not_an_error
from exporter.metrics.capture_path import ErrorMetrics, _label_text
from exporter.model import Breadcrumb
from exporter.scrub import Scrubber, safe_text, truncate
from exporter.sessions import SessionTracker, crumbs_of, current_session

URGENT_SEVERITIES = ("high", "critical")
MAX_PLAIN_TYPES = 10000
MAX_KNOWN = 20000
DETAIL_LOST = "capture_failed"  # drop reason: counted, but its report could not be built
PRESSURE_BACKLOG = 64  # the least backlog that counts as pressure (tiny queues drop instead)
_front_ids = itertools.count(1)


class SessionsOwner(Protocol):
    """Where the current sessions live (the pipeline's account, replaced in a fork child)."""

    sessions: SessionTracker


class CaptureFront:
    """Turns one error into a count and, within its group's budget, a queued occurrence."""

    def __init__(
        self,
        config: MonitorConfig,
        signer: Signer,
        rules: SeverityRules,
        metrics: ErrorMetrics,
        scrubber: Scrubber,
        budget: GroupBudget,
        pipeline: SessionsOwner,
        submit: Callable[[Occurrence, bool], bool],
        backlog: Callable[[], int],
        note_internal_error: Callable[[BaseException | None], None],
    ) -> None:
        self.config = config
        self.signer = signer
        self.rules = rules
        self.metrics = metrics
        self.scrubber = scrubber
        self.budget = budget
        self._pipeline = pipeline
        self._submit = submit
        self._backlog = backlog
        # a backlog this long is pressure: known groups' ordinary repeats are only counted
        self._pressure = (
            max(PRESSURE_BACKLOG, config.queue_size // 10)
            if config.backlog_coalescing
            else sys.maxsize
        )
        self._coalescing = config.backlog_coalescing  # off: no backlog is pressure
        self.note_internal_error = note_internal_error
        self._marker = f"__error_exporter_{next(_front_ids)}__"
        # exception types known to need no coercion -> their __name__ (a builtin type's
        # __name__ is a new string at each read: one shared string per type instead)
        self._plain_types: dict[type, str] = {}
        # (error id, component, plugin) -> (severity, its counter, metrics generation)
        self._known: dict[tuple[str, Any, Any], tuple[str, Any, int]] = {}
        # None (option off), or one call: OpenTelemetry's span, else the request's traceparent
        self._trace = lookup_for(config.capture_trace_context)

    def capture(
        self,
        error: Any,
        component: Any,
        plugin: Any,
        operation: str,
        context: Any,
        severity: str | None,
        metadata: Any,
        user_id: str | None,
        session_id: str | None,
        mechanism: str,
        handled: bool,
        log_level: int | None,
        detail: bool = False,
    ) -> Occurrence | str | None:
        """Count, sign and queue one error. Returns the queued Occurrence, or the group id
        alone when this exception object was already recorded or, unless ``detail``, when
        its detail was coalesced (it is then built but not queued)."""
        try:  # until the error is counted: a failure is retried with more stack, or counted alone
            exc_type = type(error)
            type_name = self._plain_types.get(exc_type)
            if type_name is None:
                checked = self.admit(error)
                if checked is None:
                    return None
                error, exc_type = checked, type(checked)
                type_name = exc_type.__name__
            marker = self._marker
            seen = getattr(error, marker, None)
            if seen is not None:
                return str(seen) or None  # "": re-entered from this error's own __str__
            tb = error.__traceback__
            site: Site | None = None
            message: str | None
            if tb is not None:
                site = self.signer.site(exc_type, tb)
                error_id = site.error_id
                _mark(error, marker, error_id)  # before its __str__ runs: it may record it again
                message = None  # taken below, unless a storm's repeat is only counted
            else:
                _mark(error, marker, "")  # re-entered from its own __str__: "" below
                message = safe_text(error)
                key = getattr(error, GROUP_KEY_ATTRIBUTE, None)
                error_id = (
                    self.signer.sign_key(exc_type, key)
                    if type(key) is str
                    else self.signer.sign_message(exc_type, message)
                )
                _mark(error, marker, error_id)
                place = getattr(error, PLACE_ATTRIBUTE, None)
                if type(place) is tuple:  # never raised, but it knows where it comes from
                    site = Site(error_id, place)
            cfg = self.config
            if type(component) is not str:
                component = _label_text(component)
            if type(plugin) is not str:
                plugin = _label_text(plugin)
            trace = self._trace() if self._trace is not None else None
            now = time.time()
            # The common case is one lookup: severity and counter child cached per group + labels
            known = (
                self._known.get((error_id, component, plugin))
                if severity is None and log_level is None
                else None
            )
            if known is not None and known[2] == self.metrics.generation:
                level = known[0]
                known[1].count(error_id, trace, self.metrics.counts_at_once, now)
            else:
                level = self._count_slowly(
                    exc_type, error_id, component, plugin, severity, log_level, trace, now
                )
        except Exception as failure:
            # Out of stack (RecursionError), this frame may be the last: borrow more before
            # any Python call, with C calls only (exporter.capture.headroom).
            borrowed = type(failure) is RecursionError and headroom.LOCK.acquire(False)
            if borrowed and not headroom.LENT:
                headroom.LENT.append(sys.getrecursionlimit())
                sys.setrecursionlimit(headroom.LENT[0] + headroom.STACK_HEADROOM)
            return self._rescue(
                failure,
                borrowed,
                error,
                component,
                plugin,
                operation,
                context,
                severity,
                metadata,
                user_id,
                session_id,
                mechanism,
                handled,
                log_level,
                detail,
            )
        try:  # counted: a failure from here on loses the detail only (counted as a drop)
            sessions = self._pipeline.sessions
            explicit = session_id is not None
            unit = current_work.get()  # the request or job running here, if any
            session = None
            if not explicit:
                session_id = current_session.get()
                if session_id is not None:
                    session = sessions.active.get(session_id)
                if session is None and unit is not None:  # none set, or ended: the unit's
                    session_id = unit.ensure_session()  # session, started now
            if session is None and session_id is not None:
                session = sessions.active.get(session_id)
            if session is None and not explicit:  # none, ended, or another monitor's
                session_id = sessions.process_session_id
                session = sessions.active.get(session_id)
            if session is not None:
                session.errors += 1
                session.last_activity = now  # an error is activity: the session is not idle
                if not handled:
                    session.crashed = True
                if user_id is None:
                    user_id = session.user_id
            urgent = not handled or level in URGENT_SEVERITIES
            admitted = self.budget.admit(
                error_id,
                type_name,
                plugin,
                now,
                not urgent and self._coalescing and self._backlog() >= self._pressure,
            )
            if admitted == COALESCED and not detail:
                return error_id  # over this group's budget: counted, summarised on the group
            if message is None:
                message = safe_text(error)
            if len(message) > cfg.max_message_length:
                message = truncate(message, cfg.max_message_length)
            crumbs: tuple[Breadcrumb, ...] = ()
            if session is not None and session.breadcrumbs and cfg.enable_breadcrumbs:
                crumbs = crumbs_of(session)  # (none yet: the empty tuple, without a copy)
            chain = (
                summarize_chain(
                    error, message, self.signer, cfg.max_chain_depth, cfg.max_message_length
                )
                if has_chain(error)
                else None
            )
            try:
                if unit is not None:  # inside a request or job: the error carries it
                    context, operation = with_work(unit, context, operation)
                context = merged_context(context, error)
                # as it is now: the app may change these objects once this call returns
                snapshot = self.scrubber.snapshot
                if context is not None:
                    context = snapshot(context)
                if metadata is not None:
                    metadata = snapshot(metadata)
            except Exception as exc:  # a property or describe() that raised: keep what we have
                self.note_internal_error(exc)
            occurrence = new_occurrence(
                error_id,
                exc_type,
                message,
                site,
                chain,
                component,
                plugin,
                operation,
                level,
                now,
                context,
                metadata,
                user_id,
                session_id,
                threading.current_thread().name,
                crumbs,
                handled,
                mechanism,
                self.locals_of(tb) if cfg.capture_locals and tb is not None else None,
                trace,
                type_name,
            )
            if admitted != COALESCED:
                self._submit(occurrence, urgent or admitted == FIRST)
            return occurrence
        except Exception as failure:
            self.note_internal_error(failure)
            self.metrics.count_drop(DETAIL_LOST)
            return error_id

    def _rescue(
        self,
        failure: Exception,
        borrowed: bool,
        error: Any,
        component: Any,
        plugin: Any,
        operation: str,
        context: Any,
        severity: str | None,
        metadata: Any,
        user_id: str | None,
        session_id: str | None,
        mechanism: str,
        handled: bool,
        log_level: int | None,
        detail: bool,
    ) -> Occurrence | str | None:
        """The error could not be counted: never let it go uncounted.

        Raised a few frames below the recursion limit, the capture runs out of stack before
        it counts (``RecursionError``): it is retried once with more stack
        (:mod:`exporter.capture.headroom`), which keeps its detail too. Otherwise, or if the retry
        fails as well, it is counted under its type alone and its detail dropped as
        ``capture_failed``.
        """
        if borrowed:
            try:
                _unmark(error, self._marker)  # the retry must not take it for a repeat
                return self.capture(
                    error,
                    component,
                    plugin,
                    operation,
                    context,
                    severity,
                    metadata,
                    user_id,
                    session_id,
                    mechanism,
                    handled,
                    log_level,
                    detail,
                )
            finally:
                headroom.give_back_borrowed()
        self.note_internal_error(failure)
        try:
            exc_type = type(error) if isinstance(error, BaseException) else RuntimeError
            error_id = self.signer.sign_message(exc_type, "")  # its type's group
            self.metrics.count_error(
                exc_type.__name__,
                _label_text(component),
                _label_text(plugin),
                _severity(severity) or "medium",
                error_id,
            )
            self.metrics.count_drop(DETAIL_LOST)
            return error_id
        except Exception as second:
            self.note_internal_error(second)
            return None

    def _count_slowly(
        self,
        exc_type: type,
        error_id: str,
        component: str,
        plugin: str,
        severity: str | None,
        log_level: int | None,
        trace: tuple[int, int] | None,
        now: float,
    ) -> str:
        """Decide the severity and count the error; remember both for the group's next
        errors with the same labels (unless severity or log level were given)."""
        level = None
        if severity is None and log_level is None:
            level = self.rules.cached(exc_type, component)
        if level is None:
            level = self.rules.severity(exc_type, component, _severity(severity), log_level)
        count = self.metrics.count_error(
            exc_type.__name__, component, plugin, level, error_id, trace, now
        )
        if severity is None and log_level is None:
            if len(self._known) >= MAX_KNOWN:
                self._known = {}
            self._known[(error_id, component, plugin)] = (level, count, self.metrics.generation)
        return level

    def admit(self, error: Any) -> BaseException | None:
        """The slow path for a type not seen before: coerce non-exceptions, skip non-errors."""
        exception = error if isinstance(error, BaseException) else _as_exception(error)
        if is_not_an_error(exception):
            return None
        if isinstance(exception, Exception) and len(self._plain_types) < MAX_PLAIN_TYPES:
            self._plain_types[type(exception)] = type(exception).__name__
        return exception

    def locals_of(self, tb: TracebackType) -> dict[str, Any]:
        """``capture_locals``: the innermost frame's locals, copied (scrubbed, capped) here,
        so nothing of the frame crosses the queue."""
        while tb.tb_next is not None:
            tb = tb.tb_next
        try:
            cleaned = self.scrubber.clean(dict(tb.tb_frame.f_locals))
        except Exception:
            return {}
        return cleaned if isinstance(cleaned, dict) else {}


def _unmark(error: Any, marker: str) -> None:
    try:  # noqa: SIM105 - as in _mark
        delattr(error, marker)
    except Exception:
        pass


def _mark(error: BaseException, marker: str, error_id: str) -> None:
    """Remember on the exception that it was recorded (no reference kept on our side)."""
    try:  # noqa: SIM105 - contextlib.suppress costs more on this hot path
        setattr(error, marker, error_id)
    except Exception:
        pass  # an exception type that refuses attributes is simply not de-duplicated


def _severity(value: Any) -> str | None:
    if value is None:
        return None
    text = getattr(value, "value", value)
    text = str(text).lower()
    return text if text in SEVERITIES else None


def _as_exception(value: Any) -> BaseException:
    """record_error was handed something that is not an exception: record it as one."""
    return RuntimeError(safe_text(value))
