"""``store_url`` (and ``--store URL``): which backend a URL names; its password masked.

A DSN carries a password, and a failing connection's message (psycopg's included) can
repeat the DSN: everything that may reach a log line, a metric, an error, the API, an
export or ``check-config`` passes through :func:`redact` (a URL) or :func:`redact_text`
(any text that may contain one, or the bare password).

``sqlite:///path/to/errors.sqlite`` means the same as ``store_path``;
``postgresql://`` (or ``postgres://``) is the shared store; query parameters (``sslmode``,
``sslrootcert``, ``connect_timeout``...) pass through to psycopg untouched.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_SCHEME = "sqlite"
MASK = "***"
EXTRA_HINT = "pip install 'error-exporter[postgres]'"
# key=value DSN parts and URL userinfo that carry a password
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://[^:/?#@\s]*:)([^@/?#\s]*)(@)", re.IGNORECASE)


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def is_postgres(url: str | None) -> bool:
    return url is not None and scheme_of(url) in POSTGRES_SCHEMES


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:///relative`` or ``sqlite:////absolute`` (SQLAlchemy's form)."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost"):
        raise ValueError("a sqlite URL names a local file: sqlite:///path")
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ValueError("sqlite:/// needs a file path (sqlite:///errors.sqlite)")
    return path


def check_url(url: str) -> str | None:
    """The problem with ``url`` as a ``store_url`` (None: usable). Never shows a password."""
    try:
        scheme = scheme_of(url)
    except ValueError:
        return "must be a postgresql:// or sqlite:/// URL"
    if scheme == SQLITE_SCHEME:
        try:
            sqlite_path(url)
        except ValueError as exc:
            return str(exc)
        return None
    if scheme not in POSTGRES_SCHEMES:
        return f"must be a postgresql:// or sqlite:/// URL, got {redact(url)!r}"
    return None


def psycopg_missing() -> str | None:
    """Why a postgresql:// store cannot work here (psycopg 3 missing), naming the extra."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return f"a postgresql:// store needs psycopg 3, which is not installed: {EXTRA_HINT}"
    return None


def secrets_of(url: str) -> list[str]:
    """Every form of every password in ``url`` (as written and percent-decoded)."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    found += [unquote(value) for value in found]
    return sorted({value for value in found if value}, key=len, reverse=True)


def redact(url: str | None) -> str:
    """``url`` with its password (userinfo or ``?password=``) replaced by ``***``."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + MASK
            netloc = f"{userinfo}@{host}"
        query = _PASSWORD_KV.sub(lambda m: m.group(1) + MASK, parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return redact_text(url)


def redact_text(text: object, url: str | None = None) -> str:
    """Any text (an exception's message) without the passwords of ``url`` or of any
    DSN it contains."""
    out = str(text)
    for secret in secrets_of(url) if url else ():
        out = out.replace(secret, MASK)
    out = _USERINFO.sub(lambda m: m.group(1) + MASK + m.group(3), out)
    return _PASSWORD_KV.sub(lambda m: m.group(1) + MASK, out)
