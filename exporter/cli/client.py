"""A small client for the monitor's JSON API.

The monitor lives inside someone else's app, so the command line only ever talks to it over
HTTP. urllib keeps the CLI free of extra dependencies, and every failure becomes an
``ApiError`` whose message names the URL and the cause, so commands never show tracebacks.

A monitor behind a web config file speaks TLS and may want basic auth or a client
certificate; ``ClientAccess`` holds what this side needs for that (a CA file, a client
certificate and key, a user and a password read from a file or the environment; never a
password on the command line, where every user of the machine can read it in ``ps``). The
password is never shown in a message or a repr.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9718"
URL_ENV = "ERROR_EXPORTER_URL"
TOKEN_ENV = "ERROR_EXPORTER_API_TOKEN"
CA_FILE_ENV = "ERROR_EXPORTER_CA_FILE"
CERT_FILE_ENV = "ERROR_EXPORTER_CLIENT_CERT_FILE"
KEY_FILE_ENV = "ERROR_EXPORTER_CLIENT_KEY_FILE"
USER_ENV = "ERROR_EXPORTER_BASIC_AUTH_USER"
PASSWORD_FILE_ENV = "ERROR_EXPORTER_BASIC_AUTH_PASSWORD_FILE"


class ApiError(Exception):
    """An API call failed; the message is meant for the user as is.

    ``reason`` is the cause without the URL, for views that show the URL elsewhere.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class ConnectionFailed(ApiError):
    """Nothing answered at the URL (refused, unknown host, timeout)."""


class AuthRequired(ApiError):
    """The server answered 401: a token is missing or wrong."""


class NotJson(ApiError):
    """The server answered, but not with JSON: probably not an error-exporter API."""


class HttpStatusError(ApiError):
    """Any other non-2xx answer."""

    def __init__(self, message: str, status: int, reason: str | None = None) -> None:
        super().__init__(message, reason)
        self.status = status


def default_url() -> str:
    """The URL used when --url is not given: the env variable, else the default bind."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def default_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def _reason(exc: BaseException) -> str:
    """The innermost useful cause of a urllib failure, in words."""
    inner: Any = exc if isinstance(exc, ssl.SSLError) else getattr(exc, "reason", exc)
    if isinstance(inner, ssl.SSLCertVerificationError):
        return (
            f"the server's TLS certificate is not trusted ({inner.verify_message}; "
            f"--ca-file or {CA_FILE_ENV} names the CA that signed it)"
        )
    if isinstance(inner, ssl.SSLError):
        return (
            f"TLS failed ({inner.reason or inner}; is it https, does the server want a "
            "client certificate?)"
        )
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(inner, socket.gaierror):
        return f"unknown host ({inner.strerror or inner})"
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror.lower()
    return str(inner) or type(inner).__name__


class AccessError(ValueError):
    """The client's TLS or credential settings cannot be used (a file that does not load)."""


