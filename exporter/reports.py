"""Exception -> detailed report, on the worker thread (never on the caller's).

Diagnostics are capped so a hostile exception cannot hurt the process: at most
``max_frames`` frames (the innermost ones; recursion shows as Python shows it),
``max_chain_depth`` chained exceptions, ``max_message_length`` characters of message and
``MAX_STACK_TRACE_CHARS`` of formatted trace. ``__str__`` that raises, bytes, cycles in
the chain and ExceptionGroups are all handled by ``traceback.TracebackException``.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

from .classify import priority
from .model import Breadcrumb, ErrorReport, ErrorSeverity, ResourceSnapshot
from .scrub import Scrubber, safe_text, truncate
from .signature import Signer, module_of

MAX_STACK_TRACE_CHARS = 65536
MAX_GROUP_MEMBERS = 15


@dataclass
class Captured:
    """What the caller's thread hands to the worker: cheap to make, enough to build a report."""

    exc: BaseException
    error_id: str
    error_type: str
    component: str
    plugin: str
    operation: str
    severity: str
    timestamp: float
    context: Any = None
    metadata: Any = None
    user_id: str | None = None
    session_id: str | None = None
    thread_name: str = ""
    breadcrumbs: tuple[Breadcrumb, ...] = ()
    handled: bool = True
    mechanism: str = "record_error"
    extra: dict[str, Any] = field(default_factory=dict)


class ReportBuilder:
    """Builds ErrorReports with the configured caps and scrubbing."""

    def __init__(
        self,
        scrubber: Scrubber,
        signer: Signer,
        max_frames: int = 100,
        max_chain_depth: int = 10,
        max_message_length: int = 8192,
        app_version: str | None = None,
        capture_locals: bool = False,
    ) -> None:
        self.scrubber = scrubber
        self.signer = signer
        self.max_frames = max_frames
        self.max_chain_depth = max_chain_depth
        self.max_message_length = max_message_length
        self.capture_locals = capture_locals
        self._environment = static_environment(app_version)

    def message(self, exc: BaseException) -> str:
        limit = self.max_message_length
        return self.scrubber.text(truncate(_message_of(exc), limit), limit + 64)

    def context(self, item: Captured) -> dict[str, Any]:
        """The caller's context plus the exception's own ``context`` dict, scrubbed."""
        merged = _merged_context(item.context, item.exc)
        if not merged:
            return {}
        cleaned = self.scrubber.clean(merged)
        return cleaned if isinstance(cleaned, dict) else {"context": cleaned}

    def build(self, item: Captured, snapshot: ResourceSnapshot | None) -> ErrorReport:
        exc = item.exc
        tb = exc.__traceback__
        location = self._location(tb)
        stack_trace = self.stack_trace(exc)
        metadata = self.scrubber.clean(item.metadata) if item.metadata is not None else {}
        if self.capture_locals and tb is not None:
            metadata = dict(metadata) if isinstance(metadata, dict) else {"metadata": metadata}
            metadata["locals"] = self.scrubber.clean(_innermost_locals(tb))
        severity = ErrorSeverity(item.severity)
        return ErrorReport(
            error_id=item.error_id,
            error_type=item.error_type,
            error_message=self.message(exc),
            severity=severity,
            priority=priority(severity.value, 0.0, 1 if item.user_id else 0),
            timestamp=item.timestamp,
            first_occurrence=item.timestamp,
            occurrence_count=1,
            component=item.component,
            file_path=location[0],
            line_number=location[1],
            function_name=location[2],
            stack_trace=stack_trace,
            traceback_lines=stack_trace.splitlines(),
            environment={**self._environment, "pid": os.getpid(), "thread": item.thread_name},
            breadcrumbs=list(item.breadcrumbs),
            resource_snapshot=snapshot,
            session_id=item.session_id,
            user_id=item.user_id,
            affected_users=1 if item.user_id else 0,
            metadata=metadata if isinstance(metadata, dict) else {"metadata": metadata},
            plugin=item.plugin,
            operation=item.operation,
            context=self.context(item),
            error_class=_class_path(type(exc)),
            exception_chain=self.chain(exc),
            handled=item.handled,
            mechanism=item.mechanism,
            thread_name=item.thread_name,
            last_occurrence=item.timestamp,
        )

    def _location(self, tb: TracebackType | None) -> tuple[str | None, int | None, str | None]:
        """File, line and function of the innermost in-app frame (else the innermost)."""
        last = last_in_app = None
        while tb is not None:
            code = tb.tb_frame.f_code
            last = (code.co_filename, tb.tb_lineno, getattr(code, "co_qualname", code.co_name))
            module = self.signer.frame_info(code, _module_name(tb)).in_app
            if module:
                last_in_app = last
            tb = tb.tb_next
        chosen = last_in_app or last
        return chosen if chosen else (None, None, None)

    def stack_trace(self, exc: BaseException) -> str:
        try:
            options: dict[str, Any] = {"limit": -self.max_frames, "compact": True}
            options.update(_group_limits())
            formatted = traceback.TracebackException(
                type(exc), exc, exc.__traceback__, **options
            ).format()
            text = "".join(_capped(formatted, MAX_STACK_TRACE_CHARS))
        except Exception as failure:  # a pathological exception: keep what we can
            text = f"{type(exc).__name__}: {_message_of(exc)[:200]} (no trace: {failure!r})"
        return self.scrubber.text(text, MAX_STACK_TRACE_CHARS + 64)

    def chain(self, exc: BaseException) -> list[dict[str, Any]]:
        """The cause/context chain and group members, outermost first, cycle-safe."""
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        current: BaseException | None = exc
        relation = "raised"
        while current is not None and len(out) < self.max_chain_depth:
            if id(current) in seen:
                out.append({"relation": relation, "type": "<cycle>", "message": ""})
                break
            seen.add(id(current))
            entry: dict[str, Any] = {
                "relation": relation,
                "type": _class_path(type(current)),
                "message": self.message(current),
            }
            members = getattr(current, "exceptions", None)
            if isinstance(members, (tuple, list)) and isinstance(current, BaseException):
                entry["exceptions"] = [
                    {"type": _class_path(type(m)), "message": self.message(m)}
                    for m in members[:MAX_GROUP_MEMBERS]
                    if isinstance(m, BaseException)
                ]
            out.append(entry)
            if current.__cause__ is not None:
                current, relation = current.__cause__, "cause"
            elif current.__context__ is not None and not current.__suppress_context__:
                current, relation = current.__context__, "context"
            else:
                current = None
        return out


