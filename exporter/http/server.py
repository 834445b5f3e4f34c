"""MonitorServer: the WSGI app on a stdlib threading server in a daemon thread.

It lives inside someone else's process, so it must be quiet and harmless: requests are logged
at DEBUG on ``exporter.http``, clients that vanish mid-response are ignored, a slow client is
cut off after ``REQUEST_TIMEOUT`` seconds, and every thread is a daemon so it never holds up the
host app's exit. A busy port fails loudly, naming host:port.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ..config import DEFAULT_PORT
from ..reader import ErrorReader
from .app import make_wsgi_app

log = logging.getLogger("exporter.http")
REQUEST_TIMEOUT = 30.0


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

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """Errors the HTTP parser answers itself (414, 431, 505...): the API's JSON shape too.

        The stdlib sends a small HTML page; clients of a JSON API should never have to parse
        one. json.dumps escapes what the parser quotes back from the client's bytes.
        """
        short = self.responses.get(code, ("Error", ""))[0]
        body = json.dumps({"error": message or short, "status": code}).encode("utf-8")
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

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds
        # without DNS; the name is only used for SERVER_NAME.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error-exporter HTTP connection from %s failed", client_address,
                  exc_info=True)


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class MonitorServer:
    """Serves ``make_wsgi_app(monitor)`` on host:port until ``stop()``."""

    def __init__(self, monitor: ErrorReader | None, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, app: Any = None) -> None:
        self.monitor = monitor
        self.host = host
        self.requested_port = port
        if app is None:
            if monitor is None:
                raise ValueError("MonitorServer needs a monitor or an app")
            app = make_wsgi_app(monitor)
        self.app = app
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MonitorServer:
        """Bind and serve in a daemon thread; OSError naming host:port if the bind fails."""
        if self._server is not None:
            return self
        server_class = _ThreadingWSGIServer6 if ":" in self.host else _ThreadingWSGIServer
        try:
            server = server_class((self.host, self.requested_port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"error-exporter cannot listen on "
                          f"{self.host}:{self.requested_port}: {exc.strerror or exc}") from exc
        server.set_app(self.app)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"error-exporter-http:{self.port}", daemon=True)
        self._thread.start()
        log.info("error-exporter serving on %s", self.url)
        return self

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
        return f"http://{host}:{self.port}"

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
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> MonitorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MonitorServer {self.url} running={self.running}>"


def serve_app(app: Any, host: str = "127.0.0.1", port: int = 0) -> MonitorServer:
    """Serve any WSGI app the same way (tests, benchmarks)."""
    return MonitorServer(None, host, port, app=app).start()
