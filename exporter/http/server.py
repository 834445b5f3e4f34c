"""MonitorServer: the WSGI app on a stdlib threading server in a daemon thread.

It lives inside someone else's process, so it must be quiet and harmless: requests are logged
at DEBUG on ``exporter.http``, clients that vanish mid-response are ignored, a slow client is
cut off after ``REQUEST_TIMEOUT`` seconds, and every thread is a daemon so it never holds up the
host app's exit. A busy port fails loudly, naming host:port.

Who may read it is decided here too, because only the standalone server has a socket of its
own: the web config file (TLS, client certificates, basic auth, headers; see web_config.py),
the Host check of a loopback bind (host_check.py), and one WARNING when it listens on a
non-loopback address with neither TLS nor auth. The accept loop only accepts: the TLS
handshake runs in the connection's own thread under a timeout, so a client that connects and
says nothing (or speaks plain HTTP to the TLS port) costs one thread for a few seconds, never
the whole server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from exporter.config import DEFAULT_PORT
from exporter.http.access import AccessGate
from exporter.http.app import make_wsgi_app
from exporter.http.host_check import HostCheck, is_loopback_address
from exporter.http.tls import ContextSource
from exporter.http.web_config import WebConfig, load_web_config
from exporter.model import json_text
from exporter.store.read_protocol import ErrorReader

log = logging.getLogger("exporter.http")
REQUEST_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 10.0
_PLAIN_BODY = b'{"error":"this server speaks HTTPS: use https://","status":400}'
_PLAIN_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(_PLAIN_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _PLAIN_BODY
)


class _LogStream:
    """wsgiref writes handler tracebacks to 'stderr'; send them to the logger instead."""

    def write(self, text: str) -> int:
        if text.strip():
            log.debug("%s", text.rstrip())
        return len(text)

    def flush(self) -> None:
        return None


class _Handler(WSGIRequestHandler):
    """One request per connection, logged at DEBUG, never printing to stderr."""

    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def get_stderr(self) -> Any:
        return _LogStream()

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        if isinstance(self.connection, ssl.SSLSocket):
            environ["HTTPS"] = "on"  # wsgi.url_scheme https (the OpenAPI servers, links)
        return environ

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the HTTP parser answers itself (414, 431, 505...): the API's JSON shape too.

        The stdlib sends a small HTML page; clients of a JSON API should never have to parse
        one. The JSON writer escapes what the parser quotes back from the client's bytes.
        """
        short = self.responses.get(code, ("Error", ""))[0]
        body = json_text({"error": message or short, "status": code}).encode("ascii")
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64
    tls: ContextSource | None = None  # set by MonitorServer when the web config has TLS

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds
        # without DNS; the name is only used for SERVER_NAME.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error-exporter HTTP connection from %s failed", client_address, exc_info=True)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's thread: the TLS handshake happens here, not in accept."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first and first != b"\x16":  # not a TLS handshake record: plain HTTP, most likely
            with contextlib.suppress(OSError):
                request.sendall(_PLAIN_TO_TLS)
            return
        try:
            secure = self.tls.current().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # wrong/expired/missing client certificate, plain garbage, a silent client
            log.debug("error-exporter TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            with contextlib.suppress(OSError):
                secure.close()


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class MonitorServer:
    """Serves ``make_wsgi_app(monitor)`` on host:port until ``stop()``.

    ``web_config`` (a path or a WebConfig; default the monitor's ``web_config_file``) and
    ``allowed_hosts`` (default the monitor's) decide who may read it; a bad web config file
    is a ConfigError here, before anything listens.
    """

    def __init__(
        self,
        monitor: ErrorReader | None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        app: Any = None,
        web_config: WebConfig | str | Path | None = None,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        self.monitor = monitor
        self.host = host
        self.requested_port = port
        if app is None:
            if monitor is None:
                raise ValueError("MonitorServer needs a monitor or an app")
            app = make_wsgi_app(monitor)
        config = getattr(monitor, "config", None)
        if web_config is None:
            web_config = getattr(config, "web_config_file", None)
        if not isinstance(web_config, WebConfig):
            web_config = load_web_config(web_config)
        if allowed_hosts is None:
            allowed_hosts = getattr(config, "allowed_hosts", None) or ()
        self.web_config = web_config
        self._tls = ContextSource(web_config.tls) if web_config.tls is not None else None
        basic = None
        if web_config.has_basic_auth:
            from exporter.http.basic_auth import BasicAuth

            basic = BasicAuth(web_config.basic_auth_users)
        self._has_basic = basic is not None
        self.app = AccessGate(
            app, HostCheck(host, allowed_hosts), basic, self._token, web_config.headers
        )
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _token(self) -> str | None:
        token = getattr(getattr(self.monitor, "config", None), "api_token", None)
        return str(token) if token else None

    @property
    def tls(self) -> ContextSource | None:
        """The TLS context source (its ``reloads`` counts certificate rotations)."""
        return self._tls

    def start(self) -> MonitorServer:
        """Bind and serve in a daemon thread; OSError naming host:port if the bind fails."""
        if self._server is not None:
            return self
        server_class = _ThreadingWSGIServer6 if ":" in self.host else _ThreadingWSGIServer
        try:
            server = server_class((self.host, self.requested_port), _Handler)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"error-exporter cannot listen on "
                f"{self.host}:{self.requested_port}: {exc.strerror or exc}",
            ) from exc
        server.set_app(self.app)
        server.tls = self._tls
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 1.0},
            name=f"error-exporter-http:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("error-exporter serving on %s", self.url)
        self._warn_if_exposed()
        return self

    def _warn_if_exposed(self) -> None:
        """One WARNING when anyone on the network can read everything in clear text."""
        if (
            is_loopback_address(self.host)
            or self._tls is not None
            or self._has_basic
            or self._token()
        ):
            return
        log.warning(
            "error-exporter listens on %s:%d without TLS or authentication: anyone "
            "who can reach this address can read /metrics and the error reports "
            "(messages, stack traces, file paths, user ids, context values). Bind to "
            "127.0.0.1, or protect it: a web config file with tls_server_config and "
            "basic_auth_users (web_config_file, --web.config.file) and/or api_token",
            self.host,
            self.port,
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._server is None:
            return int(self.requested_port)
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the listening socket and wait for the thread."""
        server, thread = self._server, self._thread
        self._server = None
        self._thread = None
        if server is None:
            return
        # serve_forever sees the shutdown request only between two waits for a connection:
        # a connection of our own ends the wait at once (an exit does not wait out a poll)
        stopping = threading.Thread(target=server.shutdown, daemon=True)
        stopping.start()
        deadline = time.monotonic() + timeout
        while stopping.is_alive() and time.monotonic() < deadline:
            _wake(server.server_address)
            stopping.join(0.05)
        server.server_close()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> MonitorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MonitorServer {self.url} running={self.running}>"


def _wake(address: Any) -> None:
    """Connect to the listening socket and hang up (the accept loop then looks again)."""
    host, port = address[0], address[1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    # a plain connect to the numeric address the socket is bound to: create_connection's
    # getaddrinfo would import the idna codec at exit (about 2 ms) to look up a number
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        sock.connect((host, port))


def serve_app(app: Any, host: str = "127.0.0.1", port: int = 0) -> MonitorServer:
    """Serve any WSGI app the same way (tests, benchmarks)."""
    return MonitorServer(None, host, port, app=app).start()
