"""End to end: the real demo, a real Prometheus and a real Alertmanager on loopback.

(a) every dashboard target returns data from the demo's metrics, and the release-health
    panels show the demo's deploy (a group new in 1.1.0, a regression in 1.1.0);
(b) an error storm in the demo reaches a webhook through the shipped rules and Alertmanager
    configuration as one incident (every page in the job's group, the pattern a ticket). The
    page is the critical errors' or the component's fast budget burn, which silences them: which
    one Alertmanager sends depends on which fires first. The demo's exit pages Down in the same
    group, and its return resolves it.

Needs `python -m exporter demo` (flags --host --port --rate --seed --no-live --storm
--duration --deploy-after), `prometheus` and `prometheus-alertmanager`. The release alerts'
end-to-end test is in tests/scenarios/test_release_alerts_fire.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from support.grafana import describe_failures, load_dashboards, run_targets
from support.promstack import (
    PromStack,
    Service,
    WaitTimeout,
    WebhookReceiver,
    alerts,
    compress_windows,
    dump_yaml,
    exemplars,
    free_port,
    load_yaml,
    point_webhooks_at,
    query,
    query_range,
    shorten_rule_for,
    store_info_stand_in,
    wait_until,
)
from support.tools import require_tool

pytestmark = [pytest.mark.tools, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "alerts" / "rules.yml"
FLEET_RULES_FILE = ROOT / "alerts" / "fleet-rules.yml"
AM_FILE = ROOT / "alerts" / "alertmanager.yml"
RUNBOOK_BASE = "https://github.com/error-exporter/error-exporter/blob/main/alerts/runbook.md#"
JOB = "error-exporter"
SCRAPE_SECONDS = 1.0
# The demo deploys 1.1.0 this long after its start: after Prometheus's first scrape (about 5 s
# after its start), so that the panels see the deploy happen.
DEPLOY_AFTER_SECONDS = 15
T = TypeVar("T")
RELEASE_PANELS = ("New error groups by version", "Regressed error groups by version")
# The drill-down's Background jobs row: the demo's worker runs tasks (component "celery").
TASK_PANELS = ("Task failures and retries", "Task duration percentiles", "Task failure ratio")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[PromStack]:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    with PromStack(tmp_path) as s:
        yield s


def start_demo(stack: PromStack, *extra: str) -> Service:
    """``python -m exporter demo`` on a free loopback port, ready when /healthz answers."""
    port = free_port()
    argv = [
        sys.executable, "-m", "exporter", "demo",
        "--host", "127.0.0.1", "--port", str(port),
        "--rate", "50", "--seed", "1", "--no-live",
        *extra,
    ]  # fmt: skip
    return stack.spawn("demo", argv, port=port, ready_path="/healthz", cwd=ROOT)


def scrape_config(port: int) -> dict[str, Any]:
    return {
        "job_name": JOB,
        "scrape_interval": f"{SCRAPE_SECONDS:g}s",
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
    }


# ---------------------------------------------------------------------------- (a) dashboards


def test_every_dashboard_target_returns_data_from_the_demo(stack: PromStack) -> None:
    # The release panels count only processes whose store outlives a restart: a file store,
    # which says so in app_monitor_store_info (until the exporter publishes it, a stand-in
    # rule does).
    config = dump_yaml({"store_path": str(stack.workdir / "errors.db")}, stack.workdir / "demo.yml")
    demo = start_demo(stack, "--deploy-after", str(DEPLOY_AFTER_SECONDS), "--config", str(config))
    stand_in = dump_yaml({"groups": [store_info_stand_in(JOB)]}, stack.workdir / "stand-in.yml")
    # The overview's fleet row reads the fleet recording rules (evaluated every second here).
    fleet = dump_yaml(
        shorten_rule_for(load_yaml(FLEET_RULES_FILE), "2s"), stack.workdir / "fleet-rules.yml"
    )
    prom = stack.prometheus(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(stand_in), str(fleet)],
            "scrape_configs": [scrape_config(demo.port)],
        },
        exemplars=True,
    )
    wait_until(lambda: query(prom.url, f'up{{job="{JOB}"}} == 1'), 60, what="first scrape")
    started = time.time()
    # About 25 s of data: several $__rate_interval windows (4 x 1 s) and some demo activity.
    wait_until(
        lambda: query(prom.url, f'count_over_time(up{{job="{JOB}"}}[5m]) >= 25'),
        90,
        interval=1.0,
        what="25 scrapes of the demo",
    )
    assert demo.running(), demo.log_tail()
    # The deploy's regression has been scraped (and a few scrapes after it).
    wait_until(
        lambda: query(
            prom.url,
            'count_over_time(app_error_groups_regressed_total{app_version="1.1.0"}[5m]) >= 5',
        ),
        60,
        what="five scrapes after the demo's deploy",
    )

    outcomes = []
    for board in load_dashboards().values():
        outcomes += run_targets(
            prom.url,
            board,
            scrape_interval=SCRAPE_SECONDS,
            interval=SCRAPE_SECONDS,
            range_seconds=time.time() - started,
        )
    # Every target, the Background jobs row's too (the demo's background jobs).
    task_outcomes = [o for o in outcomes if o.target.panel in TASK_PANELS]
    assert len(task_outcomes) == 6  # 2 + 3 + 1 targets
    failures = describe_failures(outcomes)
    assert not failures, "dashboard targets without data from the demo:\n" + failures

    # The task alert's expression selects the demo's tasks: its failure ratio by task (the
    # alert's own "for" and thresholds are promtool's, alerts/tests.yml).
    ratio = [
        r["expr"].split("> 0.1")[0]
        for g in load_yaml(RULES_FILE)["groups"]
        for r in g["rules"]
        if r.get("alert") == "ErrorExporterTaskFailureRatioHigh"
    ]
    assert len(ratio) == 1
    by_task = query(prom.url, ratio[0].replace("[30m]", "[5m]"))
    # (the deploy fails each task once if it had not failed yet: every task is there)
    assert {s["metric"]["operation"] for s in by_task} == {
        "reports.build",
        "emails.send",
        "billing.charge",
    }, by_task
    assert {s["metric"]["component"] for s in by_task} == {"celery"}

    # The release-health panels, run as Grafana runs a time series panel (a range query, one
    # step per scrape, $__interval the step), show the deploy: one group new in 1.1.0, one
    # regressed in 1.1.0, counted in one bar (the bars add up to it).
    by_panel = {o.target.panel: o.promql for o in outcomes}
    for title in RELEASE_PANELS:
        found = query_range(prom.url, by_panel[title], started - 30, time.time(), SCRAPE_SECONDS)
        totals = {
            s["metric"].get("app_version"): sum(float(v) for _, v in s["values"]) for s in found
        }
        assert totals.get("1.1.0") == 1, (title, totals)
    versions = query(prom.url, by_panel["Instances by version"])
    assert {s["metric"]["app_version"]: s["value"][1] for s in versions} == {
        "1.0.0": "1",
        "1.1.0": "1",
    }

    # Exemplars: the drill-down's error-rate query carries error_id exemplars.
    exemplar_targets = [o for o in outcomes if o.target.target.get("exemplar")]
    assert exemplar_targets
    for outcome in exemplar_targets:
        found = exemplars(prom.url, outcome.promql, started - 60, time.time())
        labels = [e["labels"] for series in found for e in series["exemplars"]]
        assert labels, f"no exemplars for {outcome.target.name}"
        assert all("error_id" in label for label in labels)


# ---------------------------------------------------------------------------- (b) alerting


def _notified(hook: WebhookReceiver, alertname: str, status: str) -> list[dict[str, Any]]:
    return [
        alert
        for body in hook.bodies
        for alert in body.get("alerts", [])
        if alert["labels"].get("alertname") == alertname and alert.get("status") == status
    ]


def _received(hook: WebhookReceiver) -> str:
    """What the webhook got so far, for a timeout's message: receiver, alert name, status."""
    seen = sorted(
        {
            (body.get("receiver"), alert["labels"].get("alertname"), alert.get("status"))
            for body in hook.bodies
            for alert in body.get("alerts", [])
        }
    )
    return f"received: {seen}"


