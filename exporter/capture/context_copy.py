"""The context of an occurrence as it was at the call, copied on the caller's thread.

The app keeps using the objects it passed after ``record_error`` returns (one ``state`` dict
reused for every job, ``items.append(...)`` after the call), while the worker formats the
report later. A report must show the moment of the error, so for each occurrence that is
queued in detail the caller copies its context and metadata here: mappings become dicts,
lists, tuples, sets and other sequences become lists (tuples stay tuples: a ``(name, value)``
pair is a header to the scrubber), a dataclass becomes a dict of its fields. Strings,
numbers, ``None`` and ``bytes`` cannot change, so they are kept as they are. Any other object
is kept as it is too, and printed by the worker: its ``__repr__`` is the app's code, which
may be slow or block (a lock, a lazy database attribute), and the caller's thread must never
wait on it.

The copy stops where the scrubber stops (``max_depth``, ``max_items`` per container), so its
cost is bounded by the same caps; what it leaves out it marks as the scrubber would
(``[max depth]``, ``[cycle]``), and a container cut at ``max_items`` is a :class:`CappedList`
or :class:`CappedDict` that remembers how many items it left out, for the scrubber's "N more
items" note. The worker's scrubber (secrets, JSON types) then walks this copy, never the app's
objects. A coalesced repeat copies nothing: it is only counted.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

MAX_DEPTH_MARK = "[max depth]"
CYCLE_MARK = "[cycle]"
_IMMUTABLE = (str, int, float, bool, complex, bytes, type(None))
_ATOMS = frozenset(_IMMUTABLE)


class CappedList(list[Any]):
    """A sequence cut at ``max_items``: ``more`` items were left out."""

    __slots__ = ("more",)

    def __init__(self, items: Any, more: int) -> None:
        super().__init__(items)
        self.more = more


class CappedDict(dict[Any, Any]):
    """A mapping cut at ``max_items``: ``more`` keys were left out."""

    __slots__ = ("more",)

    def __init__(self, items: Any, more: int) -> None:
        super().__init__(items)
        self.more = more


def snapshot(value: Any, max_depth: int, max_items: int, max_bytes: int) -> Any:
    """``value`` as it is now, in plain containers, within the scrubber's caps."""
    return _copy(value, 0, _Caps(max_depth, max_items, max_bytes), set())


class _Caps:
    __slots__ = ("max_bytes", "max_depth", "max_items")

    def __init__(self, max_depth: int, max_items: int, max_bytes: int) -> None:
        self.max_depth = max_depth
        self.max_items = max_items
        self.max_bytes = max_bytes


def _copy(value: Any, depth: int, caps: _Caps, path: set[int]) -> Any:
    kind = type(value)
    if kind in _ATOMS:  # the common case first: exact types, no isinstance walk
        return value
    if depth >= caps.max_depth:  # below it only what the scrubber keeps there: leaves
        if isinstance(value, _IMMUTABLE):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value[: caps.max_bytes])
        return MAX_DEPTH_MARK
    if kind is dict or kind is list or kind is tuple:
        marker = id(value)
        if marker in path:
            return CYCLE_MARK
        path.add(marker)
        try:
            if kind is dict:
                return _copy_mapping(value, len(value), value.items(), depth, caps, path)
            return _copy_sequence(value, depth, caps, path)
        finally:
            path.discard(marker)
    return _copy_other(value, depth, caps, path)


def _copy_other(value: Any, depth: int, caps: _Caps, path: set[int]) -> Any:
    """Subclasses, other containers, dataclasses and objects: the slower checks."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value[: caps.max_bytes])
    marker = id(value)
    if marker in path:
        return CYCLE_MARK
    path.add(marker)
    try:
        if isinstance(value, Mapping):
            return _copy_mapping(value, len(value), value.items(), depth, caps, path)
        if isinstance(value, (list, tuple, set, frozenset, Sequence, AbstractSet)) and not (
            isinstance(value, range)
        ):
            return _copy_sequence(value, depth, caps, path)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = dataclasses.fields(value)
            pairs = ((f.name, getattr(value, f.name, None)) for f in fields)
            return _copy_mapping(value, len(fields), pairs, depth, caps, path)
    except Exception:  # a container whose iteration or len() raises: the worker prints it
        return value
    finally:
        path.discard(marker)
    return value  # an object: the worker prints it (see the module docstring)


def _copy_mapping(
    value: Any, size: int, items: Any, depth: int, caps: _Caps, path: set[int]
) -> dict[Any, Any]:
    kept = itertools.islice(items, caps.max_items)
    copied = {key: _copy(item, depth + 1, caps, path) for key, item in kept}  # the
    # scrubber names a key that is not a string by its repr, on the worker
    more = size - len(copied)
    return CappedDict(copied, more) if more > 0 else copied


def _copy_sequence(value: Any, depth: int, caps: _Caps, path: set[int]) -> Any:
    items = [_copy(item, depth + 1, caps, path) for item in itertools.islice(value, caps.max_items)]
    more = len(value) - len(items)
    if more > 0:
        return CappedList(items, more)
    return tuple(items) if type(value) is tuple else items


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when its ``__repr__`` fails."""
    try:
        text = repr(value)
        if isinstance(text, str):
            return text
    except Exception:
        pass
    return f"<unrepresentable {type(value).__name__}>"
