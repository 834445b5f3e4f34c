"""Run a callback when the app imports a library (at once if it already has).

A library's hook (Celery, RQ) is installed only in an app that uses the library: the
monitor never imports it itself, so a plain ``start()`` costs nothing for libraries that
are merely installed. An app that starts the monitor before it imports the library still
gets the hook, installed right after the library's own package has run: a finder first in
``sys.meta_path`` wraps the loader of that one package name and nothing else; it is
removed once nothing waits any more.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

Callback = Callable[[], None]

_lock = threading.Lock()
_waiting: dict[str, list[Callback]] = {}


def _new_lock_in_child() -> None:  # a fork while another thread held it must not deadlock
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


class _Loader(importlib.abc.Loader):
    """The library's own loader; runs the callbacks once its package has executed."""

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name

    def create_module(self, spec: Any) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # the module as the library's loader left it: nobody sees this wrapper afterwards
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            spec.loader = self.loader
        module.__loader__ = self.loader
        self.loader.exec_module(module)
        _fire(self.name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.loader, attribute)


class _Watcher(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> Any:
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # found again by the import system, as without us
        spec.loader = _Loader(spec.loader, fullname)
        return spec


_WATCHER = _Watcher()


def _fire(name: str) -> None:
    with _lock:
        callbacks = _waiting.pop(name, [])
        if not _waiting and _WATCHER in sys.meta_path:
            sys.meta_path.remove(_WATCHER)
    for callback in callbacks:
        # a hook that failed to install must not break the app's import
        with contextlib.suppress(Exception):
            callback()


def when_imported(name: str, callback: Callback) -> Callback:
    """Call ``callback`` once ``name`` (a top-level package) is imported; returns a function
    that cancels the wait (a no-op once it ran)."""
    if name in sys.modules:
        callback()
        return lambda: None
    with _lock:
        _waiting.setdefault(name, []).append(callback)
        if _WATCHER not in sys.meta_path:
            sys.meta_path.insert(0, _WATCHER)
    if name in sys.modules:  # imported by another thread meanwhile: not through our finder
        _fire(name)

    def cancel() -> None:
        with _lock:
            waiting = _waiting.get(name)
            if waiting is not None and callback in waiting:
                waiting.remove(callback)
                if not waiting:
                    del _waiting[name]
            if not _waiting and _WATCHER in sys.meta_path:
                sys.meta_path.remove(_WATCHER)

    return cancel
