"""What one error occurrence hands from the caller's thread to the worker.

An ``Occurrence`` is plain data: strings, numbers, a snapshot of the app's context and
code objects with line numbers. It never holds the exception, its traceback, a frame or
a local, so a queue of them keeps none of the app's memory alive, however big the
frames of the failing code were. The worker formats the trace from it
(``pipeline/report_builder.py``).

``summarize_chain`` takes the cause/context chain, notes and exception-group members on
the caller: it runs only for exceptions that have any of them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from exporter.capture.signature import Frame, Signer
from exporter.scrub import safe_text, truncate

MAX_GROUP_MEMBERS = 15
MAX_NOTES = 10
MAX_NOTE_CHARS = 2048


class Link(NamedTuple):
    """One exception of a chain: how it relates to the one before it, and what it was."""

    relation: str  # "raised" (the reported one), "cause" or "context"
    exc_type: type
    message: str
    frames: tuple[Frame, ...]
    notes: tuple[str, ...] = ()
    members: tuple[Link, ...] = ()  # an ExceptionGroup's sub-exceptions (relation "member")


class CycleMark:
    """Stands in a chain where it loops back to an exception already in it."""


class Occurrence:
    """One error as it happened; built on the caller's thread, read on the worker."""

    error_id: str
    exc_type: type
    error_type: str
    message: str
    site: Any  # signature.Site, or None for an exception never raised
    chain: tuple[Link, ...] | None  # None: no cause, context, notes or members
    component: str
    plugin: str
    operation: str
    severity: str
    timestamp: float
    context: Any
    metadata: Any
    user_id: str | None
    session_id: str | None
    thread_name: str
    breadcrumbs: tuple[Any, ...]
    handled: bool
    mechanism: str
    locals: dict[str, Any] | None
    trace_context: tuple[int, int] | None

    __slots__ = (
        "breadcrumbs",
        "chain",
        "component",
        "context",
        "error_id",
        "error_type",
        "exc_type",
        "handled",
        "locals",
        "mechanism",
        "message",
        "metadata",
        "operation",
        "plugin",
        "session_id",
        "severity",
        "site",
        "thread_name",
        "timestamp",
        "trace_context",
        "user_id",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The same arguments as :func:`new_occurrence`, which the capture path calls (it
        sets the slots without this call's detour); the slots are set there, once."""
        made = new_occurrence(*args, **kwargs)
        for slot in self.__slots__:
            setattr(self, slot, getattr(made, slot))


_new = object.__new__


def new_occurrence(
    error_id: str,
    exc_type: type,
    message: str,
    site: Any,
    chain: tuple[Link, ...] | None,
    component: str,
    plugin: str,
    operation: str,
    severity: str,
    timestamp: float,
    context: Any,
    metadata: Any,
    user_id: str | None,
    session_id: str | None,
    thread_name: str,
    breadcrumbs: tuple[Any, ...],
    handled: bool,
    mechanism: str,
    local_values: dict[str, Any] | None,
    trace_context: tuple[int, int] | None,
    error_type: str | None = None,
) -> Occurrence:
    """``Occurrence(...)`` as the capture path makes one per detailed error: the same slots
    set the same way, without the class call's detour through ``__init__`` (a third less).
    ``error_type``: ``exc_type.__name__`` already at hand (a builtin type makes a new string
    at each read of it)."""
    o: Occurrence = _new(Occurrence)
    o.error_id = error_id
    o.exc_type = exc_type
    o.error_type = exc_type.__name__ if error_type is None else error_type
    o.message = message
    o.site = site
    o.chain = chain
    o.component = component
    o.plugin = plugin
    o.operation = operation
    o.severity = severity
    o.timestamp = timestamp
    o.context = context
    o.metadata = metadata
    o.user_id = user_id
    o.session_id = session_id
    o.thread_name = thread_name
    o.breadcrumbs = breadcrumbs
    o.handled = handled
    o.mechanism = mechanism
    o.locals = local_values
    # (trace_id, span_id) as ints (capture/trace_context.py): OpenTelemetry's current span or
    # the request's traceparent; written as hex on the worker
    o.trace_context = trace_context
    return o


def has_chain(error: BaseException) -> bool:
    """True when the report needs more than the exception's own frames and message."""
    if error.__cause__ is not None:
        return True
    if error.__context__ is not None and not error.__suppress_context__:
        return True
    try:  # a property that raises must not cost the report
        return hasattr(error, "__notes__") or isinstance(
            getattr(error, "exceptions", None), (list, tuple)
        )
    except Exception:
        return False


def summarize_chain(
    error: BaseException, message: str, signer: Signer, max_depth: int, max_message: int
) -> tuple[Link, ...]:
    """The chain outermost first, cycle-safe and capped, as plain data."""
    links: list[Link] = []
    seen: set[int] = set()
    current: BaseException | None = error
    relation = "raised"
    while current is not None and len(links) < max_depth:
        if id(current) in seen:  # a cycle: Python's own traceback stops here too
            links.append(Link(relation, CycleMark, "", ()))
            break
        seen.add(id(current))
        text = message if current is error else truncate(safe_text(current), max_message)
        links.append(
            Link(
                relation,
                type(current),
                text,
                _frames(current, signer),
                _notes(current),
                _members(current, signer, max_message),
            )
        )
        if current.__cause__ is not None:
            current, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "context"
        else:
            current = None
    return tuple(links)


def _notes(error: BaseException) -> tuple[str, ...]:
    notes = getattr(error, "__notes__", None)
    if not isinstance(notes, (list, tuple)):
        return ()
    return tuple(safe_text(n)[:MAX_NOTE_CHARS] for n in notes[:MAX_NOTES])


def _frames(error: BaseException, signer: Signer) -> tuple[Frame, ...]:
    tb = error.__traceback__
    return signer.site(type(error), tb).frames if tb is not None else ()


def _members(error: BaseException, signer: Signer, max_message: int) -> tuple[Link, ...]:
    members = getattr(error, "exceptions", None)
    if not isinstance(members, (list, tuple)):
        return ()
    return tuple(
        Link("member", type(m), truncate(safe_text(m), max_message), _frames(m, signer), _notes(m))
        for m in members[:MAX_GROUP_MEMBERS]
        if isinstance(m, BaseException)
    )


def merged_context(context: Any, error: BaseException | None) -> Any:
    """The caller's context plus an exception's own ``context`` dict (``ErrorAggregator``
    errors carry one); the caller's keys win. Not a copy: the capture front snapshots it."""
    own = getattr(error, "context", None) if error is not None else None
    if not isinstance(own, dict) or not own:
        return context
    merged: dict[Any, Any] = dict(own)
    if isinstance(context, dict):
        merged.update(context)
    elif context is not None:
        merged["context"] = context
    return merged
