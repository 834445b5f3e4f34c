"""Django: a middleware on the same request scope as the WSGI one.

Add ``"exporter.integrations.django.DjangoMiddleware"`` first in ``MIDDLEWARE``; options go
in ``settings.ERROR_EXPORTER`` (a dict of :class:`~.web.WebOptions` fields plus an optional
``"monitor"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.integrations import Hub, is_not_an_error
from exporter.integrations.web import (
    MonitoredApp,
    RequestScope,
    WebOptions,
    clean_request_id,
    int_or_none,
    method_name,
    wants_body,
)

__all__ = ["DjangoMiddleware"]


class DjangoMiddleware(MonitoredApp):
    """Django middleware: put it first in ``MIDDLEWARE``."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings

        options = dict(getattr(settings, "ERROR_EXPORTER", None) or {})
        self._monitor: Hub | None = options.pop("monitor", None)
        self.options = WebOptions(**options)
        self.get_response = get_response
        self._meta_key = "HTTP_" + self.options.request_id_header.upper().replace("-", "_")

    def __call__(self, request: Any) -> Any:
        meta = request.META
        scope = RequestScope(
            self.monitor,
            self.options,
            str(request.method or "GET"),
            str(request.path),
            str(meta.get("QUERY_STRING") or ""),
            lambda: list(request.headers.items()),
            clean_request_id(meta.get(self._meta_key)),
            meta.get("HTTP_TRACEPARENT"),
        )
        request.error_exporter = scope
        content_type = str(meta.get("CONTENT_TYPE") or "")
        if wants_body(
            self.options,
            method_name(request.method or ""),
            content_type,
            int_or_none(meta.get("CONTENT_LENGTH")),
        ):
            try:
                scope.body, scope.content_type = bytes(request.body), content_type
            except Exception:
                self.monitor.note_internal_error()
        scope.begin()
        try:
            response = self.get_response(request)
        except BaseException as exc:
            scope.route = scope.route or _django_route(request)
            if not is_not_an_error(exc):
                scope.fail(exc, "django")
            scope.finish(None)
            raise
        scope.route = scope.route or _django_route(request)
        scope.finish(int(response.status_code))
        header = self.options.request_id_header
        if not response.has_header(header):
            response[header] = scope.request_id
        return response

    def process_exception(self, request: Any, exception: BaseException) -> None:
        scope = getattr(request, "error_exporter", None)
        if scope is not None and not is_not_an_error(exception):
            scope.route = _django_route(request)
            scope.fail(exception, "django")
        return None  # Django goes on turning it into its 500 response


def _django_route(request: Any) -> str | None:
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if not isinstance(route, str) or not route:
        return None
    return route if route.startswith("/") else "/" + route
