"""HTTP surface of the monitor: one WSGI app, a stdlib server for it, and an ASGI adapter.

The routes live in one WSGI application so the standalone server, Flask, Django, FastAPI and
Starlette all serve exactly the same thing; no web framework is a dependency.
"""

from __future__ import annotations

from exporter.http.app import make_wsgi_app
from exporter.http.asgi_adapter import asgi_app
from exporter.http.openapi import build_openapi
from exporter.http.server import MonitorServer

__all__ = ["MonitorServer", "asgi_app", "build_openapi", "make_wsgi_app"]
