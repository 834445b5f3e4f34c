"""Reads that see one moment: settle (wait for queued reports) once, then read.

The export is made of several reads (statistics, groups, records, patterns); each would
settle on its own. Inside :meth:`ReadOnce.scope` the nested reads skip their settle.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class ReadOnce:
    """Per-thread flag: is this thread already inside a settled read?"""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def active(self) -> bool:
        return getattr(self._local, "active", False)

    @contextlib.contextmanager
    def scope(self, settle: Callable[[], object]) -> Iterator[None]:
        outer = self.active
        if not outer:
            settle()
        self._local.active = True
        try:
            yield
        finally:
            self._local.active = outer
