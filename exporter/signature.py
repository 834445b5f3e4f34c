"""Stable grouping: the same bug gets the same ``error_id`` across edits and messages.

The signature is the exception's type plus the in-app frames of its traceback, each
reduced to module and function (line numbers left out, so edits that shift lines keep
the group; recursion collapsed, so a deep RecursionError is one frame). An exception
that was never raised has no traceback; it is grouped by type and its message with
numbers, hex ids, UUIDs and paths normalized away.

This runs on the caller's thread, so everything per code object is cached.
"""

from __future__ import annotations

import hashlib
import os
import re
import sysconfig
from types import CodeType, TracebackType

OWN_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = tuple(
    {
        os.path.abspath(p)
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }
)
_CACHE_LIMIT = 20000
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


class Signer:
    """Computes error ids; caches per code object and per frame sequence."""

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None):
        self.include = tuple(include or ())
        self.exclude = tuple(exclude or ())
        self._frames: dict[CodeType, FrameInfo] = {}
        self._ids: dict[tuple[object, ...], tuple[str, tuple[CodeType, ...]]] = {}

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
        return not path.startswith(_LIBRARY_DIRS)

    def sign(self, exc_type: type[BaseException], tb: TracebackType | None, message: str) -> str:
        """The error id of an exception with this type, traceback and message."""
        if tb is None:
            return self._sign_message(exc_type, message)
        # Keyed by the code objects' ids (hashing a code object hashes its contents). The
        # cache entry holds the code objects, so an id cannot be reused while it exists.
        key: list[object] = [exc_type]
        append = key.append
        walk: TracebackType | None = tb
        while walk is not None:
            append(id(walk.tb_frame.f_code))
            walk = walk.tb_next
        entry = self._ids.get(tuple(key))
        if entry is None:
            codes = []
            while tb is not None:
                codes.append(tb.tb_frame.f_code)
                tb = tb.tb_next
            entry = (self._sign_codes(exc_type, codes, tb_frames_of(codes)), tuple(codes))
            if len(self._ids) > _CACHE_LIMIT:
                self._ids.clear()
            self._ids[tuple(key)] = entry
        return entry[0]

    def _sign_codes(
        self, exc_type: type[BaseException], codes: list[CodeType], modules: list[str]
    ) -> str:
        infos = [self.frame_info(c, m) for c, m in zip(codes, modules, strict=False)]
        chosen = [i for i in infos if i.in_app] or infos
        parts: list[str] = []
        for info in chosen:
            part = f"{info.module}:{info.function}"
            if not parts or parts[-1] != part:
                parts.append(part)
        return _digest(type_name(exc_type), *parts[-_SIGNATURE_FRAMES:])

    def _sign_message(self, exc_type: type[BaseException], message: str) -> str:
        return _digest(type_name(exc_type), "message", normalize_message(message))


def tb_frames_of(codes: list[CodeType]) -> list[str]:
    """Module names for code objects (from the code's file when globals are gone)."""
    return [module_of(c) for c in codes]


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