def _wait_at_webhook(hook: WebhookReceiver, predicate: Callable[[], T], what: str) -> T:
    """``wait_until`` for 60 s, whose timeout says what the webhook did receive."""
    try:
        return wait_until(predicate, 60, what=what)
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; {_received(hook)}") from None


def test_error_storm_alerts_reach_the_webhook_and_resolve(stack: PromStack) -> None:
    hook = stack.webhook()
    am_config = point_webhooks_at(
        load_yaml(AM_FILE), hook.url, group_wait="1s", group_interval="1s", repeat_interval="1h"
    )
    am = stack.alertmanager(am_config)

    # The shipped rules with test timing: 1 s evaluation, for: 2s, windows divided by 30
    # (increase(...[5m]) -> [10s]) so that alerts resolve within seconds of the storm's end.
    rules = compress_windows(shorten_rule_for(load_yaml(RULES_FILE), "2s"), factor=30)
    rules_path = dump_yaml(rules, stack.workdir / "rules.yml")

    port = free_port()
    prom = stack.prometheus(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules_path)],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "scrape_interval": "1s",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            ],
        },
        alertmanager=am,
    )
    # Prometheus scrapes about 5 s after its start: start the storm once it is scraping.
    wait_until(lambda: query(prom.url, f'up{{job="{JOB}"}}'), 60, what="target discovered")
    storm_seconds = 30
    argv = [
        sys.executable, "-m", "exporter", "demo",
        "--host", "127.0.0.1", "--port", str(port),
        "--rate", "50", "--seed", "1", "--no-live",
        "--storm", "--duration", str(storm_seconds),
    ]  # fmt: skip
    demo = stack.spawn("demo", argv, port=port, ready_path="/healthz", cwd=ROOT)

    # The storm pages: its critical errors, or the component's fast budget burn, which by design
    # silences the critical-error page of the same component (one incident, one page). Which one
    # reaches the webhook first depends on timing; both are the storm's page.
    page = _wait_at_webhook(
        hook,
        lambda: [
            a
            for name in ("ErrorExporterCriticalErrors", "ErrorExporterErrorBudgetBurn")
            for a in _notified(hook, name, "firing")
            if a["labels"]["severity"] == "critical"
        ],
        "the storm's page at the webhook",
    )
    assert page[0]["labels"]["job"] == JOB
    # Whether its notification went out or was inhibited, the critical-error alert fires.
    critical = wait_until(
        lambda: [
            a
            for a in alerts(prom.url)
            if a["labels"]["alertname"] == "ErrorExporterCriticalErrors" and a["state"] == "firing"
        ],
        60,
        what="ErrorExporterCriticalErrors firing in Prometheus",
    )
    # A pattern is a cause: a ticket (warning), never a page.
    pattern = _wait_at_webhook(
        hook,
        lambda: _notified(hook, "ErrorExporterErrorPattern", "firing"),
        "ErrorExporterErrorPattern at the webhook",
    )
    assert {a["labels"]["severity"] for a in pattern} <= {"warning", "info"}

    for alert in (critical[0], pattern[0]):
        labels, annotations = alert["labels"], alert["annotations"]
        assert labels["job"] == JOB
        assert labels["instance"] == f"127.0.0.1:{port}"
        assert labels["error_type"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}
        assert annotations["runbook_url"] == RUNBOOK_BASE + labels["alertname"].lower()
        assert "{{" not in annotations["summary"] + annotations["description"]
    assert set(critical[0]["labels"]) <= {
        "alertname", "severity", "job", "instance", "component", "plugin", "error_type",
    }  # fmt: skip
    assert set(pattern[0]["labels"]) == {"alertname", "severity", "job", "instance", "error_type"}
    assert critical[0]["labels"]["error_type"] in critical[0]["annotations"]["summary"]

    bodies = [b for b in hook.bodies if b.get("receiver") == "critical"]
    assert bodies, "critical alerts must go to the critical receiver"
    assert all(b["version"] == "4" for b in bodies)
    # One incident (the storm of one service): every page is the same group, the job's.
    assert {b["groupKey"] for b in bodies} == {bodies[0]["groupKey"]}
    assert all(b["groupLabels"] == {"job": JOB} for b in bodies)
    paged = {a["labels"]["alertname"] for b in bodies for a in b["alerts"]}
    assert "ErrorExporterErrorPattern" not in paged

    # The storm ends when the demo exits (--duration): the target is down. That is the same
    # incident: ErrorExporterDown pages in the same group (the job's), and silences the rest of
    # the target; the storm's alerts resolve in Prometheus.
    demo.process.wait(timeout=storm_seconds + 60)
    assert demo.process.returncode == 0, demo.log_tail()
    _wait_at_webhook(
        hook,
        lambda: _notified(hook, "ErrorExporterDown", "firing"),
        "ErrorExporterDown at the webhook",
    )
    pages = [b for b in hook.bodies if b.get("receiver") == "critical"]
    assert {b["groupKey"] for b in pages} == {bodies[0]["groupKey"]}, "one incident, one group"

    def storm_alerts_in_prometheus() -> list[str]:
        return [
            a["labels"]["alertname"]
            for a in alerts(prom.url)
            if a["labels"]["alertname"]
            in ("ErrorExporterCriticalErrors", "ErrorExporterErrorPattern")
        ]

    wait_until(
        lambda: not storm_alerts_in_prometheus(),
        60,
        interval=1.0,
        what="the storm's alerts resolved in Prometheus",
    )

    # The app comes back (no storm): the Down page resolves at the webhook.
    calm = [
        sys.executable, "-m", "exporter", "demo",
        "--host", "127.0.0.1", "--port", str(port),
        "--rate", "5", "--seed", "2", "--no-live", "--storm-every", "3600",
    ]  # fmt: skip
    stack.spawn("demo-after", calm, port=port, ready_path="/healthz", cwd=ROOT)
    wait_until(
        lambda: _notified(hook, "ErrorExporterDown", "resolved"),
        90,
        what="ErrorExporterDown resolved at the webhook",
    )


def test_rules_copy_keeps_every_alert() -> None:
    """The e2e override only changes timing, never which alerts exist or their labels."""
    shipped = load_yaml(RULES_FILE)
    fast = compress_windows(shorten_rule_for(shipped, "2s"), factor=30)

    def summary(rules: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (r.get("alert"), r.get("record"), yaml.safe_dump(r.get("labels")))
            for g in rules["groups"]
            for r in g["rules"]
        ]

    assert summary(fast) == summary(shipped)
    assert all(r["for"] == "2s" for g in fast["groups"] for r in g["rules"] if "alert" in r)