@dataclass(frozen=True)
class ClientAccess:
    """How this side proves who it is and checks the server: TLS files and basic auth."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        user: str | None = None,
        password_file: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> ClientAccess:
        """Arguments first, then ``ERROR_EXPORTER_*`` variables; reads the password file.
        AccessError naming the file (never its content) when it cannot be read."""
        env = dict(os.environ if environ is None else environ)
        ca_file = ca_file or env.get(CA_FILE_ENV) or None
        cert_file = cert_file or env.get(CERT_FILE_ENV) or None
        key_file = key_file or env.get(KEY_FILE_ENV) or None
        user = user or env.get(USER_ENV) or None
        password_file = password_file or env.get(PASSWORD_FILE_ENV) or None
        password = None
        if password_file:
            try:
                with open(password_file, encoding="utf-8") as handle:
                    password = handle.read().rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise AccessError(
                    f"cannot read the basic auth password file {password_file}: {reason}"
                ) from None
            if user is None:
                raise AccessError(
                    f"a basic auth password file is given but no user "
                    f"(--basic-auth-user or {USER_ENV})"
                )
        elif user is not None:
            raise AccessError(
                f"basic auth user {user!r} has no password: give "
                f"--basic-auth-password-file FILE or {PASSWORD_FILE_ENV}"
            )
        if key_file and not cert_file:  # (a certificate without a key: a PEM with both)
            raise AccessError(
                "a client key file is given without its certificate "
                f"(--cert-file or {CERT_FILE_ENV})"
            )
        return cls(ca_file, cert_file, key_file, user, password)

    def ssl_context(self) -> ssl.SSLContext:
        """Verifying context: the system CAs, or ``ca_file``; the client certificate if any."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise AccessError(f"cannot load the client TLS files: {_tls_reason(exc)}") from None
        return context

    def authorization(self) -> str | None:
        if self.user is None or self.password is None:
            return None
        raw = f"{self.user}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def access_from_args(args: Any) -> ClientAccess:
    """ClientAccess from the command line's ``--ca-file``, ``--cert-file``, ``--key-file``,
    ``--basic-auth-user`` and ``--basic-auth-password-file`` (each falls back to its
    variable)."""
    return ClientAccess.resolve(
        getattr(args, "ca_file", None),
        getattr(args, "cert_file", None),
        getattr(args, "key_file", None),
        getattr(args, "basic_auth_user", None),
        getattr(args, "basic_auth_password_file", None),
    )


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    return str(exc)


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within the same scheme, host and port: urllib would resend the
    Authorization header (token or password) to wherever a redirect points, and to plain
    HTTP after HTTPS. A redirect elsewhere ends as the HTTP error it is."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class ApiClient:
    """GETs against one base URL, with an optional bearer token or basic auth, over TLS
    when the URL is https (verified against the system CAs or ``access.ca_file``)."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        access: ClientAccess | None = None,
    ) -> None:
        url = (base_url or default_url()).strip()
        if "://" not in url:
            url = "http://" + url
        self.base_url = url.rstrip("/")
        self.token = token if token is not None else default_token()
        self.timeout = timeout
        self.access = access or ClientAccess()
        self._built: urllib.request.OpenerDirector | None = None

    def url_for(self, path: str, params: dict[str, Any] | None = None) -> str:
        url = self.base_url + "/" + path.lstrip("/")
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        if clean:
            url += "?" + urllib.parse.urlencode(clean)
        return url

    def get_bytes(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        accept: str = "application/json",
        method: str = "GET",
    ) -> tuple[bytes, str]:
        """Body and content type of a GET (or an empty-bodied ``method``, e.g. POST);
        raises ApiError subclasses on failure."""
        url = self.url_for(path, params)
        request = urllib.request.Request(
            url,
            data=None if method == "GET" else b"",
            method=method,
            headers={"Accept": accept, "Accept-Encoding": "gzip"},
        )
        basic = self.access.authorization()
        if basic:
            request.add_header("Authorization", basic)
        elif self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener().open(request, timeout=self.timeout) as response:
                body = response.read()
                if response.headers.get("Content-Encoding", "") == "gzip":
                    body = gzip.decompress(body)
                return body, response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise self._http_error(url, exc) from None
        except AccessError as exc:
            raise ConnectionFailed(f"cannot reach {url}: {exc}", str(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = _reason(exc)
            hint = " (is the app running?)" if reason == "connection refused" else ""
            raise ConnectionFailed(f"cannot reach {url}: {reason}{hint}", reason) from None
        except ValueError as exc:  # malformed URL
            raise ConnectionFailed(f"invalid URL {url}: {exc}", f"invalid URL: {exc}") from None

    def _opener(self) -> urllib.request.OpenerDirector:
        if self._built is None:
            handlers: list[urllib.request.BaseHandler] = [_SameOriginRedirects()]
            if self.base_url.lower().startswith("https:"):
                handlers.append(urllib.request.HTTPSHandler(context=self.access.ssl_context()))
            self._built = urllib.request.build_opener(*handlers)
        return self._built

    def _http_error(self, url: str, exc: urllib.error.HTTPError) -> ApiError:
        if exc.code == 401 and self.access.authorization():
            return AuthRequired(
                f"401 from {url}: the server rejected the basic auth "
                f"credentials of user {self.access.user!r}",
                "401: the server rejected the basic auth credentials",
            )
        if exc.code == 401 and "basic" in str(exc.headers.get("WWW-Authenticate", "")).lower():
            need = (
                f"401: this server needs basic auth (--basic-auth-user and "
                f"--basic-auth-password-file, or {USER_ENV} and {PASSWORD_FILE_ENV})"
            )
            return AuthRequired(f"{need} at {url}", need)
        if exc.code == 401:
            if self.token:
                return AuthRequired(
                    f"401 from {url}: the server rejected the token",
                    "401: the server rejected the token",
                )
            need = f"401: this server needs a token (--token or {TOKEN_ENV})"
            return AuthRequired(f"{need} at {url}", need)
        detail = ""
        try:
            payload = json.loads(exc.read() or b"null")
            if isinstance(payload, dict) and payload.get("error"):
                detail = f": {payload['error']}"
        except (ValueError, OSError):
            pass
        return HttpStatusError(
            f"HTTP {exc.code} from {url}{detail}", exc.code, f"HTTP {exc.code}{detail}"
        )

    def get_json(self, path: str, params: dict[str, Any] | None = None, method: str = "GET") -> Any:
        body, content_type = self.get_bytes(path, params, method=method)
        try:
            return json.loads(body)
        except ValueError:
            kind = content_type.split(";")[0] or "unknown content type"
            raise NotJson(
                f"{self.url_for(path, params)} did not return JSON ({kind}): "
                "is this an error-exporter API?",
                f"the answer is not JSON ({kind})",
            ) from None

    def get_object(
        self, path: str, params: dict[str, Any] | None = None, method: str = "GET"
    ) -> dict[str, Any]:
        """A JSON object, or NotJson naming the URL when the answer is some other JSON."""
        data = self.get_json(path, params, method)
        if not isinstance(data, dict):
            raise NotJson(
                f"{self.url_for(path, params)} returned {type(data).__name__}, "
                "not a JSON object: is this an error-exporter API?",
                f"the answer is a JSON {type(data).__name__}, not an object",
            )
        return data

    def get_text(self, path: str) -> str:
        body, _ = self.get_bytes(path, accept="text/plain; version=0.0.4")
        return body.decode("utf-8", errors="replace")

    # -- the routes of docs/contracts.md ------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.get_object("/healthz")

    def statistics(self) -> dict[str, Any]:
        return self.get_object("/api/v1/statistics")

    def analysis(self) -> dict[str, Any]:
        return self.get_object("/api/v1/analysis")

    def errors(self, sort: str = "count", limit: int = 10) -> list[dict[str, Any]]:
        data = self.get_object("/api/v1/errors", {"sort": sort, "limit": limit})
        return list(data.get("errors") or [])

    def resolve(self, error_id: str) -> dict[str, Any]:
        """Mark a group resolved (the one POST): its summary; ApiError (404 unknown id,
        403 no token configured, 401...) otherwise."""
        return self.get_object(
            "/api/v1/errors/" + urllib.parse.quote(error_id, safe="") + "/resolve", method="POST"
        )

    def error(self, error_id: str) -> dict[str, Any]:
        return self.get_object("/api/v1/errors/" + urllib.parse.quote(error_id, safe=""))

    def patterns(self) -> list[dict[str, Any]]:
        return list(self.get_object("/api/v1/patterns").get("patterns") or [])

    def plugin_health(self, plugin: str) -> dict[str, Any]:
        """The plugin's health; status ``unknown`` when the server never saw it (its 404)."""
        path = "/api/v1/plugins/" + urllib.parse.quote(plugin, safe="") + "/health"
        try:
            return self.get_object(path)
        except HttpStatusError as exc:
            if exc.status != 404:
                raise
            return {
                "plugin_id": plugin,
                "status": "unknown",
                "total_errors": 0,
                "error_types": {},
                "recent_error_count": 0,
                "last_error": None,
            }

    def export_page(self, **params: Any) -> dict[str, Any]:
        return self.get_object("/api/v1/export", params)

    def metrics_text(self) -> str:
        return self.get_text("/metrics")
