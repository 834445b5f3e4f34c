"""Lock-free counting for the capture path.

``next()`` on an ``itertools.count`` is one C call, atomic under the GIL: callers on any
thread count with it without a lock, and a reader learns the count from the counter itself.
"""

from __future__ import annotations

import itertools


def count_value(counter: itertools.count[int]) -> int:
    """How many times ``next()`` was called on a counter started at 0 (its next value)."""
    return int(repr(counter)[6:-1])


__all__ = ["count_value"]
