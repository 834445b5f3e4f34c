"""HTTP surface of the monitor: one WSGI app, a stdlib server for it, and an ASGI adapter.

The routes live in one WSGI application so the standalone server, Flask, Django, FastAPI and
Starlette all serve exactly the same thing; no web framework is a dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exporter.http.app import make_wsgi_app
from exporter.http.openapi import build_openapi
from exporter.http.server import MonitorServer

if TYPE_CHECKING:
    from exporter.http.asgi_adapter import asgi_app


def __getattr__(name: str) -> Any:
    """``asgi_app`` is imported when asked for: the standalone server needs no asyncio."""
    if name == "asgi_app":
        from exporter.http.asgi_adapter import asgi_app

        return asgi_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MonitorServer", "asgi_app", "build_openapi", "make_wsgi_app"]
