"""Server TLS contexts from ``tls_server_config``, rebuilt when the files change on disk.

Certificates are short-lived where TLS is done well (cert-manager, ACME, an internal CA that
re-issues daily), and the monitor lives inside an app nobody wants to restart for that. So
each new connection asks ``current()`` for the context: a ``stat`` of the three files (cheap
next to a handshake) tells whether they changed, and only then is a new context built. A
rotation caught half-way (the new certificate written, the key not yet) fails to load: the
previous context keeps serving and the failure is logged once, until the files change again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading

from exporter.config import ConfigError
from exporter.http.web_config import TLSSettings

log = logging.getLogger("exporter.http")

_Stamp = tuple[tuple[int, int, int, int], ...]


def build_context(settings: TLSSettings) -> ssl.SSLContext:
    """A server context for ``settings``; ssl.SSLError/OSError when the files do not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = settings.min_version
    context.maximum_version = settings.max_version
    if settings.cipher_suites:
        context.set_ciphers(":".join(settings.cipher_suites))
    if settings.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(settings.cert_file, settings.key_file)
    context.verify_mode = settings.verify_mode
    if settings.client_ca_file and settings.verify_mode != ssl.CERT_NONE:
        context.load_verify_locations(cafile=settings.client_ca_file)
    return context


class ContextSource:
    """The current server context; reloads it when a file's mtime, size or inode changes."""

    def __init__(self, settings: TLSSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stamp = self._read_stamp()
        try:
            self._context = build_context(settings)
        except (ssl.SSLError, OSError) as exc:
            # at start a bad certificate is a configuration error, said once and loudly
            raise ConfigError(
                f"tls_server_config: cannot load cert_file/key_file/client_ca_file: {_reason(exc)}"
            ) from None
        self._failed_stamp: _Stamp | None = None
        self.reloads = 0

    def _paths(self) -> list[str]:
        s = self.settings
        return [p for p in (s.cert_file, s.key_file, s.client_ca_file) if p]

    def _read_stamp(self) -> _Stamp:
        stamps = []
        for path in self._paths():
            try:
                st = os.stat(path)
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns))
            except OSError:
                stamps.append((0, 0, 0, 0))
        return tuple(stamps)

    def current(self) -> ssl.SSLContext:
        """The context for a new connection, rebuilt first if the files changed."""
        stamp = self._read_stamp()
        with self._lock:
            if stamp == self._stamp or stamp == self._failed_stamp:
                return self._context
            try:
                context = build_context(self.settings)
            except (ssl.SSLError, OSError) as exc:
                self._failed_stamp = stamp
                log.warning(
                    "error-exporter: the changed TLS certificate files do not load "
                    "(%s); still serving the previous certificate",
                    _reason(exc),
                )
                return self._context
            self._context, self._stamp, self._failed_stamp = context, stamp, None
            self.reloads += 1
            log.info("error-exporter: TLS certificate files changed; serving the new ones")
            return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    return str(exc)
