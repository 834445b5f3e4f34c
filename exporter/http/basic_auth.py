"""Checking ``Authorization: Basic`` against the web config's bcrypt hashes.

bcrypt is slow on purpose (tens of milliseconds at cost 10), which gives away who exists if
it is skipped: an unknown user is therefore checked against a dummy hash of the same cost, so
"no such user" and "wrong password" take the same time as a right password. Prometheus scrapes
every few seconds with the same credentials, so, like the exporter-toolkit, a successful check
is remembered; the cache key is an HMAC (per-process random key) over the user, the stored
hash and the password, length-prefixed so no two different triples collide, and the password
itself is never kept. Only successes are cached, so a wrong password always pays for bcrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping

CACHE_SIZE = 256


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic ...`` value; None if it is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuth:
    """The users of ``basic_auth_users`` and a verifier for their passwords."""

    def __init__(self, users: Mapping[str, str]) -> None:
        import bcrypt

        self._bcrypt = bcrypt
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        cost = _cost(next(iter(self._users.values()))) if self._users else 10
        # a random password's hash: never matches anything a client can send
        self._dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=cost))
        self._key = os.urandom(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._users)

    def check(self, user: str, password: str) -> bool:
        """True when ``password`` is ``user``'s; the same bcrypt cost whether or not the user
        exists."""
        hashed = self._users.get(user)
        secret = password.encode("utf-8")
        if hashed is None:
            self._bcrypt.checkpw(secret, self._dummy)
            return False
        key = self._cache_key(user, hashed, secret)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        try:
            ok = bool(self._bcrypt.checkpw(secret, hashed))
        except ValueError:  # bcrypt 5 refuses passwords over 72 bytes
            self._bcrypt.checkpw(b"", self._dummy)
            ok = False
        if ok:
            with self._lock:
                self._cache[key] = None
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return ok

    def _cache_key(self, user: str, hashed: bytes, secret: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (user.encode("utf-8"), hashed, secret):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()


def _cost(hashed: bytes) -> int:
    try:
        return max(4, min(31, int(hashed[4:6])))
    except ValueError:
        return 10
