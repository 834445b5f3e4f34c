"""Secrets out, JSON-safe everything, sizes capped: before a report is stored or leaves.

Reports carry whatever the app put in context, metadata and breadcrumbs, plus messages
that may embed URLs with credentials. ``Scrubber.clean`` turns any value into plain JSON
types (cycles, non-string keys, bytes, sets, objects whose ``repr`` raises) and replaces
values under sensitive keys; ``Scrubber.text`` cleans free text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

FILTERED = "[Filtered]"
TRUNCATED_MARKER = "...[truncated {n} chars]"

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}")


def truncate(text: str, limit: int) -> str:
    """Cap a string, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED_MARKER.format(n=len(text) - limit)


def safe_text(value: object) -> str:
    """``str(value)`` that never raises and never returns a non-string or a lone surrogate."""
    try:
        text = str(value)
        if not isinstance(text, str):  # pragma: no cover - str() enforces this
            raise TypeError
    except Exception:
        try:
            text = object.__repr__(value)
        except Exception:  # pragma: no cover - object.__repr__ does not raise
            text = "<unprintable>"
        text = f"<unprintable {type(value).__name__}: {text}>"
    return fix_surrogates(text)


def fix_surrogates(text: str) -> str:
    """Replace lone surrogates so the text encodes as UTF-8 everywhere."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Scrubber:
    """Replaces secrets and makes values JSON-safe, within size limits."""

    def __init__(
        self,
        keys: Iterable[str],
        *,
        enabled: bool = True,
        max_string_length: int = 2048,
        max_depth: int = 6,
        max_items: int = 100,
    ) -> None:
        self.enabled = enabled
        self.keys = tuple(k.lower() for k in keys)
        self.max_string_length = max_string_length
        self.max_depth = max_depth
        self.max_items = max_items
        # "api_key" also matches "api-key" (HTTP headers such as X-Api-Key)
        alternatives = "|".join(re.escape(k).replace("_", "[-_]") for k in self.keys) or r"(?!x)x"
        self._inline = re.compile(
            # a quoted key or value too: dict reprs and JSON in messages ('password': 'x')
            rf"(?i)(?P<key>\b[\w-]*?(?:{alternatives})[\w-]*)(?P<sep>[\"']?\s*[=:]\s*)"
            r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&,;]+)"
        )

    def is_sensitive(self, key: str) -> bool:
        lowered = key.lower().replace("-", "_")
        return any(k in lowered for k in self.keys)

    def text(self, value: str, limit: int | None = None) -> str:
        """Free text (messages, stack traces): credentials in URLs and key=value pairs."""
        value = fix_surrogates(value)
        if self.enabled:
            # Cheap substring checks first: most text holds no secret and skips the regexes.
            if "@" in value and "://" in value:
                value = _URL_USERINFO.sub(rf"\g<scheme>{FILTERED}@", value)
            lowered = value.lower().replace("-", "_")
            if "bearer" in lowered or "basic" in lowered or "token" in lowered:
                value = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", value)
            if any(k in lowered for k in self.keys):
                value = self._inline.sub(rf"\g<key>\g<sep>{FILTERED}", value)
        return truncate(value, self.max_string_length if limit is None else limit)

    def clean(self, value: Any) -> Any:
        """Any value -> JSON types, secrets replaced."""
        return self._clean(value, 0, set())

    def _clean(self, value: Any, depth: int, seen: set[int]) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if -(2**63) <= value < 2**63 else str(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value[: self.max_string_length])
            return self.text(raw.decode("utf-8", "backslashreplace"))
        if depth >= self.max_depth:
            return "[max depth]"
        marker = id(value)
        if marker in seen:
            return "[cycle]"
        if isinstance(value, Mapping):
            seen.add(marker)
            try:
                return self._clean_mapping(value, depth, seen)
            finally:
                seen.discard(marker)
        if isinstance(value, (list, tuple, set, frozenset)):
            seen.add(marker)
            try:
                items = list(value)[: self.max_items + 1]
                cleaned = [self._clean(v, depth + 1, seen) for v in items[: self.max_items]]
                if len(items) > self.max_items:
                    cleaned.append(f"[{len(value) - self.max_items} more items]")
                return cleaned
            except Exception:
                return self.text(safe_text(value))
            finally:
                seen.discard(marker)
        return self.text(_safe_repr(value))

    def _clean_mapping(self, value: Mapping[Any, Any], depth: int, seen: set[int]) -> Any:
        out: dict[str, Any] = {}
        try:
            items = list(value.items())
        except Exception:
            return self.text(_safe_repr(value))
        for count, (key, item) in enumerate(items):
            if count >= self.max_items:
                out["[truncated]"] = f"{len(items) - self.max_items} more keys"
                break
            name = key if isinstance(key, str) else _safe_repr(key)
            name = truncate(fix_surrogates(name), 200)
            if self.enabled and self.is_sensitive(name):
                out[name] = FILTERED
            else:
                out[name] = self._clean(item, depth + 1, seen)
        return out


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
        if isinstance(text, str):
            return text
    except Exception:
        pass
    return f"<unrepresentable {type(value).__name__}>"
