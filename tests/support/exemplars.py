"""Reading exemplars back from a real Prometheus."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any


def query_exemplars(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query_exemplars?{params}", timeout=10) as r:
        payload = json.loads(r.read())
    assert payload["status"] == "success", payload
    data: list[dict[str, Any]] = payload["data"]
    return data


def newest_exemplar(series: list[dict[str, Any]]) -> dict[str, Any] | None:
    exemplars = [e for s in series for e in s.get("exemplars", [])]
    return max(exemplars, key=lambda e: float(e["timestamp"])) if exemplars else None
