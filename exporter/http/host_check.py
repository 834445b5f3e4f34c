"""Host header checking against DNS rebinding.

A server on 127.0.0.1 is not private to this machine's programs: any web page the user opens
can point a name it controls at 127.0.0.1 (DNS rebinding) and then read the monitor's
reports as "same origin" (error messages, file paths, user ids, local variables). The browser
still sends the attacker's name in ``Host``, so a loopback-bound server answers only requests
addressed to a loopback name or address, or to one of the ``allowed_hosts`` its owner listed.
Bound to any other address, the server is reachable by design and access control is TLS and
auth's job, so no check is made there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback_address(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (what a bind address can be)."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The host part of a ``Host`` header value (no port, lower case); None if malformed."""
    value = header.strip().lower()
    if not value or any(c in value for c in " /\\@?#"):
        return None
    if value.startswith("["):  # [v6]:port
        end = value.find("]")
        if (
            end < 0
            or (value[end + 1 :] and not _is_port(value[end + 2 :]))
            or (value[end + 1 :] and value[end + 1] != ":")
        ):
            return None
        return value[1:end]
    name, sep, port = value.rpartition(":")
    if not sep:
        return value
    if ":" in name:  # a bare IPv6 address without brackets: not valid in Host
        return None
    return name if _is_port(port) else None


def _is_port(text: str) -> bool:
    return text.isdigit() and 0 < len(text) <= 5 and int(text) <= 65535


class HostCheck:
    """Decides whether a request's Host is acceptable for a server bound to ``bind_host``."""

    def __init__(self, bind_host: str, allowed_hosts: Iterable[str] = ()) -> None:
        self.active = is_loopback_address(bind_host)
        self.allowed = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts if h.strip())

    def allows(self, header: str | None) -> bool:
        """HTTP/1.1 requires Host; an HTTP/1.0 request without one cannot come from a
        browser (they always send it), so it passes."""
        if not self.active or header is None:
            return True
        name = host_name(header)
        if name is None:
            return False
        return is_loopback_address(name) or name in self.allowed
