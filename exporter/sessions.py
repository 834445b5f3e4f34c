"""Sessions and their breadcrumbs.

A session is a unit of use (a user's run, a request, the whole process by default). Each
ended session is counted by how it ended, so a crash-free ratio can be computed:
``exited`` (no error), ``errored`` (handled errors), ``crashed`` (an unhandled error),
``abnormal`` (never ended: timed out or still open at exit). The current session follows
the code through threads and asyncio tasks via a context variable.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from exporter.capture.ids import new_id
from exporter.capture.tally import count_value
from exporter.capture.work_unit import current_work
from exporter.model import Breadcrumb

STATUSES = ("exited", "errored", "crashed", "abnormal")
MAX_ACTIVE_SESSIONS = 10000

current_session: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "error_exporter_session", default=None
)


@dataclass
class Session:
    session_id: str
    user_id: str | None
    started: float
    last_activity: float
    errors: int = 0
    crashed: bool = False
    breadcrumbs: deque[Breadcrumb] = field(default_factory=deque)

    def status(self) -> str:
        if self.crashed:
            return "crashed"
        return "errored" if self.errors else "exited"


def crumbs_of(session: Session) -> tuple[Breadcrumb, ...]:
    """The session's breadcrumbs as they are now, while other threads may add more.

    ``deque.copy()`` runs in C without giving up the GIL; ``tuple(deque)`` may (the tuple it
    allocates can start a garbage collection whose finalizers let another thread append),
    and then fails with "deque mutated during iteration".
    """
    return tuple(session.breadcrumbs.copy())


class SessionTracker:
    """Active sessions, ended-session counts and per-session breadcrumbs."""

    def __init__(self, timeout: float, max_breadcrumbs: int) -> None:
        self.timeout = timeout
        self.max_breadcrumbs = max_breadcrumbs
        self.active: OrderedDict[str, Session] = OrderedDict()
        self._ended: dict[str, int] = dict.fromkeys(STATUSES, 0)
        # sessions that never needed an object (count_ended): counted without the lock
        self._counted = {status: itertools.count() for status in STATUSES}
        self.users: set[str] = set()
        self._lock = threading.Lock()
        self.process_session_id = self.start(None)

    def after_fork(self) -> None:
        """Another thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def start(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        started: float | None = None,
    ) -> str:
        """A new active session (``started``: when its unit of work began, if earlier)."""
        session_id = session_id or new_id()
        now = time.time()
        with self._lock:
            self.active[session_id] = Session(
                session_id,
                user_id,
                now if started is None else started,
                now,
                breadcrumbs=deque(maxlen=self.max_breadcrumbs),
            )
            if user_id is not None and len(self.users) < 100000:
                self.users.add(str(user_id))
            while len(self.active) > MAX_ACTIVE_SESSIONS:
                _, _oldest = self.active.popitem(last=False)
                self._ended["abnormal"] += 1
        return session_id

    def end(self, session_id: str | None = None, status: str | None = None) -> str | None:
        """End a session; its status is computed from its errors unless given."""
        session_id = session_id or self.current_id()
        with self._lock:
            session = self.active.pop(session_id, None)
            if session is None:
                return None
            final = status if status in STATUSES else session.status()
            self._ended[final] += 1
            if session_id == self.process_session_id:
                self.process_session_id = ""
            return final

    def count_ended(self, status: str) -> None:
        """A session that ended without ever needing an object: a request or job that met no
        error and left no breadcrumb of its own is counted, never built."""
        next(self._counted[status])  # one C call, atomic: no lock on every request

    @property
    def ended(self) -> dict[str, int]:
        """Ended sessions by status, those built and those only counted."""
        counted = self._counted
        return {status: n + count_value(counted[status]) for status, n in self._ended.items()}

    @ended.setter
    def ended(self, counts: dict[str, int]) -> None:
        """Replace the counts (a reader loading them from a store)."""
        with self._lock:
            self._ended = {status: int(counts.get(status, 0)) for status in STATUSES}
            self._counted = {status: itertools.count() for status in STATUSES}

    def current_id(self) -> str:
        """This thread's / task's session (its unit of work's, started on demand); the
        process session when it has none, or when its session has ended or belongs to
        another monitor."""
        session_id = current_session.get()
        if session_id is not None and session_id in self.active:
            return session_id
        unit = current_work.get()  # none set, or ended: the unit of work's, started now
        if unit is not None:
            session_id = unit.ensure_session()
            if session_id is not None and session_id in self.active:
                return session_id
        return self.process_session_id

    def get(self, session_id: str | None) -> Session | None:
        return self.active.get(session_id or self.current_id())

    def user_of(self, session_id: str | None) -> str | None:
        session = self.get(session_id)
        return session.user_id if session else None

    def add_breadcrumb(self, crumb: Breadcrumb, session_id: str | None = None) -> None:
        session = self.get(session_id)
        if session is not None:
            session.breadcrumbs.append(crumb)
            session.last_activity = crumb.timestamp

    def breadcrumbs(self, session_id: str | None = None) -> tuple[Breadcrumb, ...]:
        session = self.get(session_id)
        return crumbs_of(session) if session is not None else ()

    def mark_error(self, session_id: str | None, crashed: bool = False) -> None:
        session = self.get(session_id)
        if session is not None:
            session.errors += 1
            session.last_activity = time.time()
            if crashed:
                session.crashed = True

    def expire(self, now: float | None = None) -> int:
        """End sessions idle longer than the timeout as abnormal; the process session stays."""
        now = time.time() if now is None else now
        expired = 0
        with self._lock:
            for sid in [
                s.session_id
                for s in self.active.values()
                if now - s.last_activity > self.timeout and s.session_id != self.process_session_id
            ]:
                del self.active[sid]
                self._ended["abnormal"] += 1
                expired += 1
        return expired

    def end_all(self) -> None:
        """At shutdown: the process session ends by its own status, the rest as abnormal."""
        for sid in list(self.active):
            self.end(sid, None if sid == self.process_session_id else "abnormal")

    @property
    def active_count(self) -> int:
        return len(self.active)

    def summary(self) -> dict[str, object]:
        ended = self.ended
        total = sum(ended.values())
        return {
            "active": self.active_count,
            "ended": ended,
            "total_ended": total,
            "crash_free_ratio": (1 - ended["crashed"] / total) if total else 1.0,
            "users": len(self.users),
        }
