"""/metrics: prometheus_client's own encoders, chosen by the Accept header, gzip on request.

OpenMetrics is what carries the ``error_id`` exemplars; the classic text format is what
``promtool check metrics`` and older scrapers read. prometheus_client does the rendering so the
output is exactly what its ``generate_latest`` would produce.
"""

from __future__ import annotations

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from exporter.http.responses import Response, accepts_gzip, gzip_body


def metrics_response(registry: Collector, accept: str, accept_encoding: str) -> Response:
    """Render ``registry`` for this client (format from Accept, gzip from Accept-Encoding)."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    headers = [("Vary", "Accept, Accept-Encoding"), ("Cache-Control", "no-store")]
    if accepts_gzip(accept_encoding):
        body = gzip_body(body)
        headers.append(("Content-Encoding", "gzip"))
    return Response(200, body, content_type, headers)
