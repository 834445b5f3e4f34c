"""Stable grouping: the same bug gets the same ``error_id`` across edits and messages.

The signature is the exception's type plus the in-app frames of its traceback, each
reduced to module, function and the failing *statement*: its source line with the
whitespace normalised (and, when the same text appears several times in one function,
which of them). Line numbers are left out, so adding lines above the code keeps the
group, while two ``raise`` statements in one function are two groups. Without source
(``python -c``, ``exec`` of a string, a zip without sources) the statement's bytecode
stands in: its operations and the names and constants they use, jump targets left out.
Recursion is collapsed, so a deep RecursionError is one frame. An exception
that was never raised has no traceback; it is grouped by type and its message with
numbers, hex ids, UUIDs and paths normalized away (or by an explicit group key).

This runs on the caller's thread, so everything is cached per code location: a traceback
is looked up by its code objects and instruction offsets in one dict probe, and the
cached :class:`Site` also carries the frame summary the worker formats the trace from.
"""

from __future__ import annotations

import hashlib
import linecache
import os
import re
from types import CodeType, TracebackType

OWN_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # exporter/
_library_dirs: tuple[str, ...] | None = None


def library_dirs() -> tuple[str, ...]:
    """The interpreter's and the installed packages' directories (read at the first new
    code object: sysconfig is not imported at start)."""
    global _library_dirs
    if _library_dirs is None:
        import sysconfig

        paths = sysconfig.get_paths()
        keys = ("stdlib", "platstdlib", "purelib", "platlib")
        _library_dirs = tuple({os.path.abspath(p) for key in keys if (p := paths.get(key))})
    return _library_dirs


_CACHE_LIMIT = 20000
# An exception may name its own group (a string attribute): a log record's logger and
# message template, say, so that the arguments formatted into the message do not split it.
GROUP_KEY_ATTRIBUTE = "__error_exporter_group_key__"
# ... and say where it comes from (a tuple of frames, see :func:`place_frames`): a log
# record's file, line and function, so its report shows the log call.
PLACE_ATTRIBUTE = "__error_exporter_place__"
_SIGNATURE_FRAMES = 30

_NORMALIZERS = (
    (re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"), "<uuid>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.\-]+){2,}[/\\]?"), "<path>"),
    (re.compile(r"\b(?=[0-9]*[a-fA-F])[0-9a-fA-F]{12,}\b"), "<id>"),  # not all digits: <n>
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)


class FrameInfo:
    """What grouping needs from one code object, computed once."""

    __slots__ = ("filename", "function", "in_app", "module")

    def __init__(self, module: str, function: str, filename: str, in_app: bool) -> None:
        self.module = module
        self.function = function
        self.filename = filename
        self.in_app = in_app


Frame = tuple[CodeType, int]  # a code object and the line being executed in it


class Site:
    """One raise site: its group id and the frames (outermost first) that led to it.

    Holds code objects and line numbers only: never a frame, so never a local.
    """

    __slots__ = ("error_id", "frames")

    def __init__(self, error_id: str, frames: tuple[Frame, ...]) -> None:
        self.error_id = error_id
        self.frames = frames


_PLACE_CODES: dict[tuple[str, str], CodeType] = {}


def place_frames(filename: str, line: int, function: str) -> tuple[Frame, ...]:
    """One frame for a place known only by file, line and function (a log record's).

    The trace, location and in-app rules read frames as code objects and lines; a code
    object made for the place (one per file and function, cached) lets a place known by
    name go through them unchanged: the trace shows its source line, the report its file.
    """
    key = (filename, function)
    code = _PLACE_CODES.get(key)
    if code is None:
        code = compile("pass", filename, "exec").replace(co_name=function)
        if hasattr(code, "co_qualname"):  # 3.11+: the name the location reports
            code = code.replace(co_qualname=function)  # type: ignore[call-arg,unused-ignore]
        if len(_PLACE_CODES) > _CACHE_LIMIT:
            _PLACE_CODES.clear()
        _PLACE_CODES[key] = code
    return ((code, line),)


