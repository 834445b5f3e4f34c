"""A real Prometheus scrapes the running exporter (bearer token, OpenMetrics, exemplars on).

``promtool query instant`` must see every family of docs/metrics.md with its labels, and
``/api/v1/query_exemplars`` must return the latest error_id as the exemplar of
``app_errors_total``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.docs import metric_families
from support.exemplars import newest_exemplar, query_exemplars
from support.populate import (
    populate_every_family,
    raise_and_record,
    rich_monitor,
)
from support.promstack import PromStack, query, wait_until
from support.tools import require_tool

pytestmark = pytest.mark.tools
TOKEN = "prometheus-scrape-token"
IGNORED = {"__name__", "job", "instance"}


def promtool_query(promtool: str, url: str, expr: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [promtool, "query", "instant", "-o", "json", url, expr],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[PromStack]:
    """Prometheus processes of this test, stopped by PID at teardown."""
    with PromStack(tmp_path) as started:
        yield started


class Newest(Exception):
    """Raised once, after Prometheus is scraping: a brand-new group and error_id."""


def test_prometheus_sees_every_family_and_the_latest_exemplar(
    make_monitor: Any, stack: PromStack
) -> None:
    promtool = require_tool("promtool")
    monitor = rich_monitor(make_monitor, serve=True, port=0, api_token=TOKEN, protect_metrics=True)
    populate_every_family(monitor)
    target = f"127.0.0.1:{monitor.server.port}"
    started = time.time()
    prom = stack.prometheus(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "app",
                    "authorization": {"type": "Bearer", "credentials": TOKEN},
                    "static_configs": [{"targets": [target]}],
                }
            ],
        },
        exemplars=True,
    )
    wait_until(
        lambda: query(prom.url, 'up{job="app"} == 1'),
        timeout=60,
        what="a successful scrape of the exporter (with the bearer token)",
    )

    missing: dict[str, Any] = {}
    for name, (kind, labels) in metric_families().items():
        series_name = name + "_bucket" if kind == "histogram" else name
        found = promtool_query(promtool, prom.url, series_name)
        label_sets = {frozenset(set(r["metric"]) - IGNORED - {"le"}) for r in found}
        if label_sets != {labels}:
            missing[series_name] = sorted(map(sorted, label_sets))
    assert missing == {}, missing

    newest_id = raise_and_record(
        monitor,
        Newest("after the first scrape"),
        component="api",
        plugin="plug1",
        severity="critical",
    )
    assert newest_id is not None

    def exemplar_is_newest() -> bool:
        series = query_exemplars(prom.url, "app_errors_total", started, time.time() + 5)
        newest = newest_exemplar(series)
        return newest is not None and newest["labels"].get("error_id") == newest_id

    wait_until(exemplar_is_newest, timeout=30, what=f"exemplar error_id={newest_id}")
    series = query_exemplars(
        prom.url, 'app_errors_total{error_type="Newest"}', started, time.time() + 5
    )
    assert [e["labels"]["error_id"] for s in series for e in s["exemplars"]] == [newest_id]
    assert series[0]["seriesLabels"]["severity"] == "critical"
