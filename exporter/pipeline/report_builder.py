"""Occurrence -> detailed report, on the worker thread (never on the caller's).

The caller hands over an :class:`~exporter.capture.occurrence.Occurrence`: code objects and line
numbers, never frames. The trace is formatted here the way Python prints it (source lines
from ``linecache``, recursion collapsed, chained exceptions with Python's separators).
The frames part of a trace is cached per raise site (the same code objects and lines are
provably the same frames); each occurrence adds its own exception line.

Diagnostics are capped so a hostile exception cannot hurt the process: at most
``max_frames`` frames (the innermost ones), ``max_chain_depth`` chained exceptions,
``max_message_length`` characters of message and ``MAX_STACK_TRACE_CHARS`` of formatted
trace.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import threading
import time
import traceback
from typing import Any

from exporter.capture.occurrence import MAX_GROUP_MEMBERS, CycleMark, Link, Occurrence
from exporter.capture.signature import Frame, Signer, module_of
from exporter.capture.trace_context import hex_ids
from exporter.classify import priority
from exporter.model import ErrorSeverity, ResourceSnapshot, iso_time
from exporter.pipeline.deferred import DeferredRecord, DeferredReport, new_record, new_report
from exporter.release import Releases
from exporter.scrub import Scrubber

__all__ = ["MAX_GROUP_MEMBERS", "MAX_STACK_TRACE_CHARS", "ReportBuilder"]

MAX_STACK_TRACE_CHARS = 65536
TRACE_CACHE_SIZE = 2048
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
Location = tuple[str | None, int | None, str | None]
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


class ReportBuilder:
    """Builds each occurrence's report and record, with the configured caps and scrubbing."""

    def __init__(
        self,
        scrubber: Scrubber,
        signer: Signer,
        max_frames: int = 100,
        max_chain_depth: int = 10,
        max_message_length: int = 8192,
        app_version: str | None = None,
        capture_locals: bool = False,
        trace_url_template: str | None = None,
    ) -> None:
        self.scrubber = scrubber
        self.trace_url_template = trace_url_template
        self.signer = signer
        self.max_frames = max_frames
        self.max_chain_depth = max_chain_depth
        self.max_message_length = max_message_length
        self.capture_locals = capture_locals
        # platform.platform() runs `uname -p` in a subprocess: read with the first report
        self._environment_of = (app_version, time.time())
        self._static: dict[str, Any] | None = None
        self.releases = Releases(app_version)  # set_app_version: a deploy without a restart
        self._frames_text: dict[tuple[Frame, ...], str] = {}
        self._frames_by_id: dict[int, tuple[tuple[Frame, ...], str]] = {}
        # by the frames tuple's identity (it is held in the entry, so its id is not reused)
        self._locations: dict[int, tuple[tuple[Frame, ...], Location]] = {}

    @property
    def _environment(self) -> dict[str, Any]:
        static = self._static
        if static is None:
            static = self._static = static_environment(*self._environment_of)
        return static

    def set_app_version(self, version: str) -> None:
        """Errors captured from now on belong to ``version`` (validated by the caller)."""
        self.releases.set(version)

    @property
    def app_version(self) -> str | None:
        return self.releases.current

    # -- pieces ------------------------------------------------------------------------
    def message(self, text: str) -> str:
        """Scrubbed; the caller already capped it (and said by how much)."""
        return self.scrubber.text(text, self.max_message_length + 64)

    def context(self, occurrence: Occurrence) -> dict[str, Any]:
        context = occurrence.context
        if context is None or context == {}:
            return {}
        cleaned = self.scrubber.clean(context)
        return cleaned if isinstance(cleaned, dict) else {"context": cleaned}

    def metadata(self, occurrence: Occurrence) -> dict[str, Any]:
        cleaned: Any = (
            self.scrubber.clean(occurrence.metadata) if occurrence.metadata is not None else {}
        )
        metadata: dict[str, Any] = cleaned if isinstance(cleaned, dict) else {"metadata": cleaned}
        if occurrence.locals is not None:  # scrubbed and capped on the caller already
            metadata = {**metadata, "locals": occurrence.locals}
        return metadata

    def stack_trace(self, occurrence: Occurrence, message: str | None = None) -> str:
        """The trace as Python prints it, from the occurrence's frame summary.

        ``message``: the occurrence's message already scrubbed (saves doing it twice).
        """
        try:
            if occurrence.chain is None:
                frames = occurrence.site.frames if occurrence.site is not None else ()
                name = type_path(occurrence.exc_type)
                if message is None:
                    message = self.message(occurrence.message)
                text = self._frames_part(frames) + (
                    f"{name}: {message}\n" if message else f"{name}\n"
                )
            else:
                text = self._chain_text(occurrence.chain)
        except Exception as failure:  # a pathological exception: keep what we can
            text = f"{occurrence.error_type}: {occurrence.message[:200]} (no trace: {failure!r})"
        if len(text) > MAX_STACK_TRACE_CHARS:
            text = text[:MAX_STACK_TRACE_CHARS] + (
                f"\n...[stack trace truncated at {MAX_STACK_TRACE_CHARS} chars]\n"
            )
        return text

    def _frames_part(self, frames: tuple[Frame, ...]) -> str:
        """'Traceback ...' and the frames, scrubbed; cached per frame sequence.

        Looked up by the tuple's identity first (a raise site's frames are one cached tuple;
        hashing it would hash every code object), then by value."""
        if not frames:
            return ""
        known = self._frames_by_id.get(id(frames))
        if known is not None and known[0] is frames:
            return known[1]
        cached = self._frames_text.get(frames)
        if cached is None:
            summary = traceback.StackSummary.from_list(
                [
                    traceback.FrameSummary(code.co_filename, line, code.co_name)
                    for code, line in frames[-self.max_frames :]
                ]
            )
            cached = "Traceback (most recent call last):\n" + "".join(summary.format())
            cached = self.scrubber.text(cached, MAX_STACK_TRACE_CHARS + 64)
            if len(self._frames_text) > TRACE_CACHE_SIZE:
                self._frames_text.clear()  # atomic: readers format from any thread
            self._frames_text[frames] = cached
        if len(self._frames_by_id) > TRACE_CACHE_SIZE:
            self._frames_by_id.clear()
        self._frames_by_id[id(frames)] = (frames, cached)  # holds the tuple: its id stays its
        return cached

    def _exception_line(self, exc_type: type, message: str, notes: tuple[str, ...] = ()) -> str:
        name = type_path(exc_type)
        text = f"{name}: {self.message(message)}" if message else name
        lines = [text, *(self.message(note) for note in notes)]
        return "\n".join(lines) + "\n"

    def _chain_text(self, chain: tuple[Link, ...]) -> str:
        """Innermost cause first, as Python prints a chain."""
        parts: list[str] = []
        for index in range(len(chain) - 1, -1, -1):
            link = chain[index]
            if link.exc_type is CycleMark:
                continue
            parts.append(self._frames_part(link.frames))
            parts.append(self._exception_line(link.exc_type, link.message, link.notes))
            for position, member in enumerate(link.members, 1):
                body = self._frames_part(member.frames) + self._exception_line(
                    member.exc_type, member.message, member.notes
                )
                parts.append(f"  +---------------- {position} ----------------\n")
                parts.extend(f"    | {line}\n" for line in body.splitlines())
            if index > 0:
                parts.append(_CAUSE if link.relation == "cause" else _CONTEXT)
        return "".join(parts)

    def chain(self, occurrence: Occurrence, message: str | None = None) -> list[dict[str, Any]]:
        """The cause/context chain and group members, outermost first.

        ``message``: the occurrence's message already scrubbed (saves doing it again)."""
        links = occurrence.chain
        if links is None:
            return [
                {
                    "relation": "raised",
                    "type": type_path(occurrence.exc_type, full=True),
                    "message": self.message(occurrence.message) if message is None else message,
                }
            ]
        out: list[dict[str, Any]] = []
        for link in links:
            if link.exc_type is CycleMark:
                out.append({"relation": link.relation, "type": "<cycle>", "message": ""})
                continue
            entry: dict[str, Any] = {
                "relation": link.relation,
                "type": type_path(link.exc_type, full=True),
                "message": self.message(link.message),
            }
            if link.members:
                entry["exceptions"] = [
                    {"type": type_path(m.exc_type, full=True), "message": self.message(m.message)}
                    for m in link.members
                ]
            out.append(entry)
        return out

    def trace(self, occurrence: Occurrence) -> tuple[str | None, str | None, str | None]:
        """``trace_id`` (32 hex), ``span_id`` (16 hex) and ``trace_url`` (from the
        ``trace_url_template`` option), each None when the occurrence has no trace."""
        trace_id, span_id = hex_ids(occurrence.trace_context)
        template = self.trace_url_template
        if trace_id is None or span_id is None or template is None:
            return trace_id, span_id, None
        return (
            trace_id,
            span_id,
            template.replace("{trace_id}", trace_id).replace("{span_id}", span_id),
        )

    def location(self, occurrence: Occurrence) -> Location:
        """File, line and function of the innermost in-app frame (else the innermost)."""
        frames = occurrence.site.frames if occurrence.site is not None else ()
        known = self._locations.get(id(frames))
        if known is not None and known[0] is frames:
            return known[1]
        last = last_in_app = None
        for code, line in frames:
            last = (code.co_filename, line, getattr(code, "co_qualname", code.co_name))
            if self.signer.frame_info(code, module_of(code)).in_app:
                last_in_app = last
        found: Location = last_in_app or last or (None, None, None)
        if len(self._locations) > TRACE_CACHE_SIZE:
            self._locations.clear()
        self._locations[id(frames)] = (frames, found)
        return found

    # -- whole report / record -------------------------------------------------------------
    def report(
        self,
        occurrence: Occurrence,
        message: str,
        context: dict[str, Any],
        snapshot: ResourceSnapshot | None,
    ) -> DeferredReport:
        """The report of this occurrence (group counts are filled in by the store); its
        trace, chain, location and environment are formatted when first read."""
        level = occurrence.severity  # the member's value (its .value costs an enum lookup)
        return new_report(
            self,
            occurrence,
            message,
            _SEVERITY[level],
            priority(level, 0.0, 1 if occurrence.user_id else 0),
            context,
            self.metadata(occurrence),
            snapshot,
        )

    def record(
        self, occurrence: Occurrence, message: str, context: dict[str, Any]
    ) -> DeferredRecord:
        """The occurrence record (``ErrorAggregator``'s ErrorRecord shape); its stack trace
        and trace ids are formatted when first read."""
        return new_record(self, occurrence, message, context)

    def deferred_report_fields(
        self, occurrence: Occurrence, message: str, snapshot: ResourceSnapshot | None
    ) -> dict[str, Any]:
        """The report fields a :class:`DeferredReport` formats on its first read."""
        stack_trace = self.stack_trace(occurrence, message)
        file_path, line_number, function_name = self.location(occurrence)
        trace_id, span_id, trace_url = self.trace(occurrence)
        return {
            "file_path": file_path,
            "line_number": line_number,
            "function_name": function_name,
            "stack_trace": stack_trace,
            "traceback_lines": stack_trace.splitlines(),
            "environment": {
                **self._environment,
                "pid": os.getpid(),
                "thread": occurrence.thread_name,
                "app_version": self.releases.version_at(occurrence.timestamp),
            },
            "breadcrumbs": list(occurrence.breadcrumbs),
            "resource_snapshot": snapshot,
            "error_class": type_path(occurrence.exc_type, full=True),
            "exception_chain": self.chain(occurrence, message),
            "trace_id": trace_id,
            "span_id": span_id,
            "trace_url": trace_url,
        }


_TYPE_PATHS: dict[tuple[type, bool], str] = {}
_SEVERITY = {member.value: member for member in ErrorSeverity}  # faster than the enum call


def type_path(klass: type, full: bool = False) -> str:
    """``module.Qualname`` as Python prints it (builtins bare; ``__main__`` bare unless full)."""
    key = (klass, full)
    path = _TYPE_PATHS.get(key)
    if path is None:
        module = getattr(klass, "__module__", "") or ""
        name = getattr(klass, "__qualname__", getattr(klass, "__name__", "?"))
        if module == "builtins" or (module == "__main__" and not full):
            path = str(name)
        else:
            path = f"{module}.{name}"
        if len(_TYPE_PATHS) > TRACE_CACHE_SIZE:
            _TYPE_PATHS.clear()
        _TYPE_PATHS[key] = path
    return path


def static_environment(app_version: str | None, started: float | None = None) -> dict[str, Any]:
    """What does not change during the process: computed once (``started``: when the
    monitor was built, if not now)."""
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
        "started_at": iso_time(time.time() if started is None else started),
        "main_thread": threading.main_thread().name,
    }