def _capped(parts: Any, limit: int) -> list[str]:
    out, size = [], 0
    for part in parts:
        out.append(part)
        size += len(part)
        if size > limit:
            out.append(f"\n...[stack trace truncated at {limit} chars]\n")
            break
    return out


def _group_limits() -> dict[str, int]:
    if sys.version_info >= (3, 11):
        return {"max_group_width": MAX_GROUP_MEMBERS, "max_group_depth": 10}
    return {}  # pragma: no cover - Python 3.10


def _message_of(exc: BaseException) -> str:
    """The message; bytes arguments arrive as their repr (b'...'), safe and readable."""
    return safe_text(exc)


def _module_name(tb: TracebackType) -> str:
    return module_of(tb.tb_frame.f_code)


def _merged_context(context: Any, exc: BaseException) -> Any:
    """Context given by the caller, plus an exception's own ``context`` dict (seed 003)."""
    own = getattr(exc, "context", None)
    if not isinstance(own, dict) or not own:
        return context
    merged: dict[Any, Any] = dict(own)
    if isinstance(context, dict):
        merged.update(context)
    elif context is not None:
        merged["context"] = context
    return merged


def _innermost_locals(tb: TracebackType) -> dict[str, Any]:
    while tb.tb_next is not None:
        tb = tb.tb_next
    try:
        return dict(tb.tb_frame.f_locals)
    except Exception:
        return {}


def _class_path(klass: type) -> str:
    module = getattr(klass, "__module__", "") or ""
    name = getattr(klass, "__qualname__", getattr(klass, "__name__", "?"))
    return name if module == "builtins" else f"{module}.{name}"


def static_environment(app_version: str | None) -> dict[str, Any]:
    """What does not change during the process: computed once."""
    try:
        hostname = socket.gethostname()
    except Exception:  # pragma: no cover
        hostname = "unknown"
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "hostname": hostname,
        "app_version": app_version,
        "started_at": datetime.now().isoformat(),
        "main_thread": threading.main_thread().name,
    }
