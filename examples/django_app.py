"""A single-file Django app monitored by error-exporter.

    pip install django
    python examples/django_app.py runserver 8000
    curl localhost:8000/items/42/            # 500: KeyError recorded as "GET /items/<int:item_id>/"
    curl localhost:9718/metrics              # the monitor's own server (serve=True below)

``DjangoMiddleware`` (first in MIDDLEWARE) times every request and records view errors in
``process_exception`` with ``request.resolver_match.route`` as the route template. Under
several gunicorn workers, drop ``serve=True`` and mount the routes instead, e.g.
``application = mount(application, exporter.wsgi_app(monitor), "/monitor")``.
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

from exporter import get_error_monitor

monitor = get_error_monitor(app_version="django-example-1.0")
ITEMS = {1: "apple", 2: "pear"}


def get_item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"item": ITEMS[item_id]})  # KeyError if unknown


def create_order(request: HttpRequest) -> JsonResponse:
    raise ValueError("orders are closed")


urlpatterns = [
    path("items/<int:item_id>/", get_item),
    path("orders/", create_order),
]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="example-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["exporter.integrations.django.DjangoMiddleware"],
        ERROR_EXPORTER={"monitor": monitor, "component": "http"},
        INSTALLED_APPS=[],
        LOGGING_CONFIG=None,
    )

from django.core.wsgi import get_wsgi_application  # noqa: E402 - needs the settings

application = get_wsgi_application()

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    # runserver's autoreloader runs this file in two processes: serve from the one that
    # serves the app (RUN_MAIN), or from the only one with --noreload
    monitor.start(serve=os.environ.get("RUN_MAIN") == "true" or "--noreload" in sys.argv)
    execute_from_command_line(sys.argv)
