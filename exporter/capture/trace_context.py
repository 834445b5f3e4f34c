"""The trace an error happened in: OpenTelemetry's current span, else the request's
``traceparent``.

With ``capture_trace_context`` on (the default) each occurrence carries the ids of the trace
it happened in, and ``app_errors_total``'s exemplar carries the latest one's ``trace_id``
next to its ``error_id``:

1. when ``opentelemetry-api`` is importable (``pip install error-exporter[otel]``) and the
   current span's context is valid, that span's trace and span ids;
2. otherwise the ids a unit of work made current: the web middlewares parse the incoming W3C
   ``traceparent`` header (``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``) and
   make it current for the request (the span id is then the caller's span, the parent);
3. otherwise none: ``trace_id`` and ``span_id`` are null.

OpenTelemetry is never required and never imported for the app: no span can be current
before the app has imported ``opentelemetry.trace``, so until then the caller's thread pays
one look in ``sys.modules`` and one context-variable read per error; from the app's import
on, the span's ids are read (the import is then tried once per process).
Ids cross the queue as two ints and are written as hex on the worker (:func:`hex_ids`).
"""

from __future__ import annotations

import contextvars
import re
import sys
from collections.abc import Callable
from typing import Any

TraceIds = tuple[int, int]  # (trace_id, span_id): 128 and 64 bits, never 0
Lookup = Callable[[], "TraceIds | None"]

MAX_TRACEPARENT_CHARS = 512
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)

incoming_trace: contextvars.ContextVar[TraceIds | None] = contextvars.ContextVar(
    "error_exporter_trace", default=None
)

_UNTRIED: Any = object()
_otel_lookup: Lookup | None = _UNTRIED


def parse_traceparent(value: Any) -> TraceIds | None:
    """The (trace id, parent span id) of a W3C ``traceparent`` value; None when it is
    missing or invalid (bad format, uppercase hex, version ``ff``, all-zero ids, or
    version ``00`` with anything after the flags)."""
    if not isinstance(value, str) or len(value) > MAX_TRACEPARENT_CHARS:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_hex, span_hex, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id


def hex_ids(ids: TraceIds | None) -> tuple[str | None, str | None]:
    """(``trace_id`` as 32 hex digits, ``span_id`` as 16), or (None, None)."""
    if ids is None:
        return None, None
    return f"{ids[0]:032x}", f"{ids[1]:016x}"


def otel_lookup() -> Lookup | None:
    """The OpenTelemetry-aware lookup, or None when ``opentelemetry.trace`` cannot be
    imported. The import is tried once per process; the answer is kept."""
    global _otel_lookup
    if _otel_lookup is _UNTRIED:
        _otel_lookup = _load_otel()
    return _otel_lookup


def _load_otel() -> Lookup | None:
    try:
        from opentelemetry.trace import get_current_span
    except Exception:  # not installed, blocked, or a broken install: no OpenTelemetry
        return None
    fallback = incoming_trace.get

    def current() -> TraceIds | None:
        try:
            context = get_current_span().get_span_context()
            if context.is_valid:
                return context.trace_id, context.span_id
        except Exception:  # a broken SDK must not cost the error its report
            pass
        return fallback()

    return current


def lookup_for(enabled: bool) -> Lookup | None:
    """What the capture path calls for each error: None when ``capture_trace_context`` is
    off; the OpenTelemetry-aware lookup once the app has imported the API; else the read of
    the ids a unit of work (a request's ``traceparent``) made current, until it does."""
    if not enabled:
        return None
    if _otel_lookup is _UNTRIED and _OTEL_TRACE not in sys.modules:
        return _until_otel
    return otel_lookup() or incoming_trace.get


_OTEL_TRACE = "opentelemetry.trace"


def _until_otel() -> TraceIds | None:
    """The ids before the app imported OpenTelemetry (no span can be current), and through
    its lookup from then on."""
    if _OTEL_TRACE in sys.modules:
        lookup = otel_lookup()
        if lookup is not None:
            return lookup()
    return incoming_trace.get()


def current_trace_ids() -> TraceIds | None:
    """The ids an error recorded now would carry (with ``capture_trace_context`` on)."""
    lookup = lookup_for(True)
    return lookup() if lookup is not None else None
