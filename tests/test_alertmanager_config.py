"""The shipped Alertmanager configuration (alerts/alertmanager.yml): amtool and a real daemon."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.promstack import (
    PromStack,
    WebhookReceiver,
    http_json,
    load_yaml,
    point_webhooks_at,
    wait_until,
)
from support.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
AM_FILE = ROOT / "alerts" / "alertmanager.yml"
RULES_FILE = ROOT / "alerts" / "rules.yml"
CONFIG: dict[str, Any] = yaml.safe_load(AM_FILE.read_text())


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[PromStack]:
    with PromStack(tmp_path) as s:
        yield s


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("amtool"), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.tools
def test_amtool_check_config() -> None:
    proc = amtool("check-config", str(AM_FILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


ROUTE_CASES = [
    pytest.param(
        "critical",
        [
            "alertname=ErrorExporterCriticalErrors",
            "severity=critical",
            "job=error-exporter",
            "component=payments",
        ],
        id="critical",
    ),
    pytest.param(
        "critical",
        [
            "alertname=ErrorExporterDown",
            "severity=critical",
            "job=error-exporter",
            "instance=app:9718",
        ],
        id="critical-no-component",
    ),
    pytest.param(
        "warning",
        [
            "alertname=ErrorExporterErrorBudgetBurn",
            "severity=warning",
            "job=error-exporter",
            "component=checkout",
        ],
        id="warning",
    ),
    pytest.param(
        "info",
        [
            "alertname=ErrorExporterPluginDegraded",
            "severity=info",
            "job=error-exporter",
            "plugin=mailer",
        ],
        id="info",
    ),
    # Release health goes to the release's owners whatever its severity.
    pytest.param(
        "release",
        [
            "alertname=ErrorExporterNewErrorGroup",
            "severity=warning",
            "job=error-exporter",
            "app_version=1.1.0",
            "release_scope=fleet",
        ],
        id="release-new-group",
    ),
    pytest.param(
        "release",
        [
            "alertname=ErrorExporterErrorRegressed",
            "severity=critical",
            "job=error-exporter",
            "app_version=1.1.0",
        ],
        id="release-regressed",
    ),
    pytest.param("default", ["alertname=Watchdog", "job=error-exporter"], id="no-severity"),
    pytest.param("default", ["alertname=Other", "severity=page"], id="unknown-severity"),
    # The *metric* severity vocabulary must not be routed as an alert severity by accident.
    pytest.param("default", ["alertname=Leaky", "severity=high"], id="metric-severity"),
]


@pytest.mark.tools
@pytest.mark.parametrize(("receiver", "labels"), ROUTE_CASES)
def test_routes(receiver: str, labels: list[str]) -> None:
    proc = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={AM_FILE}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert proc.returncode == 0, f"expected {receiver}: {proc.stdout}{proc.stderr}"


@pytest.mark.tools
def test_route_test_detects_a_wrong_receiver() -> None:
    """Guard against a vacuous routes test: amtool must fail on a mismatch."""
    proc = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={AM_FILE}",
        "--verify.receivers=info",
        "severity=critical",
    )
    assert proc.returncode != 0


def test_every_alert_severity_has_a_route() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())
    severities = {
        r["labels"]["severity"] for g in rules["groups"] for r in g["rules"] if "alert" in r
    }
    routed = {
        m.split("=", 1)[1].strip('"')
        for route in CONFIG["route"]["routes"]
        for m in route.get("matchers", [])
        if m.startswith("severity=")
    }
    assert severities <= routed


def test_grouping_and_inhibition() -> None:
    assert CONFIG["route"]["group_by"] == ["alertname", "job", "component"]
    critical_silences_warning = [
        rule
        for rule in CONFIG["inhibit_rules"]
        if 'severity="critical"' in rule["source_matchers"]
        and any("warning" in m for m in rule["target_matchers"])
    ]
    assert critical_silences_warning
    for rule in critical_silences_warning:
        assert {"job", "component"} <= set(rule["equal"])


def test_receivers_are_placeholders_with_an_email_example() -> None:
    for receiver in CONFIG["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["url"].startswith("http://127.0.0.1:5001/")
    assert "# email_configs:" in AM_FILE.read_text()


# ---------------------------------------------------------------------------- real daemon


def _alert(labels: dict[str, str], *, resolved: bool = False) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": f"test {labels['alertname']}"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "generatorURL": "http://127.0.0.1/test",
    }
    alert["endsAt"] = now - timedelta(seconds=1) if resolved else now + timedelta(hours=1)
    alert["endsAt"] = alert["endsAt"].isoformat()
    return alert


def _delivered(hook: WebhookReceiver, receiver: str, status: str) -> list[dict[str, Any]]:
    return [
        a
        for body in hook.bodies
        if body.get("receiver") == receiver
        for a in body.get("alerts", [])
        if a.get("status") == status
    ]


@pytest.mark.tools
def test_real_alertmanager_routes_inhibits_and_resolves(stack: PromStack) -> None:
    hook = stack.webhook()
    am = stack.alertmanager(point_webhooks_at(load_yaml(AM_FILE), hook.url))
    api = f"{am.url}/api/v2/alerts"

    common = {"alertname": "ErrorExporterErrorBudgetBurn", "job": "error-exporter"}
    critical = {**common, "severity": "critical", "component": "checkout"}
    inhibited = {**common, "severity": "warning", "component": "checkout"}
    other_component = {**common, "severity": "warning", "component": "search"}
    info = {
        "alertname": "ErrorExporterPluginDegraded",
        "severity": "info",
        "job": "error-exporter",
        "instance": "app:9718",
        "plugin": "mailer",
    }
    # The inhibitor goes in first: Alertmanager inhibits only against source alerts it
    # already holds, so posting both in one request races the warning's first flush.
    http_json(api, [_alert(critical)])
    wait_until(lambda: any(a["labels"] == critical for a in http_json(api)), 30,
               what="the critical alert in Alertmanager")
    http_json(api, [_alert(inhibited), _alert(other_component), _alert(info)])

    wait_until(lambda: _delivered(hook, "critical", "firing"), 30, what="critical notification")
    wait_until(lambda: _delivered(hook, "warning", "firing"), 30, what="warning notification")
    wait_until(lambda: _delivered(hook, "info", "firing"), 30, what="info notification")

    def state_of(labels: dict[str, str]) -> dict[str, Any]:
        for alert in http_json(api):
            if alert["labels"] == labels:
                status: dict[str, Any] = alert["status"]
                return status
        raise AssertionError(f"alert {labels} not found")

    assert state_of(inhibited)["state"] == "suppressed"
    assert state_of(inhibited)["inhibitedBy"]
    assert state_of(other_component)["state"] == "active"

    critical_alert = _delivered(hook, "critical", "firing")[0]
    assert critical_alert["labels"] == critical
    body = next(b for b in hook.bodies if b.get("receiver") == "critical")
    assert body["version"] == "4"
    assert body["groupLabels"] == {
        "alertname": "ErrorExporterErrorBudgetBurn",
        "job": "error-exporter",
        "component": "checkout",
    }

    # While the critical alert fires, the warning it silences is never delivered (several
    # group intervals of 1 s pass before looking).
    time.sleep(3)
    delivered_warnings = [a["labels"] for a in _delivered(hook, "warning", "firing")]
    assert other_component in delivered_warnings
    assert inhibited not in delivered_warnings

    # Resolve the critical alert: a resolved notification follows (send_resolved: true) and
    # the warning it silenced is delivered at last.
    http_json(api, [_alert(critical, resolved=True)])
    wait_until(lambda: _delivered(hook, "critical", "resolved"), 30, what="resolved notification")
    wait_until(
        lambda: inhibited in [a["labels"] for a in _delivered(hook, "warning", "firing")],
        30,
        what="the formerly inhibited warning",
    )
