"""Release health end to end: the demo's deploy (a new error group, a regression) fires
ErrorExporterNewErrorGroup and ErrorExporterErrorRegressed on a real Prometheus evaluating the
shipped rules, and a real Alertmanager with the shipped routes delivers them to the `release`
receiver, one notification per version.

The rules count only processes whose store outlives a restart (``app_monitor_store_info``
with ``release_scope`` host or fleet): the demo runs with a file store (``store_path``).

The rules' and tests' own checks (promtool, labels, runbook) are in
tests/unit/alerts/test_alert_rules.py,
the routes' amtool cases in tests/unit/alerts/test_alertmanager_config.py.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support.promstack import (
    PromStack,
    WebhookReceiver,
    compress_windows,
    dump_yaml,
    free_port,
    http_json,
    load_yaml,
    point_webhooks_at,
    query,
    shorten_rule_for,
    store_info_stand_in,
    wait_until,
)
from support.tools import require_tool

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "alerts" / "rules.yml"
AM_FILE = ROOT / "alerts" / "alertmanager.yml"
RUNBOOK_BASE = "https://github.com/error-exporter/error-exporter/blob/main/alerts/runbook.md#"
JOB = "error-exporter"
RELEASE_ALERTS = ("ErrorExporterNewErrorGroup", "ErrorExporterErrorRegressed")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[PromStack]:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    with PromStack(tmp_path) as s:
        yield s


def notified(
    hook: WebhookReceiver, alertname: str, status: str, **labels: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(body, alert) for each delivered alert with that name, status and labels."""
    return [
        (body, alert)
        for body in hook.bodies
        for alert in body.get("alerts", [])
        if alert["labels"].get("alertname") == alertname
        and alert.get("status") == status
        and all(alert["labels"].get(k) == v for k, v in labels.items())
    ]


# ---------------------------------------------------------------------------- the demo's deploy


@pytest.mark.slow
def test_the_demo_deploy_fires_both_release_alerts_to_the_release_receiver(
    stack: PromStack,
) -> None:
    hook = stack.webhook()
    am = stack.alertmanager(
        point_webhooks_at(
            load_yaml(AM_FILE), hook.url, group_wait="1s", group_interval="1s", repeat_interval="1h"
        )
    )
    # The shipped rules with test timing: 1 s evaluation, for: 2s, windows divided by 60
    # ([1h] and offset 1h become 60 s).
    rules = compress_windows(shorten_rule_for(load_yaml(RULES_FILE), "2s"), factor=60)
    # The file store says so in app_monitor_store_info; until the exporter publishes it,
    # a stand-in rule does.
    rules["groups"].append(store_info_stand_in(JOB))
    port = free_port()
    config = dump_yaml({"store_path": str(stack.workdir / "errors.db")}, stack.workdir / "demo.yml")
    prom = stack.prometheus(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(dump_yaml(rules, stack.workdir / "rules.yml"))],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            ],
        },
        alertmanager=am,
    )
    wait_until(lambda: query(prom.url, f'up{{job="{JOB}"}}'), 60, what="target discovered")
    argv = [
        sys.executable, "-m", "exporter", "demo",
        "--host", "127.0.0.1", "--port", str(port),
        "--rate", "50", "--seed", "1", "--no-live",
        "--deploy-after", "6", "--duration", "300", "--config", str(config),
    ]  # fmt: skip
    demo = stack.spawn("demo", argv, port=port, ready_path="/healthz", cwd=ROOT)

    new = wait_until(
        lambda: notified(hook, "ErrorExporterNewErrorGroup", "firing", app_version="1.1.0"),
        90,
        what="ErrorExporterNewErrorGroup for 1.1.0 at the webhook",
    )
    regressed = wait_until(
        lambda: notified(hook, "ErrorExporterErrorRegressed", "firing", app_version="1.1.0"),
        90,
        what="ErrorExporterErrorRegressed for 1.1.0 at the webhook",
    )
    for body, alert in (new[0], regressed[0]):
        name = alert["labels"]["alertname"]
        # Per job and version, not per instance; the file store judges "new" per host.
        assert alert["labels"] == {
            "alertname": name, "severity": "warning", "job": JOB, "app_version": "1.1.0",
            "release_scope": "host",
        }  # fmt: skip
        assert body["receiver"] == "release"
        assert body["groupLabels"] == {"alertname": name, "job": JOB, "app_version": "1.1.0"}
        assert {a["labels"]["app_version"] for a in body["alerts"]} == {"1.1.0"}
        annotations = alert["annotations"]
        assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()
        assert "1.1.0" in annotations["summary"]
        assert "{{" not in annotations["summary"] + annotations["description"]

    # How many: the description's count matches what the demo's API says.
    described = re.search(
        r"Version 1\.1\.0 of \S+ raised (\d+) error groups for the first time",
        new[0][1]["annotations"]["description"],
    )
    assert described, new[0][1]["annotations"]["description"]
    new_groups = http_json(f"{demo.url}/api/v1/errors?new_in=1.1.0")
    assert "LaunchControlError" in {g["error_type"] for g in new_groups["errors"]}
    assert 1 <= int(described[1]) <= new_groups["total"]
    assert (
        f"Version 1.1.0 of {JOB} raised 1 resolved error groups again"
        in (regressed[0][1]["annotations"]["description"])
    )
    back = [g for g in http_json(f"{demo.url}/api/v1/errors?limit=100")["errors"] if g["regressed"]]
    assert [(g["error_type"], g["last_seen_version"]) for g in back] == [("ValueError", "1.1.0")]

    # The version before the deploy never regressed anything.
    assert not notified(hook, "ErrorExporterErrorRegressed", "firing", app_version="1.0.0")

    # The app stops. What it counted still counts for the window (an hour, here 60 s: a process
    # replaced after it counted a group must not take the alert with it), then the release
    # receiver hears the alerts resolve.
    demo.stop()
    for name in RELEASE_ALERTS:
        wait_until(
            functools.partial(notified, hook, name, "resolved", app_version="1.1.0"),
            150,
            what=f"{name} for 1.1.0 resolved at the webhook",
        )


