"""Capture hooks, one small module each: installed by ``start()``, removed by ``stop()``.

Every hook chains to whatever was installed before it and, on removal, restores it only
if nobody replaced ours in the meantime (otherwise it turns itself into a pass-through).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..monitor import ErrorMonitor


class Integration(Protocol):
    def install(self, monitor: ErrorMonitor) -> None: ...

    def uninstall(self) -> None: ...


def is_not_an_error(exc: BaseException | None) -> bool:
    """KeyboardInterrupt and a clean SystemExit are how programs stop, not errors."""
    if exc is None or isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
        return True
    return isinstance(exc, SystemExit) and exc.code in (None, 0)