class Signer:
    """Computes error ids; caches per code object and per raise site."""

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None):
        self.include = tuple(include or ())
        self.exclude = tuple(exclude or ())
        self._frames: dict[CodeType, FrameInfo] = {}
        self._sites: dict[tuple[object, ...], Site] = {}

    def frame_info(self, code: CodeType, module: str) -> FrameInfo:
        info = self._frames.get(code)
        if info is None:
            if len(self._frames) > _CACHE_LIMIT:
                self._frames.clear()
            function = getattr(code, "co_qualname", code.co_name)
            info = FrameInfo(module, function, code.co_filename, self._in_app(code, module))
            self._frames[code] = info
        return info

    def _in_app(self, code: CodeType, module: str) -> bool:
        if module.startswith(self.include):
            return True
        if self.exclude and module.startswith(self.exclude):
            return False
        if module == "exporter" or (
            module.startswith("exporter.") and not module.startswith("exporter.demo")
        ):
            return False
        filename = code.co_filename
        if filename.startswith("<"):
            return not filename.startswith("<frozen")
        path = os.path.abspath(filename)
        if path.startswith(OWN_PACKAGE_DIR + os.sep):  # our frames, even when not on sys.path
            return path.startswith(os.path.join(OWN_PACKAGE_DIR, "demo") + os.sep)
        return not path.startswith(library_dirs())

    def sign(self, exc_type: type[BaseException], tb: TracebackType | None, message: str) -> str:
        """The error id of an exception with this type, traceback and message."""
        if tb is None:
            return self.sign_message(exc_type, message)
        return self.site(exc_type, tb).error_id

    def site(self, exc_type: type[BaseException], tb: TracebackType) -> Site:
        """The cached raise site of a traceback (one dict probe when seen before)."""
        # Keyed by the code objects' ids and instruction offsets (hashing a code object
        # hashes its contents). The Site holds the code objects, so no id is reused while
        # its entry exists.
        key: list[object] = [exc_type]
        append, ident = key.append, id  # locals: this loop is the capture path's largest cost
        walk: TracebackType | None = tb
        while walk is not None:
            append(ident(walk.tb_frame.f_code))
            append(walk.tb_lasti)
            walk = walk.tb_next
        frozen = tuple(key)
        site = self._sites.get(frozen)
        if site is None:
            frames: list[Frame] = []
            step: TracebackType | None = tb
            while step is not None:
                frames.append((step.tb_frame.f_code, step.tb_lineno or 0))
                step = step.tb_next
            site = Site(self._sign_frames(exc_type, frames), tuple(frames))
            if len(self._sites) > _CACHE_LIMIT:
                self._sites.clear()
            self._sites[frozen] = site
        return site

    def _sign_frames(self, exc_type: type[BaseException], frames: list[Frame]) -> str:
        infos = [(self.frame_info(code, module_of(code)), code, line) for code, line in frames]
        chosen = [f for f in infos if f[0].in_app] or infos
        parts: list[str] = []
        for info, code, line in chosen:
            part = f"{info.module}:{info.function}:{self.statement(code, line)}"
            if not parts or parts[-1] != part:
                parts.append(part)
        return _digest(type_name(exc_type), *parts[-_SIGNATURE_FRAMES:])

    @staticmethod
    def statement(code: CodeType, line: int) -> str:
        """The failing statement without its line number: normalised text (+ which one).

        Shared by every monitor of the process: it depends on the code, not on settings.
        """
        key = (code, line)
        text = _STATEMENTS.get(key)
        if text is None:
            text = _statement_of(code, line)
            if len(_STATEMENTS) > _CACHE_LIMIT:
                _STATEMENTS.clear()
            _STATEMENTS[key] = text
        return text

    def sign_message(self, exc_type: type[BaseException], message: str) -> str:
        """A traceback-less exception: its type and its message with variable parts removed."""
        return _digest(type_name(exc_type), "message", normalize_message(message))

    def sign_key(self, exc_type: type[BaseException], key: str) -> str:
        """An exception that names its own group (e.g. a log record's logger and template)."""
        return _digest(type_name(exc_type), "key", key)


def _normalise_line(text: str) -> str:
    """Whitespace collapsed and a trailing comment dropped: neither changes the statement."""
    if "#" in text:
        text = _without_comment(text)
    return " ".join(text.split())


