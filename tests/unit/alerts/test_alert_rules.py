"""The shipped Prometheus rules (alerts/rules.yml): promtool, conventions and PromQL hygiene."""

from __future__ import annotations

import functools
import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest
import yaml
from support.promql import (
    aggregations_dropping,
    counters_outside_rate,
    counters_read_raw,
    output_labels,
    template_labels,
)
from support.promstack import (
    PromStack,
    alerts,
    dump_yaml,
    http_get,
    query,
    shorten_rule_for,
    wait_until,
)
from support.sample_exporter import static_exporter
from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "alerts"
RULES_FILE = ALERTS / "rules.yml"
TESTS_FILE = ALERTS / "tests.yml"
RUNBOOK = ALERTS / "runbook.md"
RUNBOOK_BASE = "https://github.com/error-exporter/error-exporter/blob/main/alerts/runbook.md"
ALERT_SEVERITIES = {"critical", "warning", "info"}
GROUP_NAMES = {"error-exporter.rules", "error-exporter.alerts"}

RULES: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text())
ALL_RULES: list[dict[str, Any]] = [r for g in RULES["groups"] for r in g["rules"]]
ALERT_RULES = [r for r in ALL_RULES if "alert" in r]
RECORDING_RULES = [r for r in ALL_RULES if "record" in r]


def rule_id(rule: dict[str, Any]) -> str:
    name = rule.get("alert") or rule.get("record")
    severity = rule.get("labels", {}).get("severity")
    return f"{name}[{severity}]" if severity else str(name)


def recorded_labels() -> dict[str, frozenset[str]]:
    """Label sets of the recording rules, each proven from its own expression."""
    known: dict[str, frozenset[str]] = {}
    for rule in RECORDING_RULES:
        labels = output_labels(pp.parse(rule["expr"]), known)
        assert labels is not None, f"{rule['record']}: output labels are not bounded"
        known[rule["record"]] = labels
    return known


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}


# ---------------------------------------------------------------------------- promtool


@pytest.mark.tools
def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    # promtool lint findings (e.g. duplicate rules) are printed even when it succeeds.
    assert "duplicate" not in (proc.stdout + proc.stderr).lower()


