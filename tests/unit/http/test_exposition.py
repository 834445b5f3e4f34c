"""/metrics content: every family of docs/metrics.md with its labels, hostile label values
escaped, no ``_created`` series, and ``promtool check metrics`` clean on the text format."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from support.docs import metric_families
from support.populate import HOSTILE, populate_every_family, rich_monitor
from support.tools import require_tool
from werkzeug.test import Client

from exporter import ErrorMonitor, wsgi_app

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture
def rich(make_monitor: Any) -> tuple[ErrorMonitor, str]:
    monitor = rich_monitor(make_monitor)
    return monitor, populate_every_family(monitor)


def scrape(monitor: ErrorMonitor, accept: str = "") -> str:
    headers = {"Accept": accept} if accept else {}
    response = Client(wsgi_app(monitor)).get("/metrics", headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_contract_table_parses() -> None:
    families = metric_families()
    assert families["app_errors_total"] == (
        "counter",
        frozenset({"error_type", "component", "plugin", "severity"}),
    )
    assert families["app_monitor_internal_errors_total"] == ("counter", frozenset())
    assert families["app_error_pattern_severity"] == ("gauge", frozenset({"error_type"}))
    assert families["app_monitor_info"] == ("gauge", frozenset({"version", "python_version"}))
    assert len(families) >= 27


def test_every_contract_family_is_exposed_with_its_labels(rich: tuple[ErrorMonitor, str]) -> None:
    monitor, _ = rich
    samples: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(scrape(monitor)):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).add(frozenset(sample.labels))
    for name, (kind, labels) in metric_families().items():
        series = name + "_bucket" if kind == "histogram" else name
        assert series in samples, f"{series} missing"
        extra = {"le"} if kind == "histogram" else set()
        assert samples[series] == {labels | extra}, (name, samples[series])


def test_hostile_label_values_round_trip(rich: tuple[ErrorMonitor, str]) -> None:
    monitor, _ = rich
    for text, parse in (
        (scrape(monitor), text_string_to_metric_families),
        (scrape(monitor, OPENMETRICS), parse_openmetrics),
    ):
        components = {
            s.labels.get("component")
            for f in parse(text)
            for s in f.samples
            if s.name == "app_errors_total"
        }
        assert set(HOSTILE) <= components


def test_no_created_series_in_either_format(rich: tuple[ErrorMonitor, str]) -> None:
    monitor, _ = rich
    assert "_created" not in scrape(monitor)
    assert "_created" not in scrape(monitor, OPENMETRICS)


def test_openmetrics_has_the_latest_error_id_as_exemplar(rich: tuple[ErrorMonitor, str]) -> None:
    monitor, last = rich
    text = scrape(monitor, OPENMETRICS)
    assert text.endswith("# EOF\n")
    exemplars = {
        s.labels["component"]: s.exemplar.labels["error_id"]
        for f in parse_openmetrics(text)
        for s in f.samples
        if s.name == "app_errors_total" and s.exemplar is not None
    }
    assert exemplars["api"] == last
    assert len(exemplars) >= len(HOSTILE)


def test_overflowing_plugins_become_other(rich: tuple[ErrorMonitor, str]) -> None:
    monitor, _ = rich
    text = scrape(monitor)
    assert 'app_label_values_overflow_total{label="plugin"}' in text
    assert 'plugin="other"' in text


@pytest.mark.tools
def test_promtool_check_metrics_is_clean(rich: tuple[ErrorMonitor, str]) -> None:
    promtool = require_tool("promtool")
    monitor, _ = rich
    text = scrape(monitor, "text/plain; version=0.0.4")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr
