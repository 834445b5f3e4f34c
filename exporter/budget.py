"""Storm coalescing on the caller's thread: a per-group budget of detailed occurrences.

Each group may queue ``per_second`` occurrences one by one each second; beyond that an
occurrence is only counted here (exactly, under a lock), and the worker adds the counts
to its group on its next tick. So one storming error can never fill the queue: first-seen
groups and other groups' occurrences always get through. The exact per-label counts live
in ``app_errors_total`` regardless; what a storm loses is only the detail of its repeats.
"""

from __future__ import annotations

import threading

MAX_TRACKED_GROUPS = 20000

COALESCED = 0  # counted only
QUEUE = 1  # queue it, an ordinary repeat
FIRST = 2  # queue it: the first occurrence this budget has seen of the group


class _State:
    __slots__ = ("error_type", "last_seen", "pending", "second", "sent")

    def __init__(self, error_type: str, now: float) -> None:
        self.error_type = error_type
        self.second = int(now)
        self.sent = 1
        self.last_seen = now
        self.pending: dict[str, int] = {}  # plugin -> occurrences coalesced since the drain


class GroupBudget:
    """Decides, per occurrence, whether its detail is queued or only counted."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._states: dict[str, _State] = {}
        self._dirty: dict[str, _State] = {}
        self._lock = threading.Lock()

    def admit(self, error_id: str, error_type: str, plugin: str, now: float) -> int:
        state = self._states.get(error_id)
        if state is None:
            if len(self._states) >= MAX_TRACKED_GROUPS:
                self._states = {}  # pending counts stay reachable through _dirty
            self._states[error_id] = _State(error_type, now)
            return FIRST
        state.last_seen = now
        second = int(now)
        if state.second != second:
            state.second = second
            state.sent = 1
            return QUEUE
        state.sent += 1
        if state.sent <= self.per_second:
            return QUEUE
        with self._lock:
            pending = state.pending
            pending[plugin] = pending.get(plugin, 0) + 1
            self._dirty[error_id] = state
        return COALESCED

    def drain(self) -> list[tuple[str, str, str, int, float]]:
        """(error_id, error_type, plugin, count, last seen) coalesced since the last drain."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            out = []
            for error_id, state in dirty.items():
                for plugin, count in state.pending.items():
                    out.append((error_id, state.error_type, plugin, count, state.last_seen))
                state.pending = {}
        return out

    def last_seen(self, error_id: str) -> float | None:
        """When the group last occurred in this process (as the caller recorded it)."""
        state = self._states.get(error_id)
        return state.last_seen if state is not None else None

    def reset(self) -> None:
        self._states = {}
        self._dirty = {}
        self._lock = threading.Lock()
