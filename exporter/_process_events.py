"""Process events a monitor must follow: interpreter exit and ``os.fork()``.

Both are registered once per monitor and hold it weakly, so a monitor the app drops is
not kept alive by them. The standard ``process_*`` / ``python_*`` collectors are here too:
they describe the process, not the errors.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # imported when the monitor's registry is first needed
    from prometheus_client import CollectorRegistry


class ProcessAware(Protocol):
    def _at_exit(self) -> None: ...

    def _before_fork(self) -> None: ...

    def _after_fork_in_parent(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...


def register_exit_hook(monitor: ProcessAware) -> None:
    """Flush (bounded) at interpreter exit."""
    atexit.register(_exit_hook, weakref.ref(monitor))


def _exit_hook(ref: weakref.ref[ProcessAware]) -> None:
    monitor = ref()
    if monitor is not None:
        with contextlib.suppress(Exception):
            monitor._at_exit()


def register_standard_collectors(registry: CollectorRegistry) -> None:
    """process_* / python_* from prometheus_client's own collectors, for the monitor's server.

    Only on the monitor's private registry: a registry the user supplies has its own.
    """
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        with contextlib.suppress(Exception):
            registry.register(collector)


def register_fork_handler(monitor: ProcessAware) -> None:
    if not hasattr(os, "register_at_fork"):
        return  # pragma: no cover - Windows
    ref = weakref.ref(monitor)

    def before() -> None:
        target = ref()
        if target is not None:
            target._before_fork()

    def parent() -> None:
        target = ref()
        if target is not None:
            target._after_fork_in_parent()

    def child() -> None:
        target = ref()
        if target is not None:
            target._after_fork_in_child()

    os.register_at_fork(before=before, after_in_parent=parent, after_in_child=child)


class ForkSafeLock:
    """A module-level lock that a child process gets anew.

    Another thread of the parent may hold it at ``os.fork()``; that thread does not exist
    in the child, so nothing there would ever release it. The child replaces it (in the
    order the locks were made, before any monitor's own fork handler runs). If the forking
    thread itself held it, its ``with`` ends on the new, free lock: nothing to release.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(RuntimeError):  # released already: renewed by a fork
            self._lock.release()
