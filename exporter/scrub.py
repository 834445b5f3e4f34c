"""Secrets out, JSON-safe everything, sizes capped: before a report is stored or leaves.

Reports carry whatever the app put in context, metadata and breadcrumbs, plus messages
that may embed URLs with credentials. ``Scrubber.clean`` turns any value into plain JSON
types (cycles, non-string keys, bytes, sets, objects whose ``repr`` raises) and replaces
values under sensitive keys; ``Scrubber.text`` cleans free text.

Which keys are sensitive
------------------------
A key name, and each configured key, is normalised into its words: NFKC, then split at
``-``, ``_``, ``.``, spaces and any other punctuation, at camelCase / PascalCase humps, around
acronyms (``XApiKey`` -> x api key, ``APIKeys`` -> api keys, ``JWTs`` -> jwts) and around
digits (``oauth2`` -> oauth 2), and case-folded. A configured key matches a key name when
its words, joined, occur in the name's words joined, *starting and ending at word
boundaries*: ``api_key`` (or ``apikey``) matches ``X-Api-Key``, ``xApiKey``, ``API_KEY``,
``apiKey`` and ``apikey``; ``secret`` matches ``clientSecret`` and ``client_secret``;
``token`` matches ``AccessToken`` and ``refresh-token``; a user's ``ssn`` matches ``SSN``,
``userSsn`` and ``ssn-number``. A whole word is enough whatever else the name says, so
``session`` also matches ``session_count`` and ``sessionStorage``, and ``pwd`` the ``PWD``
environment variable: when in doubt, filtered. Besides:

- A plural ``s`` may end the match: ``tokens``, ``cookies``, ``secrets``, ``API_KEYS`` (and
  so counters such as ``max_tokens``).
- Compounds written as one word: a configured key of five or more characters also matches at
  the *end* of a word (``csrftoken``, ``dbpassword``, ``clientsecret``, ``openaiapikey``),
  where a compound names what the thing is; never at the start, so ``tokenizer`` and
  ``secretary`` are kept, and a few English words that merely end in a key (``possession``,
  ``obsession``) are listed as exceptions. Shorter keys (``auth``, ``pwd``, ``jwt``,
  ``dsn``, a user's ``ssn``, ``vin`` or ``key``) need whole words: ``kevin``, ``monkey`` and
  ``keyboard`` are kept.
- ``auth`` also matches its long forms ``authorization``, ``authorisation``,
  ``authentication``, ``authn``, ``authz`` and ``oauth``, but not ``author`` or
  ``authority``; ``pass`` (if configured) does not match ``passage``.

The answer is cached per key string (dict keys repeat); the cache is bounded and skips keys
longer than 256 characters.

In free text (``Scrubber.text``) the same matching applies to ``key=value``, ``key: value``,
``"key": "value"`` and ``'key': 'value'`` (JSON and dict reprs), and header lines such as
``X-Api-Key: abc``: the key is the run of word characters, ``-`` and ``.`` before the ``=``
or ``:``; keys with spaces in them are not recognised in text. Quoted values keep their
quotes (``"privateKey": "[Filtered]"``), so JSON stays JSON. In ``clean``, a ``(name, value)``
tuple inside a list or tuple (WSGI / ASGI header lists) is treated like a mapping item.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from exporter.capture.context_copy import CappedDict, CappedList, snapshot
from exporter.capture.context_copy import safe_repr as _safe_repr

FILTERED = "[Filtered]"
TRUNCATED_MARKER = "...[truncated {n} chars]"

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}")

# Words of a key, found in a "shape" string with one character per character of the key:
# A upper case, s the lower-case letter s, a any other letter or combining mark, 0 a digit,
# space anything else. An acronym ends before the capital that starts the next word
# (XApiKey, HTTPServer) or at a lower-case plural s (APIs, JWTs, KEYs).
_WORD_SHAPE = re.compile(r"A+s(?![as])|A+(?=A[as])|A?[as]+|A+|0+")
# key=value, key: value, "key": "value", 'key': 'value' in free text. The lookbehind makes a
# key start where a run of key characters starts, and a value is only read after a sensitive
# key and then skipped: the search stays linear in the text.
_INLINE_KEY = re.compile(r"(?<![\w.-])(?P<key>\w[\w.-]*)[\"']?\s*[=:]\s*(?=[^\s&,;])")
_INLINE_VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|[^\s&,;]+")
_COMPOUND_MIN = 5  # configured keys this long also match at the end of a one-word compound
_LONG_FORMS = {
    "auth": ("authorization", "authorisation", "authentication", "authn", "authz", "oauth")
}
# English words that end in a default key but are no compound of it.
_LOOKALIKES = frozenset(
    {"possession", "obsession", "repossession", "dispossession", "betoken", "foretoken"}
)
_CACHE_SIZE = 4096
_CACHE_KEY_CHARS = 256


def _shape(char: str) -> str:
    if char.isupper():
        return "A"
    if char == "s":
        return "s"
    if char.isdecimal() or char.isdigit() or char.isnumeric():
        return "0"
    if char.isalpha() or unicodedata.category(char).startswith("M"):
        return "a"
    return " "


def key_words(key: str) -> tuple[str, ...]:
    """A key name's words, case-folded: ``"X-ApiKey_v2"`` -> ``("x", "api", "key", "v", "2")``."""
    text = unicodedata.normalize("NFKC", key)
    shape = "".join(map(_shape, text))
    return tuple(text[m.start() : m.end()].casefold() for m in _WORD_SHAPE.finditer(shape))


