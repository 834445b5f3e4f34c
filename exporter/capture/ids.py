"""Ids for requests and sessions, unique in a fleet, without a system call each.

``uuid4`` reads the system's random source on every call; a request or a session needs an
id that no other process and no later run gives out, not an unguessable one. So: 16 random
hex characters drawn once per process (again in a forked child, so workers never share
them) and a counter, 32 hex characters in all, the shape of a ``uuid4().hex``.
"""

from __future__ import annotations

import itertools
import os


class UniqueIds:
    """A per-process random prefix and a counter."""

    def __init__(self) -> None:
        self._reseed()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        # from 2**60: always 16 hex digits (2**64 is 2**60 ids away), so hex() needs no format
        self.counter = itertools.count((1 << 60) | int.from_bytes(os.urandom(4), "big"))

    def new(self) -> str:
        return self.prefix + hex(next(self.counter))[2:]


new_id = UniqueIds().new
