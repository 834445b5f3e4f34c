"""Sessions and recovery: the part of a monitor's front door that follows units of use.

A session groups the breadcrumbs and errors of one user's run, request or job; a recovery
is the app's own attempt to get over an error, timed from that error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Protocol

from exporter.capture.budget import GroupBudget
from exporter.integrations import is_not_an_error
from exporter.metrics.capture_path import ErrorMetrics
from exporter.pipeline.background_queue import BackgroundQueue
from exporter.pipeline.ingest import Recovery
from exporter.sessions import SessionTracker, current_session


class Front(Protocol):
    """What sessions and recovery use of the monitor."""

    metrics: ErrorMetrics
    _budget: GroupBudget
    _reports: BackgroundQueue

    @property
    def sessions(self) -> SessionTracker: ...

    def capture_exception(
        self,
        error: BaseException,
        *,
        mechanism: str,
        handled: bool = True,
        session_id: str | None = None,
    ) -> str | None: ...

    def note_internal_error(self, exc: BaseException | None = None) -> None: ...

    def record_recovery(
        self,
        success: bool,
        duration_seconds: float | None = None,
        component: str = "",
        plugin: str = "",
        error_id: str | None = None,
    ) -> None: ...

    def _recovery_seconds(self, started: float, error_id: str | None) -> float | None: ...


class SessionsAndRecovery:
    """``start_session`` / ``session()`` / ``end_session`` and ``record_recovery`` /
    ``recovery()`` of :class:`~exporter.monitor.ErrorMonitor`."""

    def start_session(
        self: Front, user_id: str | None = None, session_id: str | None = None
    ) -> str:
        """Begin a session and make it current in this thread / task."""
        sid = self.sessions.start(None if user_id is None else str(user_id), session_id)
        current_session.set(sid)
        return sid

    def end_session(
        self: Front, session_id: str | None = None, status: str | None = None
    ) -> str | None:
        ended = self.sessions.end(session_id, status)
        if session_id is None or current_session.get() == session_id:
            current_session.set(None)
        return ended

    @contextlib.contextmanager
    def session(
        self: Front, user_id: str | None = None, session_id: str | None = None
    ) -> Iterator[str]:
        """A session for a block: an exception escaping it makes it ``crashed``."""
        sid = self.sessions.start(None if user_id is None else str(user_id), session_id)
        token = current_session.set(sid)
        try:
            yield sid
        except BaseException as exc:
            if not is_not_an_error(exc):
                self.capture_exception(exc, mechanism="session", handled=False, session_id=sid)
                self.sessions.end(sid, "crashed")
            else:
                self.sessions.end(sid)
            raise
        else:
            self.sessions.end(sid)
        finally:
            current_session.reset(token)

    def record_recovery(
        self: Front,
        success: bool,
        duration_seconds: float | None = None,
        component: str = "",
        plugin: str = "",
        error_id: str | None = None,
    ) -> None:
        """Count a recovery attempt and mark the error's group.

        The duration observed is, when not given, the time from the latest occurrence of
        ``error_id`` in this process to now (the moment the recovery finished).
        """
        try:
            if duration_seconds is None and error_id:
                last = self._budget.last_seen(error_id)
                if last is not None:
                    duration_seconds = max(0.0, time.time() - last)
            self.metrics.count_recovery(component, plugin, success, duration_seconds)
            if error_id:
                self._reports.submit(Recovery(error_id, bool(success)))
        except Exception:
            self.note_internal_error()

    @contextlib.contextmanager
    def recovery(
        self: Front, component: str = "", plugin: str = "", error_id: str | None = None
    ) -> Iterator[None]:
        """A recovery block: success when it completes, failure when it raises.

        Its duration is the time from the error ``error_id`` (its latest occurrence) to the
        end of the block; without ``error_id``, the block's own duration.
        """
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.record_recovery(
                False, self._recovery_seconds(started, error_id), component, plugin, error_id
            )
            raise
        self.record_recovery(
            True, self._recovery_seconds(started, error_id), component, plugin, error_id
        )

    def _recovery_seconds(self: Front, started: float, error_id: str | None) -> float | None:
        if error_id and self._budget.last_seen(error_id) is not None:
            return None  # record_recovery measures from the error itself
        return time.perf_counter() - started
