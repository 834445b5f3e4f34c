"""FastAPI app monitored by error-exporter (the same works for Starlette).

    pip install fastapi uvicorn
    uvicorn --app-dir examples fastapi_app:app --port 8000
    curl localhost:8000/items/42             # 500: KeyError recorded as "GET /items/{item_id}"
    curl localhost:8000/monitor/metrics

``AsgiMiddleware`` reads the route template from ``scope["route"].path``, which the router sets;
several uvicorn/gunicorn workers work like the gunicorn example (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

from fastapi import FastAPI

from exporter import asgi_app, get_error_monitor
from exporter.integrations.asgi import AsgiMiddleware
from exporter.integrations.web import current_request_id

monitor = get_error_monitor(app_version="fastapi-example-1.0").start()
app = FastAPI()
ITEMS = {1: "apple", 2: "pear"}


@app.get("/items/{item_id}")
def get_item(item_id: int) -> dict[str, object]:
    return {"item": ITEMS[item_id], "request_id": current_request_id()}  # KeyError if unknown


@app.post("/orders")
async def create_order(order: dict[str, int]) -> dict[str, bool]:
    if order.get("quantity", 0) <= 0:
        raise ValueError("quantity must be positive")
    return {"ok": True}


app.add_middleware(AsgiMiddleware, monitor=monitor, capture_body=True)
app.mount("/monitor", asgi_app(monitor))  # a mount: its requests do not match an app route
