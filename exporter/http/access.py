"""Who may talk to the standalone server: the Host check, then basic auth, then the app.

This wraps the WSGI app only where the monitor runs its own server: mounted in Flask, Django
or FastAPI, the host app's stack decides who gets in. The order matters: a request to a
foreign Host (DNS rebinding) is refused before it can try passwords; with basic auth
configured every route is closed, /healthz included (the toolkit's format has no exceptions),
and a valid bearer token (``api_token``) admits as well as a valid user, so existing clients
keep working. A request admitted here is marked in the environ (a key no client can set:
headers arrive as ``HTTP_*``), and the app then skips its own token check.

No message says which part of the credentials was wrong or echoes them: a 401 is a 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

from exporter.http.basic_auth import BasicAuth, parse_basic
from exporter.http.host_check import HostCheck
from exporter.model import json_text

AUTHENTICATED = "exporter.authenticated"
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class AccessGate:
    """WSGI middleware: Host check, basic auth (or the bearer token), extra headers."""

    def __init__(
        self,
        app: WsgiApp,
        host_check: HostCheck,
        basic: BasicAuth | None = None,
        token: Callable[[], str | None] = lambda: None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.app = app
        self.host_check = host_check
        self.basic = basic if basic else None
        self.token = token
        self.headers = list(headers)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        head = str(environ.get("REQUEST_METHOD") or "").upper() == "HEAD"
        host = environ.get("HTTP_HOST")
        if not self.host_check.allows(host):
            shown = str(host)[:100]
            return self._refuse(
                start_response,
                "421 Misdirected Request",
                421,
                f"this monitor listens on a loopback address and answers only "
                f"requests addressed to localhost, 127.0.0.1 or ::1 (the Host "
                f"header was {shown!r}): another name may be a web page "
                f"reaching it by DNS rebinding. If you reach the monitor by "
                f"this name, list it in the allowed_hosts option "
                f"(ERROR_EXPORTER_ALLOWED_HOSTS)",
                head=head,
            )
        if self.basic is not None:
            if not self._admitted(str(environ.get("HTTP_AUTHORIZATION") or "")):
                challenge = 'Basic realm="error-exporter", charset="UTF-8"'
                return self._refuse(
                    start_response,
                    "401 Unauthorized",
                    401,
                    "this server needs credentials: basic auth (a user of the "
                    "web config file's basic_auth_users)"
                    + (" or the bearer token" if self.token() else ""),
                    [("WWW-Authenticate", challenge)],
                    head=head,
                )
            environ[AUTHENTICATED] = True
        if not self.headers:
            return self.app(environ, start_response)

        def with_headers(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            present = {name.lower() for name, _ in headers}
            extra = [(n, v) for n, v in self.headers if n.lower() not in present]
            return start_response(status, [*headers, *extra], *exc)

        return self.app(environ, with_headers)

    def _admitted(self, header: str) -> bool:
        assert self.basic is not None
        credentials = parse_basic(header)
        if credentials is not None:
            return self.basic.check(*credentials)
        scheme, _, supplied = header.strip().partition(" ")
        token = self.token()
        if token and scheme.lower() == "bearer":
            given = supplied.strip().encode("latin-1", "replace")
            return hmac.compare_digest(given, token.encode("utf-8"))
        return False

    def _refuse(
        self,
        start_response: StartResponse,
        status: str,
        code: int,
        message: str,
        headers: list[tuple[str, str]] | None = None,
        head: bool = False,
    ) -> Iterable[bytes]:
        body = json_text({"error": message, "status": code}).encode("ascii")
        start_response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *(headers or []),
                *self.headers,
            ],
        )
        return [b""] if head else [body]
