"""Sliding-window pattern detection, O(1) amortized per error and bounded in memory.

Each key (an error type, or a signature) keeps a short deque of time buckets with counts
(``BUCKETS_PER_WINDOW`` per window), so adding an error touches one bucket and expiring
old ones pops from the left; nothing ever scans the whole record buffer. A key at or
above the threshold is a pattern: warning, above 2x error, above 3x critical (``ErrorAggregator``'s
rule). When its window empties the pattern decays back to none.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime

from exporter.model import PATTERN_SEVERITY_VALUE, ErrorPattern

BUCKETS_PER_WINDOW = 60
MAX_SAMPLE_MESSAGES = 3
MAX_AFFECTED_PLUGINS = 50


class WindowCount:
    """Counts in a sliding window of ``window`` seconds, in buckets."""

    __slots__ = ("bucket_width", "buckets", "total", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.bucket_width = window / BUCKETS_PER_WINDOW
        self.buckets: deque[list[float]] = deque()
        self.total = 0

    def add(self, now: float, amount: int = 1) -> int:
        width = self.bucket_width
        start = now - (now % width)
        buckets = self.buckets
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] += amount
        else:
            buckets.append([start, amount])
        self.total += amount
        cutoff = now - self.window  # expire, inline (once per error: a call costs more)
        while buckets[0][0] + width <= cutoff:
            self.total -= int(buckets.popleft()[1])
            if not buckets:
                break
        return self.total

    def expire(self, now: float) -> int:
        cutoff = now - self.window
        buckets = self.buckets
        while buckets and buckets[0][0] + self.bucket_width <= cutoff:
            self.total -= int(buckets.popleft()[1])
        return self.total


class _Tracked:
    __slots__ = ("affected_plugins", "error_type", "first_seen", "last_seen", "samples", "window")

    def __init__(self, error_type: str, window: float) -> None:
        self.error_type = error_type
        self.window = WindowCount(window)
        self.first_seen = 0.0
        self.last_seen = 0.0
        self.samples: list[str] = []
        self.affected_plugins: list[str] = []


def severity_for(count: int, threshold: int) -> str:
    if count > threshold * 3:
        return "critical"
    if count > threshold * 2:
        return "error"
    if count >= threshold:
        return "warning"
    return "none"


class PatternDetector:
    """Tracks keys and reports new patterns through ``on_new_pattern``."""

    def __init__(
        self,
        threshold: int,
        window_seconds: float,
        max_keys: int = 1000,
        on_new_pattern: Callable[[ErrorPattern], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.threshold = threshold
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self.on_new_pattern = on_new_pattern
        self.clock = clock
        self._tracked: OrderedDict[tuple[str, str], _Tracked] = OrderedDict()
        self._active: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """Another thread of the parent may have held the lock at the fork."""
        self._lock = threading.Lock()

    def observe(
        self,
        error_type: str,
        signature: str,
        message: str,
        plugin: str,
        now: float | None = None,
        amount: int = 1,
    ) -> list[ErrorPattern]:
        """Count errors under their type and signature; return patterns that just began."""
        now = self.clock() if now is None else now
        started = []
        tracked_keys = self._tracked
        with self._lock:
            for key in (("type", error_type), ("signature", signature)):
                tracked = tracked_keys.get(key)
                if tracked is None:
                    pattern = self._observe_key(key, error_type, message, plugin, now, amount)
                    if pattern is not None:
                        started.append(pattern)
                    continue
                # a key already tracked (nearly every error): _observe_key, inline
                tracked_keys.move_to_end(key)
                # tracked.window.add(now, amount), inline
                window = tracked.window
                width = window.bucket_width
                start = now - (now % width)
                buckets = window.buckets
                if buckets and buckets[-1][0] == start:
                    buckets[-1][1] += amount
                else:
                    buckets.append([start, amount])
                count = window.total + amount
                cutoff = now - window.window
                while buckets[0][0] + width <= cutoff:
                    count -= int(buckets.popleft()[1])
                    if not buckets:
                        break
                window.total = count
                if count == amount:
                    tracked.first_seen = now
                    tracked.samples.clear()
                    tracked.affected_plugins.clear()
                tracked.last_seen = now
                samples = tracked.samples
                if message and len(samples) < MAX_SAMPLE_MESSAGES and message not in samples:
                    samples.append(message[:500])
                plugins = tracked.affected_plugins
                if plugin and len(plugins) < MAX_AFFECTED_PLUGINS and plugin not in plugins:
                    plugins.append(plugin)
                if count >= self.threshold and key not in self._active:
                    self._active.add(key)
                    started.append(self._pattern(key, tracked, count))
        if started and self.on_new_pattern is not None:
            for pattern in started:
                self.on_new_pattern(pattern)
        return started

    def _observe_key(
        self,
        key: tuple[str, str],
        error_type: str,
        message: str,
        plugin: str,
        now: float,
        amount: int = 1,
    ) -> ErrorPattern | None:
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = _Tracked(error_type, self.window_seconds)
            self._tracked[key] = tracked
            if len(self._tracked) > self.max_keys:
                evicted, _ = self._tracked.popitem(last=False)
                self._active.discard(evicted)
        else:
            self._tracked.move_to_end(key)
        count = tracked.window.add(now, amount)
        if count == amount:
            tracked.first_seen = now
            tracked.samples.clear()
            tracked.affected_plugins.clear()
        tracked.last_seen = now
        samples = tracked.samples
        if message and len(samples) < MAX_SAMPLE_MESSAGES and message not in samples:
            samples.append(message[:500])
        plugins = tracked.affected_plugins
        if plugin and plugin not in plugins and len(plugins) < MAX_AFFECTED_PLUGINS:
            plugins.append(plugin)
        if count >= self.threshold and key not in self._active:
            self._active.add(key)
            return self._pattern(key, tracked, count)
        return None

    def _pattern(self, key: tuple[str, str], tracked: _Tracked, count: int) -> ErrorPattern:
        return ErrorPattern(
            error_type=tracked.error_type,
            count=count,
            first_seen=datetime.fromtimestamp(tracked.first_seen),
            last_seen=datetime.fromtimestamp(tracked.last_seen),
            affected_plugins=list(tracked.affected_plugins),
            sample_messages=list(tracked.samples),
            severity=severity_for(count, self.threshold),
            key=key[1],
            kind=key[0],
        )

    def active(self, kind: str | None = None, now: float | None = None) -> list[ErrorPattern]:
        """Patterns still at or above the threshold; decayed ones are dropped here."""
        now = self.clock() if now is None else now
        out = []
        with self._lock:
            for key in list(self._active):
                tracked = self._tracked[key]
                count = tracked.window.expire(now)
                if count < self.threshold:
                    self._active.discard(key)
                    continue
                if kind is None or key[0] == kind:
                    out.append(self._pattern(key, tracked, count))
        return out

    def type_levels(self, now: float | None = None) -> dict[str, tuple[int, int]]:
        """Per error type: (window count, severity level 0..3), for every tracked type."""
        now = self.clock() if now is None else now
        out = {}
        with self._lock:
            for (kind, name), tracked in self._tracked.items():
                if kind != "type":
                    continue
                count = tracked.window.expire(now)
                level = PATTERN_SEVERITY_VALUE[severity_for(count, self.threshold)]
                if level == 0:
                    self._active.discard((kind, name))
                out[name] = (count, level)
        return out
