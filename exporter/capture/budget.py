"""Storm coalescing on the caller's thread: a per-group budget of detailed occurrences.

Each group may queue ``per_second`` occurrences one by one each second; beyond that an
occurrence is only counted here, and the worker adds the counts to its group on its next
tick. The count is exact without a lock (a lock taken by every storming thread would make
them queue behind each other): ``next()`` on an ``itertools.count`` is one atomic C call,
the counters only grow, and the worker delivers the difference since its last drain.

So one storming error can never fill the queue: first-seen groups and other groups'
occurrences always get through. Under pressure (the queue holds a backlog: many groups
storming at once, faster than the worker formats them) a known group's repeats are only
counted too, before they would wait behind the backlog or be dropped with a full queue.
The exact per-label counts live in ``app_errors_total`` regardless; what a storm loses is
only the detail of its repeats.
"""

from __future__ import annotations

import itertools

from exporter.capture.tally import count_value

MAX_TRACKED_GROUPS = 20000

COALESCED = 0  # counted only
QUEUE = 1  # queue it, an ordinary repeat
FIRST = 2  # queue it: the first occurrence this budget has seen of the group


class _State:
    __slots__ = ("delivered", "error_type", "last_seen", "pending", "second", "sent")

    def __init__(self, error_type: str, now: float) -> None:
        self.error_type = error_type
        self.second = int(now)
        self.sent = 1  # approximate under races: it only decides where the budget ends
        self.last_seen = now
        self.pending: dict[str, itertools.count[int]] = {}  # plugin -> coalesced so far
        self.delivered: dict[str, int] = {}  # plugin -> handed to the worker (worker only)


class GroupBudget:
    """Decides, per occurrence, whether its detail is queued or only counted."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._states: dict[str, _State] = {}
        self._dirty: dict[_State, str] = {}  # states with counts not yet delivered -> error id

    def admit(
        self, error_id: str, error_type: str, plugin: str, now: float, pressed: bool = False
    ) -> int:
        """FIRST, QUEUE or COALESCED for one occurrence. ``pressed``: the queue has a
        backlog, so a known group's repeat is only counted even within its budget (its
        detail would wait behind the backlog, or be dropped with it)."""
        state = self._states.get(error_id)
        if state is None:
            if len(self._states) >= MAX_TRACKED_GROUPS:
                self._states = {}  # undelivered counts stay reachable through _dirty
            fresh = _State(error_type, now)
            state = self._states.setdefault(error_id, fresh)  # one state per id, even in a race
            if state is fresh:
                return FIRST
        state.last_seen = now
        second = int(now)
        if state.second != second:
            state.second = second
            state.sent = 0
        if state.sent < self.per_second and not pressed:
            state.sent += 1
            return QUEUE
        counter = state.pending.get(plugin)
        if counter is None:
            counter = state.pending.setdefault(plugin, itertools.count())
        next(counter)
        self._dirty[state] = error_id  # after counting: the worker pops before reading
        return COALESCED

    def drain(self) -> list[tuple[str, str, str, int, float]]:
        """(error_id, error_type, plugin, count, last seen) coalesced since the last drain.

        Worker thread only. A group is un-marked before its counters are read, so a count
        made meanwhile is either seen now or leaves the mark for the next drain.
        """
        out = []
        for state in list(self._dirty):
            error_id = self._dirty.pop(state, None)
            if error_id is None:
                continue
            for plugin, counter in list(state.pending.items()):
                total = count_value(counter)
                delta = total - state.delivered.get(plugin, 0)
                if delta > 0:
                    state.delivered[plugin] = total
                    out.append((error_id, state.error_type, plugin, delta, state.last_seen))
        return out

    def last_seen(self, error_id: str) -> float | None:
        """When the group last occurred in this process (as the caller recorded it)."""
        state = self._states.get(error_id)
        return state.last_seen if state is not None else None

    def reset(self) -> None:
        self._states = {}
        self._dirty = {}