def _without_comment(text: str) -> str:
    import io
    import tokenize

    try:
        for token in tokenize.generate_tokens(io.StringIO(text.strip() + "\n").readline):
            if token.type == tokenize.COMMENT:
                return text.strip()[: token.start[1]]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass  # part of a multi-line statement: keep the text as it is
    return text


def _statement_of(code: CodeType, line: int) -> str:
    """``text#n``: the line's normalised text, and which of the function's lines with the
    same text it is (omitted for the first); from the bytecode when there is no source."""
    lines = sorted({ln for _, _, ln in code.co_lines() if ln is not None and ln <= line})
    linecache.checkcache(code.co_filename)  # a file edited since it was last read
    text = _normalise_line(linecache.getline(code.co_filename, line)) if line else ""
    if text:

        def shape(ln: int) -> str:
            return _normalise_line(linecache.getline(code.co_filename, ln))
    else:
        shapes = _bytecode_shapes(code)
        text = shapes.get(line, "")

        def shape(ln: int) -> str:
            return shapes.get(ln, "")

    same = sum(1 for ln in lines if ln < line and shape(ln) == text)
    return f"{text}#{same}" if same else text


_STATEMENTS: dict[Frame, str] = {}
_SHAPES: dict[CodeType, dict[int, str]] = {}


def _bytecode_shapes(code: CodeType) -> dict[int, str]:
    """Per line: its instructions' names and arguments, without offsets or jump targets."""
    shapes = _SHAPES.get(code)
    if shapes is None:
        if len(_SHAPES) > _CACHE_LIMIT:
            _SHAPES.clear()
        shapes = _SHAPES[code] = _disassemble(code)
    return shapes


def _disassemble(code: CodeType) -> dict[int, str]:
    import dis

    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    shapes: dict[int, list[str]] = {}
    current = None
    for instruction in dis.get_instructions(code):
        positions = getattr(instruction, "positions", None)
        lineno = getattr(positions, "lineno", None) if positions is not None else None
        if lineno is None:
            lineno = instruction.starts_line or current
        current = lineno
        if lineno is None or instruction.opname in ("CACHE", "RESUME", "NOP", "EXTENDED_ARG"):
            continue
        arg = "" if instruction.opcode in jumps else instruction.argrepr
        shapes.setdefault(lineno, []).append(f"{instruction.opname} {arg}".rstrip())
    return {ln: ";".join(ops) for ln, ops in shapes.items()}


_MODULE_BY_FILE: dict[str, str] = {}


def module_of(code: CodeType) -> str:
    filename = code.co_filename
    cached = _MODULE_BY_FILE.get(filename)
    if cached is not None:
        return cached
    module = module_from_filename(filename)
    if len(_MODULE_BY_FILE) > _CACHE_LIMIT:
        _MODULE_BY_FILE.clear()
    _MODULE_BY_FILE[filename] = module
    return module


def module_from_filename(filename: str) -> str:
    """A dotted module name from a file path, relative to the longest sys.path entry."""
    import sys

    if filename.startswith("<"):
        return filename
    path = os.path.abspath(filename)
    best = ""
    for entry in sys.path:
        root = os.path.abspath(entry or os.getcwd())
        if path.startswith(root + os.sep) and len(root) > len(best):
            best = root
    relative = os.path.relpath(path, best) if best else os.path.basename(path)
    stem = os.path.splitext(relative)[0]
    parts = [p for p in stem.split(os.sep) if p and p != "__init__"]
    return ".".join(parts) or stem


def type_name(exc_type: type[BaseException]) -> str:
    module = getattr(exc_type, "__module__", "") or ""
    name = getattr(exc_type, "__qualname__", exc_type.__name__)
    return name if module in ("builtins", "__main__") else f"{module}.{name}"


def normalize_message(message: str) -> str:
    """Remove what varies between occurrences of one bug: numbers, ids, paths."""
    text = message[:1000]
    for pattern, replacement in _NORMALIZERS:
        text = pattern.sub(replacement, text)
    return text


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8", "backslashreplace")).hexdigest()[:16]
