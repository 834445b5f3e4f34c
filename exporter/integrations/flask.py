"""Flask: the WSGI middleware around ``app.wsgi_app``, plus Flask's own signals.

Flask turns a view's exception into a 500 itself, so the integration also listens to
``got_request_exception`` (the error, with ``request.url_rule.rule`` as its route)::

    from exporter.integrations.flask import instrument_flask
    instrument_flask(app, monitor)
"""

from __future__ import annotations

from typing import Any

from exporter.integrations import Hub, is_not_an_error
from exporter.integrations.wsgi import SCOPE_KEY, WsgiMiddleware

__all__ = ["instrument_flask"]


def instrument_flask(app: Any, monitor: Hub | None = None, **options: Any) -> WsgiMiddleware:
    """Wrap ``app.wsgi_app`` and record view errors with ``request.url_rule.rule``.

    The route of every other request is read from ``environ["werkzeug.request"]`` when
    first needed (an error inside the view, the response's start at the latest, before Flask
    clears it): no signal handler runs for a request that goes well.
    """
    from flask import got_request_exception, request

    middleware = WsgiMiddleware(app.wsgi_app, monitor, **options)
    app.wsgi_app = middleware

    def on_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
        scope = request.environ.get(SCOPE_KEY)
        if scope is None or is_not_an_error(exception):
            return
        rule = request.url_rule
        scope.route = rule.rule if rule is not None else None
        scope.fail(exception, "flask")

    got_request_exception.connect(on_exception, app, weak=False)
    app.extensions["error_exporter"] = middleware
    return middleware