@pytest.mark.tools
def test_promtool_test_rules() -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run(
        [promtool, "test", "rules", str(TESTS_FILE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ALERTS,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unit_tests_cover_every_alert_firing_and_not_firing() -> None:
    tests = yaml.safe_load(TESTS_FILE.read_text())
    firing: dict[str, set[str]] = {}
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            name = check["alertname"]
            expected = check.get("exp_alerts") or []
            if not expected:
                silent.add(name)
            for alert in expected:
                firing.setdefault(name, set()).add(alert["exp_labels"].get("severity", ""))
    missing = []
    for rule in ALERT_RULES:
        name, severity = rule["alert"], rule["labels"]["severity"]
        if severity not in firing.get(name, set()):
            missing.append(f"{name}[{severity}] never tested firing")
        if name not in silent:
            missing.append(f"{name} never tested not firing")
    assert not missing, "\n".join(missing)


# ---------------------------------------------------------------------------- conventions


def test_group_names() -> None:
    names = [g["name"] for g in RULES["groups"]]
    assert set(names) == GROUP_NAMES
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", ALERT_RULES, ids=rule_id)
def test_alert_has_for_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert "for" in rule, "every alert needs a for: duration"
    assert rule["labels"].get("severity") in ALERT_SEVERITIES
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"missing annotation {key}"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=rule_id)
def test_runbook_url_points_to_an_existing_section(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == RUNBOOK_BASE
    assert anchor == rule["alert"].lower(), "anchor must be the alert name in lower case"
    assert anchor in runbook_anchors(), f"no section for #{anchor} in {RUNBOOK.name}"


def test_every_runbook_alert_section_has_an_alert() -> None:
    names = {r["alert"].lower() for r in ALERT_RULES}
    sections = {a for a in runbook_anchors() if a.startswith("errorexporter")}
    assert sections == names


def test_same_alertname_differs_only_by_severity() -> None:
    seen: dict[str, set[str]] = {}
    for rule in ALERT_RULES:
        severities = seen.setdefault(rule["alert"], set())
        assert rule["labels"]["severity"] not in severities, f"duplicate {rule_id(rule)}"
        severities.add(rule["labels"]["severity"])


# ---------------------------------------------------------------------------- PromQL hygiene


@pytest.mark.parametrize("rule", ALL_RULES, ids=rule_id)
def test_expression_parses(rule: dict[str, Any]) -> None:
    pp.parse(rule["expr"])


@pytest.mark.parametrize("rule", ALERT_RULES, ids=rule_id)
def test_alert_output_labels_are_bounded_and_drop_metric_severity(rule: dict[str, Any]) -> None:
    """The alert's labels are proven from the expression: an explicit by (...) everywhere."""
    labels = output_labels(pp.parse(rule["expr"]), recorded_labels())
    assert labels is not None, "raw series labels can reach the alert: aggregate with by (...)"
    assert "severity" not in labels, "the metric label severity would override the alert's"
    assert "job" in labels, "alerts must keep the job label"
    used = set().union(*(template_labels(str(v)) for v in rule["annotations"].values()))
    assert used <= labels, f"annotations use labels the expression drops: {used - labels}"


@pytest.mark.parametrize("rule", RECORDING_RULES, ids=rule_id)
def test_recording_rule_output_labels(rule: dict[str, Any]) -> None:
    labels = recorded_labels()[rule["record"]]
    assert "severity" not in labels
    assert "job" in labels
    level = rule["record"].split(":")[0]
    # The level is the labels joined by "_", in any order (a label may hold "_": app_version).
    levels = {"_".join(order) for order in itertools.permutations(sorted(labels))}
    assert level in levels, "level:metric:operations naming: level = labels"


@pytest.mark.parametrize("rule", ALL_RULES, ids=rule_id)
def test_counters_only_inside_rate_or_increase(rule: dict[str, Any]) -> None:
    assert counters_read_raw(pp.parse(rule["expr"])) == []


@pytest.mark.parametrize("rule", ALL_RULES, ids=rule_id)
def test_every_aggregation_keeps_job(rule: dict[str, Any]) -> None:
    assert aggregations_dropping(pp.parse(rule["expr"]), "job") == []


def test_label_proof_rejects_leaky_expressions() -> None:
    """The checker itself: these would leak the metric severity label into an alert."""
    leaky = [
        'increase(app_errors_total{severity="critical"}[5m]) > 0',
        "sum without (component) (rate(app_errors_total[5m])) > 1",
        "sum by (job, severity) (rate(app_errors_total[5m])) > 1",
        "app_error_pattern_severity >= 3",
    ]
    for expr in leaky:
        labels = output_labels(pp.parse(expr))
        assert labels is None or "severity" in labels, expr
    assert counters_outside_rate(pp.parse("app_errors_total > 0")) == ["app_errors_total"]
    # Only the exact new-series check may read a counter raw.
    assert counters_read_raw(pp.parse("x_total unless x_total offset 1h")) == []
    assert (
        counters_read_raw(
            pp.parse("last_over_time(x_total[1h]) unless last_over_time(x_total[1h] offset 1h)")
        )
        == []
    )
    for raw in (
        "x_total unless x_total",
        "x_total offset 1h unless x_total",
        "x_total unless y_total offset 1h",
        "x_total unless on (job) x_total offset 1h",
        "(x_total unless x_total offset 1h) + x_total",
        "last_over_time(x_total[1h]) unless last_over_time(x_total[1h])",
        "last_over_time(x_total[1h]) unless x_total offset 1h",
        "max_over_time(x_total[1h]) unless max_over_time(x_total[1h] offset 1h)",
        "last_over_time(x_total[1h] offset 1h) unless last_over_time(x_total[1h])",
        "last_over_time(x_total[1h]) unless last_over_time(y_total[1h] offset 1h)",
    ):
        assert counters_read_raw(pp.parse(raw)), raw
    assert aggregations_dropping(pp.parse("sum(rate(x_total[5m]))"), "job")


# ---------------------------------------------------------------------------- real Prometheus


@pytest.fixture(scope="module")
def sample_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus evaluating the shipped rules (every 1s) over the contract sample."""
    require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("rules-prometheus")
    rules_copy = dump_yaml(shorten_rule_for(RULES, "2s"), workdir / "rules.yml")
    with static_exporter() as port, PromStack(workdir) as stack:
        prom = stack.prometheus(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_copy)],
                "scrape_configs": [
                    {
                        "job_name": "error-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ],
            }
        )
        wait_until(lambda: query(prom.url, 'up{job="error-exporter"} == 1'), 60, what="scrape")
        yield prom.url


def _rules_api(url: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{url}/api/v1/rules")
    assert status == 200
    groups: list[dict[str, Any]] = json.loads(body)["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.mark.tools
def test_rules_evaluate_without_errors_on_real_prometheus(sample_prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]]:
        rules = _rules_api(sample_prometheus)
        done = all(r.get("evaluationTime", 0) > 0 for r in rules) and len(rules) == len(ALL_RULES)
        return rules if done else []

    rules = wait_until(evaluated, 30, what="every rule evaluated")
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    assert not broken, "\n".join(broken)


@pytest.mark.tools
def test_recorded_series_have_the_proven_labels(sample_prometheus: str) -> None:
    for record, labels in recorded_labels().items():
        result = wait_until(
            functools.partial(query, sample_prometheus, record), 30, what=f"{record} series"
        )
        # An empty label value (component="") is an absent label in Prometheus.
        seen = [set(series["metric"]) - {"__name__"} for series in result]
        assert all(found <= labels for found in seen), (record, seen)
        assert set().union(*seen) == labels, (record, seen)


@pytest.mark.tools
def test_alert_labels_on_real_prometheus(sample_prometheus: str) -> None:
    """The sample has a degraded plugin and a critical error series that exists from the first
    scrape (at 2: a counter child is born at its first increment, which increase() cannot
    see): both fire with clean labels."""

    def firing() -> list[dict[str, Any]]:
        found = [a for a in alerts(sample_prometheus) if a["state"] == "firing"]
        names = {a["labels"]["alertname"] for a in found}
        wanted = {"ErrorExporterCriticalErrors", "ErrorExporterPluginDegraded"}
        return found if wanted <= names else []

    by_name = {a["labels"]["alertname"]: a for a in wait_until(firing, 30, what="alerts firing")}
    critical = by_name["ErrorExporterCriticalErrors"]
    assert critical["labels"] == {
        "alertname": "ErrorExporterCriticalErrors",
        "severity": "critical",
        "job": "error-exporter",
        "instance": critical["labels"]["instance"],
        "component": "db",
        "error_type": "DatabaseError",
    }
    assert "captured 2 critical DatabaseError errors" in critical["annotations"]["description"]
    degraded = by_name["ErrorExporterPluginDegraded"]
    assert degraded["labels"]["severity"] == "info"
    assert degraded["labels"]["plugin"] == "stripe"
    assert degraded["annotations"]["summary"] == 'Plugin "stripe" is degraded.'


def test_runbook_panel_references_exist() -> None:
    """Panels the runbook sends people to (*Panel title*) exist on the dashboards."""
    dashboards = [json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")]
    titles = {d["title"] for d in dashboards}
    for board in dashboards:
        for panel in board["panels"]:
            titles.add(panel["title"])
            titles.update(p["title"] for p in panel.get("panels", []))
    referenced = set(re.findall(r"(?<![*\w])\*([A-Z][^*\n]+)\*(?!\*)", RUNBOOK.read_text()))
    assert referenced, "the runbook references no panel"
    assert referenced <= titles, f"unknown panels: {sorted(referenced - titles)}"
