"""A bounded queue drained by one daemon thread: where the slow work goes.

``submit`` is what the caller's thread pays: a length check and a ``deque.append``
(atomic under the GIL), plus waking the worker only when it sleeps. A full queue drops
the item and reports the drop; the caller never waits. ``flush`` waits for what was
queued before it, with a timeout, so shutdown can never hang.

Two lanes, each bounded. Items are handled in order while the queue is short; behind a
backlog, ``urgent`` items (a group's first occurrence, high and critical errors, crashes)
take their own lane and are handled first, so a storm queued in the ordinary lane never
delays or drops them. ``on_tick`` runs on the worker about every
``TICK_SECONDS`` and before each flush mark is answered (periodic upkeep that must also
be visible to a reader that flushed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("exporter.pipeline.background_queue")
IDLE_WAIT_SECONDS = 0.25
FLUSH_POLL_SECONDS = 0.05
TICK_SECONDS = 0.25
URGENT_BACKLOG = 64  # ordinary items queued before urgent ones stop waiting behind them


class _FlushMark:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class BackgroundQueue:
    """Bounded FIFO + one worker thread calling ``handle(item)`` for each item."""

    def __init__(
        self,
        name: str,
        maxsize: int,
        handle: Callable[[Any], None],
        on_drop: Callable[[], None],
        on_error: Callable[[BaseException], None],
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        self.handle = handle
        self.on_drop = on_drop
        self.on_error = on_error
        self.on_tick = on_tick
        self._reset()

    def _reset(self) -> None:
        self._items: deque[Any] = deque()
        self._urgent: deque[Any] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._stop_flag: list[bool] = [False]  # the running thread's own (see start)
        self._thread: threading.Thread | None = None
        self.processed = 0

    # -- caller side -------------------------------------------------------------------
    def submit(self, item: Any, urgent: bool = False) -> bool:
        """Queue ``item``. Order is kept while the ordinary lane is short; behind a backlog
        (a storm) an ``urgent`` item takes the urgent lane: handled first, its own room."""
        lane = self._items
        if urgent and len(lane) >= URGENT_BACKLOG:
            lane = self._urgent
        if len(lane) >= self.maxsize:
            self.on_drop()
            return False
        lane.append(item)
        if self._idle:
            self._wake.set()
        return True

    def backlog(self) -> int:
        """Items waiting in the ordinary lane (cheap: the capture path asks per error)."""
        return len(self._items)

    @property
    def depth(self) -> int:
        return len(self._urgent) + sum(
            1 for i in list(self._items) if not isinstance(i, _FlushMark)
        )

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        # Each thread gets its own stop flag: a thread told to stop that has not seen it
        # yet (it waits for the GIL) must not be revived by the next start's fresh flag.
        self._stop_flag = [False]
        self._thread = threading.Thread(
            target=self._run, args=(self._stop_flag,), name=self.name, daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued before this call is handled. False on timeout."""
        if not self.alive:
            return not self._items and not self._urgent
        thread = self._thread
        if thread is None or threading.current_thread() is thread:
            return False
        mark = _FlushMark()
        self._items.append(mark)
        self._wake.set()
        # Wait in slices: a worker told to stop may exit before it reaches the mark, and
        # nobody would ever set it (a reader settling while the monitor shuts down).
        deadline = time.monotonic() + timeout
        while not mark.done.wait(min(FLUSH_POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            if not thread.is_alive():
                return self.depth == 0
            if time.monotonic() >= deadline:
                return False
        return True

    def stop(self, timeout: float) -> bool:
        """Drain for at most ``timeout`` seconds, then let the daemon thread go."""
        drained = self.flush(timeout)
        self._stop_flag[0] = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=min(timeout, 0.5) if drained else 0.0)
        self._thread = None
        return drained

    def _tick(self) -> None:
        if self.on_tick is not None:
            try:
                self.on_tick()
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    self.on_error(exc)

    def after_fork_in_child(self) -> None:
        """The parent's thread does not exist here and its queued items are the parent's."""
        self._reset()

    # -- worker side ---------------------------------------------------------------------
    def _run(self, stop_flag: list[bool]) -> None:
        items, urgent = self._items, self._urgent
        next_tick = time.monotonic() + TICK_SECONDS
        while True:
            if stop_flag[0]:  # what was queued before stop() is done (it drained first);
                self._tick()  # later items wait for the next start's thread
                return
            if self.on_tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_SECONDS
                self._tick()
            try:
                item = urgent.popleft() if urgent else items.popleft()
            except IndexError:
                self._idle = True
                if not items and not urgent:
                    self._wake.wait(IDLE_WAIT_SECONDS)
                    self._wake.clear()
                self._idle = False
                continue
            if isinstance(item, _FlushMark):
                self._tick()
                item.done.set()
                continue
            try:
                self.handle(item)
            except BaseException as exc:  # the worker must survive anything
                with contextlib.suppress(Exception):
                    self.on_error(exc)
            self.processed += 1
