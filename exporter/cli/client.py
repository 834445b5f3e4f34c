"""A small client for the monitor's JSON API.

The monitor lives inside someone else's app, so the command line only ever talks to it over
HTTP. urllib keeps the CLI free of extra dependencies, and every failure becomes an
``ApiError`` whose message names the URL and the cause, so commands never show tracebacks.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9718"
URL_ENV = "ERROR_EXPORTER_URL"
TOKEN_ENV = "ERROR_EXPORTER_API_TOKEN"


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
    inner: Any = getattr(exc, "reason", exc)
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(inner, socket.gaierror):
        return f"unknown host ({inner.strerror or inner})"
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror.lower()
    return str(inner) or type(inner).__name__


class ApiClient:
    """GETs against one base URL, with an optional bearer token."""

    def __init__(self, base_url: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        url = (base_url or default_url()).strip()
        if "://" not in url:
            url = "http://" + url
        self.base_url = url.rstrip("/")
        self.token = token if token is not None else default_token()
        self.timeout = timeout

    def url_for(self, path: str, params: dict[str, Any] | None = None) -> str:
        url = self.base_url + "/" + path.lstrip("/")
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        if clean:
            url += "?" + urllib.parse.urlencode(clean)
        return url

    def get_bytes(self, path: str, params: dict[str, Any] | None = None,
                  accept: str = "application/json", method: str = "GET") -> tuple[bytes, str]:
        """Body and content type of a GET (or an empty-bodied ``method``, e.g. POST);
        raises ApiError subclasses on failure."""
        url = self.url_for(path, params)
        request = urllib.request.Request(url, data=None if method == "GET" else b"",
                                         method=method,
                                         headers={"Accept": accept, "Accept-Encoding": "gzip"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
                if response.headers.get("Content-Encoding", "") == "gzip":
                    body = gzip.decompress(body)
                return body, response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise self._http_error(url, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = _reason(exc)
            hint = " (is the app running?)" if reason == "connection refused" else ""
            raise ConnectionFailed(f"cannot reach {url}: {reason}{hint}", reason) from None
        except ValueError as exc:  # malformed URL
            raise ConnectionFailed(f"invalid URL {url}: {exc}", f"invalid URL: {exc}") from None

    def _http_error(self, url: str, exc: urllib.error.HTTPError) -> ApiError:
        if exc.code == 401:
            if self.token:
                return AuthRequired(f"401 from {url}: the server rejected the token",
                                    "401: the server rejected the token")
            need = f"401: this server needs a token (--token or {TOKEN_ENV})"
            return AuthRequired(f"{need} at {url}", need)
        detail = ""
        try:
            payload = json.loads(exc.read() or b"null")
            if isinstance(payload, dict) and payload.get("error"):
                detail = f": {payload['error']}"
        except (ValueError, OSError):
            pass
        return HttpStatusError(f"HTTP {exc.code} from {url}{detail}", exc.code,
                               f"HTTP {exc.code}{detail}")

    def get_json(self, path: str, params: dict[str, Any] | None = None,
                 method: str = "GET") -> Any:
        body, content_type = self.get_bytes(path, params, method=method)
        try:
            return json.loads(body)
        except ValueError:
            kind = content_type.split(";")[0] or "unknown content type"
            raise NotJson(
                f"{self.url_for(path, params)} did not return JSON ({kind}): "
                "is this an error-exporter API?", f"the answer is not JSON ({kind})"
            ) from None

    def get_object(self, path: str, params: dict[str, Any] | None = None,
                   method: str = "GET") -> dict[str, Any]:
        """A JSON object, or NotJson naming the URL when the answer is some other JSON."""
        data = self.get_json(path, params, method)
        if not isinstance(data, dict):
            raise NotJson(f"{self.url_for(path, params)} returned {type(data).__name__}, "
                          "not a JSON object: is this an error-exporter API?",
                          f"the answer is a JSON {type(data).__name__}, not an object")
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
            "/api/v1/errors/" + urllib.parse.quote(error_id, safe="") + "/resolve",
            method="POST")

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
            return {"plugin_id": plugin, "status": "unknown", "total_errors": 0,
                    "error_types": {}, "recent_error_count": 0, "last_error": None}

    def export_page(self, **params: Any) -> dict[str, Any]:
        return self.get_object("/api/v1/export", params)

    def metrics_text(self) -> str:
        return self.get_text("/metrics")
