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

ROOT = Path(__file__).resolve().parents[3]
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
    pytest.param(
        "critical",
        [
            "alertname=ErrorExporterCrashLooping",
            "severity=critical",
            "job=error-exporter",
            "instance=app:9718",
        ],
        id="crash-loop-pages",
    ),
    pytest.param(
        "critical",
        ["alertname=ErrorExporterTargetMissing", "severity=critical", "job=error-exporter"],
        id="lost-targets-page",
    ),
    pytest.param(
        "critical",
        [
            "alertname=ErrorExporterNoLiveProcess",
            "severity=critical",
            "job=error-exporter",
            "instance=app:9718",
        ],
        id="dead-workers-page",
    ),
    # A pattern is a cause: a ticket at most, never the pager.
    pytest.param(
        "warning",
        [
            "alertname=ErrorExporterErrorPattern",
            "severity=warning",
            "job=error-exporter",
            "instance=app:9718",
            "error_type=TimeoutError",
        ],
        id="pattern-is-a-ticket",
    ),
    pytest.param(
        "warning",
        [
            "alertname=ErrorExporterTaskFailureRatioHigh",
            "severity=warning",
            "job=worker",
            "component=celery",
            "operation=send_email",
        ],
        id="task-failures-ticket",
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


def _route(receiver: str) -> dict[str, Any]:
    route: dict[str, Any] = next(r for r in CONFIG["route"]["routes"] if r["receiver"] == receiver)
    return route


def test_grouping_is_by_incident_never_by_alert_name() -> None:
    """One incident of a service is one notification: pages group per job, tickets per job and
    component; alertname is never a grouping label (three alerts of one incident were three
    pages). Release health keeps its per-version grouping."""
    assert CONFIG["route"]["group_by"] == ["job", "component"]
    assert _route("critical")["group_by"] == ["job"]
    for route in CONFIG["route"]["routes"]:
        if route["receiver"] != "release":
            assert "alertname" not in route.get("group_by", [])


def _inhibits(source: dict[str, str], target: dict[str, str]) -> bool:
    """Whether an inhibit rule of the config silences ``target`` while ``source`` fires
    (matchers of the forms label="v", label=~"re", label!="v", label!~"re")."""
    import re

    def matches(matcher: str, labels: dict[str, str]) -> bool:
        found = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher)
        assert found, matcher
        name, op, value = found.groups()
        have = labels.get(name, "")
        return {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]

    for rule in CONFIG["inhibit_rules"]:
        if (
            all(matches(m, source) for m in rule["source_matchers"])
            and all(matches(m, target) for m in rule["target_matchers"])
            and all(source.get(k, "") == target.get(k, "") for k in rule["equal"])
            # Alertmanager: an alert matching both sides never inhibits its likes.
            and not (
                all(matches(m, target) for m in rule["source_matchers"])
                and all(matches(m, source) for m in rule["target_matchers"])
            )
        ):
            return True
    return False


JOB = {"job": "error-exporter"}
DOWN = {**JOB, "alertname": "ErrorExporterDown", "severity": "critical", "instance": "a:1"}
LOOP = {**JOB, "alertname": "ErrorExporterCrashLooping", "severity": "critical", "instance": "a:1"}
MISSING = {**JOB, "alertname": "ErrorExporterTargetMissing", "severity": "critical"}
BURN = {
    **JOB,
    "alertname": "ErrorExporterErrorBudgetBurn",
    "severity": "critical",
    "component": "checkout",
}
CRIT = {
    **JOB,
    "alertname": "ErrorExporterCriticalErrors",
    "severity": "critical",
    "instance": "a:1",
    "component": "checkout",
    "error_type": "DBError",
}
RATE = {
    **JOB,
    "alertname": "ErrorExporterErrorRateHigh",
    "severity": "warning",
    "component": "checkout",
}
PATTERN = {
    **JOB,
    "alertname": "ErrorExporterErrorPattern",
    "severity": "warning",
    "instance": "a:1",
    "error_type": "DBError",
}
NEW_GROUP = {
    **JOB,
    "alertname": "ErrorExporterNewErrorGroup",
    "severity": "warning",
    "app_version": "1.1.0",
    "release_scope": "fleet",
}


@pytest.mark.parametrize(
    ("source", "target", "inhibited"),
    [
        (DOWN, CRIT, True),
        (DOWN, PATTERN, True),
        (DOWN, LOOP, True),
        (DOWN, {**CRIT, "instance": "b:1"}, False),
        (LOOP, CRIT, True),
        (LOOP, DOWN, False),
        (MISSING, BURN, True),
        (MISSING, {**BURN, "job": "other"}, False),
        (BURN, CRIT, True),
        (BURN, RATE, True),
        (BURN, {**CRIT, "component": "search"}, False),
        (CRIT, RATE, True),
        (CRIT, BURN, False),
        ({**BURN, "severity": "critical"}, {**BURN, "severity": "warning"}, True),
        # Release health is about a version, never silenced by a component's page.
        (BURN, NEW_GROUP, False),
        (DOWN, NEW_GROUP, False),
    ],
)
def test_inhibition(source: dict[str, str], target: dict[str, str], inhibited: bool) -> None:
    assert _inhibits(source, target) is inhibited


def test_grouping_and_inhibition() -> None:
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
    wait_until(
        lambda: any(a["labels"] == critical for a in http_json(api)),
        30,
        what="the critical alert in Alertmanager",
    )
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
    assert body["groupLabels"] == {"job": "error-exporter"}

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


@pytest.mark.tools
def test_real_alertmanager_one_page_per_incident(stack: PromStack) -> None:
    """One incident of a service: a component burns its budget fast, raises critical errors and
    a pattern ticket; a target of the same job is down and its own alerts fire. The pager gets
    one group (the job): the burn and the down target; the critical errors under the burn and
    everything of the down target are silenced, and no ticket of the burning component is
    sent."""
    hook = stack.webhook()
    am = stack.alertmanager(point_webhooks_at(load_yaml(AM_FILE), hook.url, group_wait="2s"))
    api = f"{am.url}/api/v2/alerts"
    down = {**DOWN, "instance": "b:1"}
    under_down = {**CRIT, "instance": "b:1", "component": "search"}
    # The symptoms go in first: Alertmanager inhibits only against alerts it already holds.
    http_json(api, [_alert(BURN), _alert(down)])
    wait_until(lambda: len(http_json(api)) == 2, 30, what="the symptom alerts")
    http_json(api, [_alert(CRIT), _alert(RATE), _alert(under_down)])
    wait_until(lambda: _delivered(hook, "critical", "firing"), 30, what="the page")
    time.sleep(4)  # several group intervals (1 s): anything else would have been sent

    pages = [b for b in hook.bodies if b.get("receiver") == "critical"]
    assert {b["groupKey"] for b in pages} == {pages[0]["groupKey"]}, "one incident, one group"
    assert all(b["groupLabels"] == {"job": "error-exporter"} for b in pages)
    paged = {
        a["labels"]["alertname"] + "/" + a["labels"].get("instance", "")
        for b in pages
        for a in b["alerts"]
    }
    assert paged == {"ErrorExporterErrorBudgetBurn/", "ErrorExporterDown/b:1"}
    assert _delivered(hook, "warning", "firing") == []
    states = {
        a["labels"]["alertname"] + "/" + a["labels"].get("instance", ""): a["status"]["state"]
        for a in http_json(api)
    }
    assert states["ErrorExporterCriticalErrors/a:1"] == "suppressed"
    assert states["ErrorExporterCriticalErrors/b:1"] == "suppressed"
    assert states["ErrorExporterErrorRateHigh/"] == "suppressed"