class _KeyMatcher:
    """One configured key, as its words joined: the forms that match, whether compounds do."""

    __slots__ = ("compound", "forms")

    def __init__(self, joined: str) -> None:
        self.compound = len(joined) >= _COMPOUND_MIN
        forms = (joined, *_LONG_FORMS.get(joined, ()))
        self.forms = tuple(dict.fromkeys(f for form in forms for f in (form, form + "s")))

    def matches(
        self, words: tuple[str, ...], joined: str, starts: list[int], boundaries: set[int]
    ) -> bool:
        """``joined`` is ``words`` joined, ``starts`` where each word starts in it (sorted),
        ``boundaries`` the starts and the end."""
        for form in self.forms:
            at = joined.find(form)
            while at >= 0:
                if at + len(form) in boundaries:
                    if at in boundaries:
                        return True
                    if self.compound:  # at the end of a one-word compound: csrftoken
                        word = words[bisect.bisect_right(starts, at) - 1]
                        if word not in _LOOKALIKES and word[:-1] not in _LOOKALIKES:
                            return True
                at = joined.find(form, at + 1)
        return False


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
    if text.isascii():  # the usual case, known without a copy (a flag of the string)
        return text
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
        # a key with no letters or digits ("", "--") would match everything: ignored
        joined = dict.fromkeys("".join(key_words(k)) for k in self.keys)
        self._matchers = tuple(_KeyMatcher(j) for j in joined if j)
        # what a matching key must contain, for a cheap look at free text before the regex
        self._needles = tuple(joined_key for joined_key in joined if joined_key)
        self._cache: dict[str, bool] = {}

    def is_sensitive(self, key: str) -> bool:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        sensitive = self._match(key)
        if len(key) <= _CACHE_KEY_CHARS:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()  # atomic; the next keys fill it again
            self._cache[key] = sensitive
        return sensitive

    def _match(self, key: str) -> bool:
        words = key_words(key)
        if not words:
            return False
        starts = [0]
        for word in words[:-1]:
            starts.append(starts[-1] + len(word))
        joined = "".join(words)
        boundaries = {*starts, len(joined)}
        return any(matcher.matches(words, joined, starts, boundaries) for matcher in self._matchers)

    def text(self, value: str, limit: int | None = None) -> str:
        """Free text (messages, stack traces): credentials in URLs and key=value pairs."""
        value = fix_surrogates(value)
        if self.enabled:
            # Cheap substring checks first: most text holds no secret and skips the regexes.
            if "@" in value and "://" in value:
                value = _URL_USERINFO.sub(rf"\g<scheme>{FILTERED}@", value)
            lowered = value.lower()
            if "bearer" in lowered or "basic" in lowered or "token" in lowered:
                value = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", value)
            if ("=" in value or ":" in value) and self._needles:
                squashed = value.casefold().replace("-", "").replace("_", "").replace(".", "")
                if any(needle in squashed for needle in self._needles):
                    value = self._scrub_inline(value)
        return truncate(value, self.max_string_length if limit is None else limit)

    def _scrub_inline(self, text: str) -> str:
        parts: list[str] = []
        done = 0  # text[:done] is in parts
        while match := _INLINE_KEY.search(text, done):
            done_key = match.end()
            # a key's last words name it; a very long run is cut for the lookup
            if not self.is_sensitive(match["key"][-_CACHE_KEY_CHARS:]):
                # not a secret: its value is text of its own (Header: password=...)
                parts.append(text[done:done_key])
                done = done_key
                continue
            found = _INLINE_VALUE.match(text, done_key)  # the key pattern looked ahead for one
            value = found[0] if found else ""
            quote = value[:1]
            quoted = len(value) > 1 and quote in ('"', "'") and value.endswith(quote)
            parts.append(text[done:done_key])
            parts.append(f"{quote}{FILTERED}{quote}" if quoted else FILTERED)
            done = done_key + len(value)
        parts.append(text[done:])
        return "".join(parts)

    def snapshot(self, value: Any) -> Any:
        """``value`` as it is now, copied within this scrubber's caps; on the caller's thread,
        so the report shows the moment of the error (:mod:`exporter.capture.context_copy`)."""
        return snapshot(value, self.max_depth, self.max_items, self.max_string_length)

    def clean(self, value: Any) -> Any:
        """Any value -> JSON types, secrets replaced."""
        return self._clean(value, 0, set())

    def _clean(self, value: Any, depth: int, seen: set[int]) -> Any:
        kind = type(value)  # the common exact types first, each as its isinstance arm says
        if kind is str:
            return self.text(value)
        if kind is dict and depth < self.max_depth and id(value) not in seen:
            marker = id(value)
            seen.add(marker)
            try:
                return self._clean_mapping(value, depth, seen)
            finally:
                seen.discard(marker)
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
                cleaned = [self._clean_item(v, depth + 1, seen) for v in items[: self.max_items]]
                more = len(value) - len(cleaned) + (value.more if type(value) is CappedList else 0)
                if more > 0:
                    cleaned.append(f"[{more} more items]")
                return cleaned
            except Exception:
                return self.text(safe_text(value))
            finally:
                seen.discard(marker)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            seen.add(marker)  # a dataclass reads as the mapping of its fields, as in a snapshot
            try:
                return self._clean_mapping(
                    {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)},
                    depth,
                    seen,
                )
            except Exception:
                return self.text(_safe_repr(value))
            finally:
                seen.discard(marker)
        return self.text(_safe_repr(value))

    def _clean_item(self, item: Any, depth: int, seen: set[int]) -> Any:
        """An item of a list or tuple: a ``(name, value)`` tuple (a header) is a mapping item."""
        if (
            self.enabled
            and type(item) is tuple
            and len(item) == 2
            and isinstance(item[0], (str, bytes))
        ):
            name = (
                item[0]
                if isinstance(item[0], str)
                else (item[0][: self.max_string_length].decode("utf-8", "backslashreplace"))
            )
            if self.is_sensitive(truncate(fix_surrogates(name), 200)):
                return [self._clean(item[0], depth + 1, seen), FILTERED]
        return self._clean(item, depth, seen)

    def _clean_mapping(self, value: Mapping[Any, Any], depth: int, seen: set[int]) -> Any:
        out: dict[str, Any] = {}
        try:
            items = list(value.items())
        except Exception:
            return self.text(_safe_repr(value))
        more = value.more if type(value) is CappedDict else 0  # left out by the snapshot
        if len(items) > self.max_items:
            more += len(items) - self.max_items
            del items[self.max_items :]
        enabled = self.enabled
        for key, item in items:
            name = key if isinstance(key, str) else _safe_repr(key)
            name = truncate(fix_surrogates(name), 200)
            if enabled and self.is_sensitive(name):
                out[name] = FILTERED
            elif type(item) is str:
                out[name] = self.text(item)
            else:
                out[name] = self._clean(item, depth + 1, seen)
        if more > 0:
            out["[truncated]"] = f"{more} more keys"
        return out
