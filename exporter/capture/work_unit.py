"""The unit of work (a request, a job) running in this context, for every error inside it.

A request's or a job's own failure was always reported with what describes the unit (the
request's method, route and id; a job's name and id). An error the app records itself,
logs, or captures with ``capture()`` while the unit runs belongs to it just as much, so
:class:`~exporter.integrations.scope.WorkScope` makes itself the current unit here while it
runs, and the capture front adds the unit's context and operation to every occurrence queued
in detail. What the call itself says wins: its own context keys and a non-empty operation.
"""

from __future__ import annotations

import contextvars
from typing import Any, Protocol


class WorkUnit(Protocol):
    """What the capture front and the session tracker ask of the current unit."""

    @property
    def operation(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    def brief(self) -> dict[str, Any]:
        """What every error inside the unit carries (a request: method, route, path and
        id, not its headers or body: those are for the unit's own failure)."""
        ...

    def ensure_session(self) -> str | None:
        """The unit's session id, started now if it had none (None: the unit keeps no
        session). A unit that never meets an error or a breadcrumb never starts one."""


current_work: contextvars.ContextVar[WorkUnit | None] = contextvars.ContextVar(
    "error_exporter_current_work", default=None
)


def with_work(unit: WorkUnit, context: Any, operation: str) -> tuple[Any, str]:
    """The call's context and operation completed by the unit's (the call's own win)."""
    described = unit.brief()
    if operation == "":
        operation = unit.operation
    if not described:
        return context, operation
    if context is None:
        return described, operation
    if isinstance(context, dict):
        return {**described, **context}, operation
    return {**described, "context": context}, operation
