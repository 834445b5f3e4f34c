"""Histogram observations in batches: many timings into a child with each touched bucket
and the sum incremented once, and timings kept in pure Python before a child exists.

The per-request path only appends a timing to a queue (:mod:`.capture_path`); these put
them where ``Histogram.observe`` would have, one batch per label set, on the thread that
applies them (the worker's tick or a read).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class TimingTally:
    """Timings of one label set kept in pure Python until the families exist (a bounded
    stand-in for the histogram child): per bucket (the first bound >= the value, negatives
    as 0, as ``Histogram.observe``) how many and their sum."""

    __slots__ = ("bounds", "counts", "sums")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds  # the family's buckets, without +Inf
        self.counts = [0] * (len(bounds) + 1)
        self.sums = [0.0] * (len(bounds) + 1)

    def add(self, values: Iterable[float]) -> None:
        find, bounds, counts, sums = bisect.bisect_left, self.bounds, self.counts, self.sums
        for seconds in values:
            if seconds < 0.0:
                seconds = 0.0
            index = find(bounds, seconds)
            counts[index] += 1
            sums[index] += seconds


class BulkObserver:
    """Observes many values into a histogram child at once, as ``Histogram.observe`` would
    one by one (each into the first bucket whose bound is >= it, negatives as 0), with each
    touched bucket and the sum incremented once; or adds a :class:`TimingTally` the same way. A
    child whose internals differ (another prometheus_client) keeps its own ``observe``."""

    def __init__(self, child: Any) -> None:
        self._observe: Callable[[float], None] = child.observe
        self._increments: list[Callable[[float], None]] | None = None
        try:
            bounds = list(child._upper_bounds)
            increments = [bucket.inc for bucket in child._buckets]
            add_to_sum = child._sum.inc
            if len(bounds) != len(increments) or bounds[-1] != float("inf"):
                raise TypeError("unexpected buckets")
        except (AttributeError, TypeError, IndexError):
            return
        self._bounds = bounds
        self._increments = increments
        self._add_to_sum: Callable[[float], None] = add_to_sum

    def __call__(self, values: Sequence[float]) -> None:
        increments = self._increments
        if increments is None:
            for seconds in values:
                self._observe(max(seconds, 0.0))
            return
        find, bounds = bisect.bisect_left, self._bounds
        counts = [0] * len(bounds)
        total = 0.0
        for seconds in values:
            if seconds < 0.0:
                seconds = 0.0
            total += seconds
            counts[find(bounds, seconds)] += 1
        self._add_to_sum(total)
        for index, count in enumerate(counts):
            if count:
                increments[index](count)

    def add(self, tally: TimingTally) -> None:
        """A tally's timings (made with this child's buckets). Without the child's
        internals each bucket's timings are observed at their mean: it lies in that bucket,
        so the buckets and the sum are still right."""
        increments = self._increments
        for index, (count, total) in enumerate(zip(tally.counts, tally.sums, strict=True)):
            if not count:
                continue
            if increments is None:
                for _ in range(count):
                    self._observe(total / count)
            else:
                increments[index](count)
                self._add_to_sum(total)