# ---------------------------------------------------------------------------- routing only


def _alert(labels: dict[str, str]) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "labels": labels,
        "annotations": {"summary": f"test {labels['alertname']}"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "generatorURL": "http://127.0.0.1/test",
    }


def test_a_version_is_one_notification_and_no_critical_silences_it(
    stack: PromStack,
) -> None:
    """The rules already count per job and version (a rolling deploy is one alert). The routes
    keep one notification to `release` per job and version even when two alerts of it differ by
    another label (release_scope, while the job moves from file stores to the shared store),
    and while a critical alert about a component of the same job fires (it inhibits only that
    component's warnings). Another version is a notification of its own."""
    hook = stack.webhook()
    am = stack.alertmanager(point_webhooks_at(load_yaml(AM_FILE), hook.url))
    api = f"{am.url}/api/v2/alerts"
    critical = {
        "alertname": "ErrorExporterErrorBudgetBurn",
        "severity": "critical",
        "job": JOB,
        "component": "checkout",
    }
    http_json(api, [_alert(critical)])
    wait_until(
        lambda: any(a["labels"] == critical for a in http_json(api)),
        30,
        what="the critical alert in Alertmanager",
    )
    release = {"alertname": "ErrorExporterNewErrorGroup", "severity": "warning", "job": JOB}
    moving = [
        {**release, "app_version": "1.1.0", "release_scope": scope} for scope in ("host", "fleet")
    ]
    other = {**release, "app_version": "1.0.9", "release_scope": "fleet"}
    http_json(api, [_alert(labels) for labels in (*moving, other)])

    def delivered(version: str) -> list[dict[str, Any]]:
        return [b for b in hook.bodies if b.get("groupLabels", {}).get("app_version") == version]

    bodies = wait_until(
        lambda: [b for b in delivered("1.1.0") if len(b["alerts"]) == 2],
        30,
        what="one notification with both alerts of 1.1.0",
    )
    body = bodies[0]
    assert body["receiver"] == "release"
    assert body["groupLabels"] == {
        "alertname": "ErrorExporterNewErrorGroup",
        "job": JOB,
        "app_version": "1.1.0",
    }
    assert sorted(a["labels"]["release_scope"] for a in body["alerts"]) == ["fleet", "host"]
    assert {a["labels"]["app_version"] for b in delivered("1.1.0") for a in b["alerts"]} == {
        "1.1.0"
    }
    other_bodies = wait_until(lambda: delivered("1.0.9"), 30, what="the 1.0.9 notification")
    assert [a["labels"] for a in other_bodies[0]["alerts"]] == [other]

    states = {
        (a["labels"]["app_version"], a["labels"]["release_scope"]): a["status"]["state"]
        for a in http_json(api)
        if a["labels"]["alertname"] == "ErrorExporterNewErrorGroup"
    }
    assert states == {
        ("1.1.0", "host"): "active",
        ("1.1.0", "fleet"): "active",
        ("1.0.9", "fleet"): "active",
    }
