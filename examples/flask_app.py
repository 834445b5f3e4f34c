"""Flask app monitored by error-exporter.

    pip install flask
    python examples/flask_app.py            # or: flask --app examples/flask_app run
    curl localhost:5000/items/42            # 500: KeyError recorded as "GET /items/<int:item_id>"
    curl localhost:5000/monitor/metrics

``instrument_flask`` wraps ``app.wsgi_app`` (timing, request id, breadcrumb, session) and
listens to Flask's ``got_request_exception`` (Flask answers 500 itself, so the exception never
reaches a WSGI middleware); the route template comes from ``request.url_rule.rule``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

from exporter import get_error_monitor, wsgi_app
from exporter.integrations.flask import instrument_flask
from exporter.integrations.wsgi import current_request_id, mount

monitor = get_error_monitor(app_version="flask-example-1.0").start()
app = Flask(__name__)
ITEMS = {1: "apple", 2: "pear"}


@app.get("/items/<int:item_id>")
def get_item(item_id: int) -> Any:
    return jsonify(item=ITEMS[item_id], request_id=current_request_id())  # KeyError if unknown


@app.post("/orders")
def create_order() -> Any:
    order = request.get_json(force=True)
    if order.get("quantity", 0) <= 0:
        raise ValueError("quantity must be positive")
    return jsonify(ok=True), 201


instrument_flask(app, monitor, capture_body=True)
# the monitor's routes under /monitor, outside the instrumented app (scrapes are not timed)
app.wsgi_app = mount(app.wsgi_app, wsgi_app(monitor), "/monitor")  # type: ignore[method-assign, assignment]

if __name__ == "__main__":
    app.run(port=5000)
