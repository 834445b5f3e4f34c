"""Response values and JSON encoding that cannot fail.

Every body the API returns goes through :func:`exporter.model.json_text`, which never fails
for a strange value in some error's context.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.model import json_text

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 6

Headers = list[tuple[str, str]]


@dataclass
class Response:
    """Status, headers and a body that is either bytes or an iterable of byte chunks."""

    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str = JSON_TYPE
    headers: Headers = field(default_factory=list)


def json_response(status: int, data: Any, headers: Headers | None = None) -> Response:
    return Response(status, json_text(data).encode("ascii"), JSON_TYPE, list(headers or []))


def error_response(
    status: int, message: str, headers: Headers | None = None, **extra: Any
) -> Response:
    """The one error shape of the API: ``{"error": ..., "status": ...}`` plus details."""
    return json_response(status, {"error": message, "status": status, **extra}, headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """True when Accept-Encoding lists gzip (or ``*``) without ``q=0``."""
    wildcard = False
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        allowed = _quality(params) > 0
        if coding == "*":
            wildcard = allowed
        else:
            return allowed
    return wildcard


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def gzip_body(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def gzip_stream(chunks: Iterable[bytes], level: int = GZIP_LEVEL) -> Iterator[bytes]:
    """Compress a chunked body as it is produced (one gzip member)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    try:
        for chunk in chunks:
            out = compressor.compress(chunk)
            if out:
                yield out
        yield compressor.flush()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
