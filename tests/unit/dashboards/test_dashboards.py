"""The generated Grafana dashboards: reproducible from dashboards/build.py and lint-clean."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest

if sys.version_info < (3, 11):  # the one version restriction of the dev tools, not a missing tool
    pytest.skip(
        "the dashboards are built with grafana-foundation-sdk, which needs Python 3.11+ "
        "(the main test run checks them)",
        allow_module_level=True,
    )
import yaml
from support import sample_exporter
from support.grafana import (
    DASHBOARD_DIR,
    DASHBOARD_FILES,
    Target,
    describe_failures,
    load_build_module,
    load_dashboards,
    panels,
    run_targets,
    substitute_macros,
    targets,
    variables,
)
from support.promql import counters_read_raw, matchers, selectors, walk
from support.promstack import (
    PromStack,
    dump_yaml,
    query,
    query_range,
    shorten_rule_for,
    wait_until,
)
from support.sample_exporter import static_exporter
from support.tools import require_tool

ROOT = DASHBOARD_DIR.parent
DASHBOARDS = load_dashboards()


def load_alerts_build() -> Any:
    """alerts/build.py (renders the rules for a namespace)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("alerts_build", ROOT / "alerts" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ALL_TARGETS = [t for d in DASHBOARDS.values() for t in targets(d)]
ALL_PANELS = [(d["uid"], p) for d in DASHBOARDS.values() for p in panels(d)]
EXPECTED_UIDS = {
    "error-exporter-overview.json": "error-exporter-overview",
    "error-exporter-drilldown.json": "error-exporter-drilldown",
}
DATASOURCE_UID = "${datasource}"
# The default metric prefix `app_`; `app_version` is a label (release health), not a metric.
APP_PREFIX = re.compile(r"app_(?!version\b)")
# Sentinels for the lint: each macro becomes a distinct, recognisable duration.
RATE_INTERVAL = timedelta(seconds=1234)
MACRO_SENTINELS = {"scrape_interval": 300.5, "interval": 933.0, "range_seconds": 4321.0}


def parsed(target: Target) -> pp.Expr:
    return pp.parse(substitute_macros(target.expr, **MACRO_SENTINELS))


def target_id(target: Target) -> str:
    return target.name


def panel_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]} / {item[1].get('title', '?')}"


# ---------------------------------------------------------------------------- reproducible


def test_committed_json_equals_build_output() -> None:
    built = load_build_module().build_all()
    # the Prometheus boards, and the Reports board (SQL:
    # tests/unit/dashboards/test_reports_dashboard.py)
    assert set(built) == {*DASHBOARD_FILES, "error-exporter-reports.json"}
    for name, text in built.items():
        assert (DASHBOARD_DIR / name).read_text() == text, (
            f"{name} is stale: run python dashboards/build.py"
        )


def test_build_check_mode_exit_code(tmp_path: Path) -> None:
    script = str(DASHBOARD_DIR / "build.py")
    ok = subprocess.run([sys.executable, script, "--check"], capture_output=True, check=False)
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    stale = subprocess.run(
        [sys.executable, script, "--check", "--out", str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert stale.returncode == 1


# ---------------------------------------------------------------------------- metric namespace


def test_no_metric_name_is_written_out_in_the_package() -> None:
    """The prefix comes from one value (queries.DEFAULT_NAMESPACE), the exporter's default."""
    from exporter.config import MonitorConfig

    build = load_build_module()
    assert build.DEFAULT_NAMESPACE == MonitorConfig().namespace == "app"
    for path in sorted(DASHBOARD_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docstrings:
                assert not APP_PREFIX.search(str(node.value)), (
                    f"{path.name}:{node.lineno}: use q.metric()"
                )


@pytest.mark.parametrize("namespace", ["shop", "my_app2", ""])
def test_another_namespace_changes_only_the_metric_prefix(namespace: str) -> None:
    build = load_build_module()
    renamed = build.build_all(namespace)
    prefix = f"{namespace}_" if namespace else ""
    for name, text in build.build_all().items():
        assert not APP_PREFIX.search(renamed[name])
        assert renamed[name] == APP_PREFIX.sub(prefix, text), name


def test_build_namespace_option(tmp_path: Path) -> None:
    script = str(DASHBOARD_DIR / "build.py")
    ok = subprocess.run(
        [sys.executable, script, "--namespace", "shop", "--out", str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    built = load_build_module().build_all("shop")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == built
    bad = subprocess.run(
        [sys.executable, script, "--namespace", "bad-ns", "--out", str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert bad.returncode == 2
    assert b"invalid metric namespace" in bad.stderr


# ---------------------------------------------------------------------------- dashboard level


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_stable_uid_title_and_tags(name: str) -> None:
    board = DASHBOARDS[name]
    assert board["uid"] == EXPECTED_UIDS[name]
    assert board["title"].startswith("error-exporter / ")
    assert "error-exporter" in board["tags"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_no_datasource_inputs(name: str) -> None:
    text = (DASHBOARD_DIR / name).read_text()
    assert "${DS_" not in text
    assert "__inputs" not in DASHBOARDS[name]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_datasource_job_and_instance_variables(name: str) -> None:
    found = variables(DASHBOARDS[name])
    datasource = found["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    for var in ("job", "instance"):
        variable = found[var]
        assert variable["type"] == "query"
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert variable["datasource"]["uid"] == DATASOURCE_UID
    assert list(found)[:3] == ["datasource", "job", "instance"]


def test_drilldown_component_and_plugin_variables() -> None:
    found = variables(DASHBOARDS["error-exporter-drilldown.json"])
    for var in ("component", "plugin"):
        variable = found[var]
        assert variable["type"] == "query"
        assert variable["query"] == (
            f'label_values(app_errors_total{{job=~"$job", instance=~"$instance"}}, {var})'
        )
        assert variable["includeAll"] is True
        # Missing component/plugin is the empty string: "All" must match it too.
        assert variable["allValue"] == ".*"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_variable_queries_parse(name: str) -> None:
    for variable in variables(DASHBOARDS[name]).values():
        if variable["type"] != "query":
            continue
        query = variable["query"]
        assert query.startswith("label_values(")
        selector = query[len("label_values(") : query.rindex(",")]
        pp.parse(selector)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_links_lead_to_the_boards_and_the_reports(name: str) -> None:
    """The dashboard-level links need no instance: the boards' dropdown and the Reports board
    (the shared store). The JSON API is linked from the clicked series or row (its instance),
    never through ${instance}, which is All or several."""
    links = DASHBOARDS[name]["links"]
    assert any(link["type"] == "dashboards" for link in links)
    urls = [link.get("url", "") for link in links if link["type"] == "link"]
    assert urls == ["/d/error-exporter-reports/reports"]
    api_links = [
        link["url"]
        for panel in panels(DASHBOARDS[name])
        for link in panel.get("links", []) + panel["fieldConfig"]["defaults"].get("links", [])
        if "/api/v1/" in link["url"]
    ]
    assert api_links


def test_drilldown_error_rate_has_exemplars_and_a_data_link() -> None:
    board = DASHBOARDS["error-exporter-drilldown.json"]
    panel = next(p for p in panels(board) if p["title"] == "Error rate by type")
    assert any(t.get("exemplar") for t in panel["targets"])
    links = panel["fieldConfig"]["defaults"]["links"]
    assert any("/api/v1/export?component=" in link["url"] for link in links)


def test_exemplar_destination_links_to_error_groups() -> None:
    provisioning = yaml.safe_load(
        (DASHBOARD_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = provisioning["datasources"]
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    destinations = {d["name"]: d for d in source["jsonData"]["exemplarTraceIdDestinations"]}
    # trace_id: tests/unit/capture/test_trace_context.py
    assert set(destinations) == {"error_id", "trace_id"}
    # `$$` is Grafana's escape for a literal `$` in provisioning files (env interpolation)
    assert destinations["error_id"]["url"].endswith("/api/v1/errors/$${__value.raw}")


def test_dashboard_provider_points_at_mounted_dir() -> None:
    provisioning = yaml.safe_load(
        (DASHBOARD_DIR / "provisioning" / "dashboards" / "error-exporter.yml").read_text()
    )
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_unique_panel_ids_and_grid(name: str) -> None:
    board = DASHBOARDS[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


# ---------------------------------------------------------------------------- panels


@pytest.mark.parametrize("item", ALL_PANELS, ids=panel_id)
def test_panel_has_title_unit_and_datasource_variable(item: tuple[str, dict[str, Any]]) -> None:
    _, panel = item
    assert panel.get("title", "").strip()
    assert panel.get("description", "").strip()
    assert panel["fieldConfig"]["defaults"].get("unit"), "set a unit (fieldConfig.defaults.unit)"
    assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
    assert panel.get("targets"), "a panel without queries"


@pytest.mark.parametrize("target", ALL_TARGETS, ids=target_id)
def test_target_uses_datasource_variable(target: Target) -> None:
    assert target.target["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
    assert target.ref_id


def test_ref_ids_unique_per_panel() -> None:
    for _, panel in ALL_PANELS:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


@pytest.mark.parametrize("target", ALL_TARGETS, ids=target_id)
def test_expr_parses_after_substitution(target: Target) -> None:
    parsed(target)


RELEASE_PANELS = {
    "new": "New error groups by version",
    "regressed": "Regressed error groups by version",
}
# The release panels' bars: what each step added (offset $__interval), not a rate.
BAR_TARGETS = [t for t in ALL_TARGETS if t.panel in RELEASE_PANELS.values()]
RATE_TARGETS = [t for t in ALL_TARGETS if t not in BAR_TARGETS]


@pytest.mark.parametrize("target", RATE_TARGETS, ids=target_id)
def test_rates_use_rate_interval(target: Target) -> None:
    assert "$__range" not in target.expr and "$__interval" not in target.expr
    for visit in walk(parsed(target)):
        node = visit.node
        if isinstance(node, pp.MatrixSelector):
            assert node.range == RATE_INTERVAL, (
                f"range [{node.range}] must be [$__rate_interval]: {target.expr}"
            )
        assert not isinstance(node, pp.SubqueryExpr), "no subqueries"


@pytest.mark.parametrize("target", ALL_TARGETS, ids=target_id)
def test_every_selector_filters_job_and_instance(target: Target) -> None:
    found = selectors(parsed(target))
    assert found, "a query without a selector"
    for selector in found:
        regex = {(m.name, m.value) for m in matchers(selector) if m.op == pp.MatchOp.Re}
        assert ("job", "$job") in regex, f'{selector} lacks job=~"$job"'
        assert ("instance", "$instance") in regex, f'{selector} lacks instance=~"$instance"'


@pytest.mark.parametrize("target", RATE_TARGETS, ids=target_id)
def test_counters_only_inside_rate(target: Target) -> None:
    """Or in ``x unless x offset $__rate_interval`` (a series born in the window counts whole)."""
    assert counters_read_raw(parsed(target)) == []


INTERVAL = timedelta(seconds=MACRO_SENTINELS["interval"])


@pytest.mark.parametrize("target", BAR_TARGETS, ids=target_id)
def test_release_bars_count_their_own_step(target: Target) -> None:
    """A bar is what the counter added since the previous bar: ``x - x offset $__interval``
    (the panel's step, at least its 1-minute interval), or ``x`` whole for a series born or
    restarted since; no range selector, whose window would overlap the neighbouring bars."""
    board = DASHBOARDS["error-exporter-overview.json"]
    [panel] = [p for p in panels(board) if p["title"] == target.panel]
    assert panel["interval"] == "1m"
    assert panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    offsets = []
    for visit in walk(parsed(target)):
        node = visit.node
        assert not isinstance(node, (pp.MatrixSelector, pp.SubqueryExpr)), target.expr
        if isinstance(node, pp.VectorSelector) and node.offset is not None:
            offsets.append(node.offset)
    assert offsets and set(offsets) == {INTERVAL}, offsets
    assert "$__rate_interval" not in target.expr


@pytest.mark.tools
@pytest.mark.parametrize("kind", sorted(RELEASE_PANELS))
def test_release_panels_count_as_the_alerts_do(kind: str, tmp_path: Path) -> None:
    """promtool evaluates a release panel's bars (scrapes and bars every minute) as version
    1.1.0 starts: the shared store's replicas are summed (web-2 counted a group before its
    first scrape: the bar where its series is born; web-3 one after it: the next bar), per-host
    stores give the host that counted most (one group new to both hosts is one), memory-only
    processes (cron, whose counters jump on start) and processes that do not say (legacy) are
    left out, and each group is in one bar only."""
    promtool = require_tool("promtool")
    [target] = [
        t
        for t in targets(DASHBOARDS["error-exporter-overview.json"])
        if t.panel == RELEASE_PANELS[kind]
    ]
    expr = substitute_macros(target.expr, scrape_interval=60.0, interval=60.0)
    expr = expr.replace("$job", ".*").replace("$instance", ".*")
    assert "$" not in expr, expr
    counter = f"app_error_groups_{kind}_total"
    scopes = {
        "web-1": "fleet",
        "web-2": "fleet",
        "web-3": "fleet",
        "h-1": "host",
        "h-2": "host",
        "cron-1": "process",
    }
    jobs = {"web": "shop", "h": "api", "cron": "cron", "legacy": "legacy"}
    counters = {
        ("web-1", "1.0.0"): "0x30",
        ("web-2", "1.1.0"): "_x10 1x20",
        ("web-3", "1.1.0"): "_x10 0 1x19",
        ("h-1", "1.1.0"): "0x10 1x20",
        ("h-2", "1.1.0"): "0x10 1x20",
        ("cron-1", "1.1.0"): "_x10 40+1x20",
        ("legacy-1", "1.1.0"): "_x10 3x20",
    }

    def labels(instance: str) -> str:
        return f'job="{jobs[instance.split("-")[0]]}", instance="{instance}:9718"'

    series = [
        {
            "series": f'app_monitor_store_info{{{labels(i)}, release_scope="{scope}"}}',
            "values": "1x30",
        }
        for i, scope in scopes.items()
    ] + [
        {"series": f'{counter}{{{labels(i)}, app_version="{version}"}}', "values": values}
        for (i, version), values in counters.items()
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {
                    "expr": expr,
                    "eval_time": f"{minute}m",
                    "exp_samples": [
                        {"labels": '{job="shop", app_version="1.0.0"}', "value": 0},
                        {"labels": '{job="shop", app_version="1.1.0"}', "value": shop},
                        {"labels": '{job="api", app_version="1.1.0"}', "value": api},
                    ],
                }
                # the bars of 10, 11 and 12 minutes: 2 groups for shop, 1 for api in all
                for minute, shop, api in ((10, 1, 0), (11, 1, 1), (12, 0, 0), (20, 0, 0))
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "release-panel-tests.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_drilldown_capture_path_queries_filter_component_and_plugin() -> None:
    """Families with component/plugin labels are filtered by the drill-down variables."""
    scoped = (
        "app_errors_total",
        "app_error_recoveries_total",
        "app_error_recovery_duration_seconds_bucket",
        "app_operation_duration_seconds_count",
        "app_operation_duration_seconds_bucket",
    )
    board = DASHBOARDS["error-exporter-drilldown.json"]
    for target in targets(board):
        for selector in selectors(parsed(target)):
            if str(selector.name) not in scoped:
                continue
            # A panel may narrow the selection further (Background jobs: component=~"celery|rq").
            names: dict[str, set[str]] = {}
            for m in matchers(selector):
                names.setdefault(m.name, set()).add(m.value)
            assert "$component" in names.get("component", set()), f"{target.name}: {selector}"
            assert "$plugin" in names.get("plugin", set()), f"{target.name}: {selector}"


def test_background_jobs_row_counts_as_the_task_alert() -> None:
    """The Background jobs row reads only Celery/RQ tasks, per task, and its failure ratio is
    the alert's: failed runs over finished runs (ok or error; retries and ignored runs are not
    finished). Its panels are proven on the contract sample's synthetic Celery/RQ series (the
    demo runs no task): test_every_target_returns_data_for_the_contract_sample."""
    board = DASHBOARDS["error-exporter-drilldown.json"]
    titles = [p["title"] for p in board["panels"]]
    row = titles.index("Background jobs")
    assert titles[row + 1 : row + 4] == [
        "Task failures and retries",
        "Task duration percentiles",
        "Task failure ratio",
    ]
    by_title = {p["title"]: p for p in board["panels"]}
    for title in titles[row + 1 : row + 4]:
        for target in by_title[title]["targets"]:
            assert 'component=~"celery|rq"' in target["expr"], (title, target["expr"])
            assert "by (component, operation" in target["expr"], (title, target["expr"])
    legends = [t["legendFormat"] for t in by_title["Task duration percentiles"]["targets"]]
    assert legends == ["{{operation}} p50", "{{operation}} p95", "{{operation}} p99"]
    ratio = by_title["Task failure ratio"]["targets"][0]["expr"]
    numerator, _, denominator = ratio.partition(" / ")
    assert 'outcome=~"error"' in numerator and 'outcome=~"ok|error"' in denominator
    assert "app_task_retries_total" in by_title["Task failures and retries"]["targets"][1]["expr"]


def test_overview_covers_every_metric_family() -> None:
    """Every family of docs/metrics.md that is worth a panel appears on the overview."""
    wanted = {
        "app_errors_total",
        "app_error_recoveries_total",
        "app_error_recovery_duration_seconds_bucket",
        "app_operation_duration_seconds_count",
        "app_error_reports_dropped_total",
        "app_monitor_internal_errors_total",
        "app_error_pattern_severity",
        "app_error_pattern_occurrences",
        "app_plugin_health",
        "app_unique_errors",
        "app_sessions_active",
        "app_sessions_total",
        "app_error_queue_depth",
        "app_system_cpu_utilization_ratio",
        "app_system_memory_utilization_ratio",
        "app_process_cpu_utilization_ratio",
        "app_process_threads",
        "app_process_open_files",
        "app_error_groups_new_total",
        "app_error_groups_regressed_total",
    }
    board = DASHBOARDS["error-exporter-overview.json"]
    used = {str(s.name) for t in targets(board) for s in selectors(parsed(t))}
    assert wanted <= used, f"missing: {sorted(wanted - used)}"


# ---------------------------------------------------------------------------- real Prometheus


@pytest.mark.tools
@pytest.mark.parametrize("namespace", ["app", "shop"])
def test_every_target_returns_data_for_the_contract_sample(
    namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each target, macros and variables substituted as Grafana would, runs on a real
    Prometheus scraping a static target shaped like docs/metrics.md and returns series
    (tests/scenarios/test_demo_stack_end_to_end.py does the same against the real demo).
    With another namespace,
    the boards built for it run on the same sample with its metric names renamed."""
    require_tool("prometheus")
    boards = DASHBOARDS
    if namespace != "app":
        renamed = APP_PREFIX.sub(f"{namespace}_", sample_exporter.CONTRACT_SAMPLE)
        monkeypatch.setattr(sample_exporter, "CONTRACT_SAMPLE", renamed)
        built = load_build_module().build_all(namespace)
        boards = {  # the Prometheus boards (the Reports board's SQL: its own test)
            name: json.loads(text) for name, text in built.items() if name in DASHBOARD_FILES
        }
    scrape = 1.0
    # The fleet row reads alerts/fleet-rules.yml (rendered for the namespace), evaluated every
    # second.
    fleet = load_alerts_build().build_all(namespace)["fleet-rules.yml"]
    fleet_rules = dump_yaml(
        shorten_rule_for(yaml.safe_load(fleet), "2s"), tmp_path / "fleet-rules.yml"
    )
    with static_exporter() as port, PromStack(tmp_path) as stack:
        prom = stack.prometheus(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(fleet_rules)],
                "scrape_configs": [
                    {
                        "job_name": "error-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ],
            }
        )
        wait_until(lambda: query(prom.url, 'up{job="error-exporter"}'), 60, what="first scrape")
        started = time.monotonic()
        # $__rate_interval = 4 scrapes: wait until a window that long holds two samples.
        wait_until(
            lambda: query(prom.url, "count_over_time(up{job='error-exporter'}[1m]) >= 6"),
            30,
            what="six scrapes",
        )
        prefix = f"{namespace}_" if namespace else ""
        wait_until(
            lambda: query(prom.url, f"job_component:{prefix}errors:rate5m"),
            30,
            what="the fleet rules evaluated",
        )
        outcomes = []
        for board in boards.values():
            outcomes += run_targets(
                prom.url,
                board,
                scrape_interval=scrape,
                interval=scrape,
                range_seconds=max(60.0, time.monotonic() - started),
            )
    assert len(outcomes) == len(ALL_TARGETS)
    failures = describe_failures(outcomes)
    assert not failures, "targets without data:\n" + failures


# ------------------------------------------------------------------- on-call use (issue 25)


def test_overview_first_row_answers_health_what_broke_since_when_which_version() -> None:
    board = DASHBOARDS["error-exporter-overview.json"]
    titles = [p["title"] for p in board["panels"]]
    assert titles[:9] == [
        "Service health",
        "Error ratio (SLO 99 %)",
        "Error budget burn",
        "Traffic",
        "Latency p95",
        "Firing alerts",
        "App versions",
        "Instances",
        "Summary",
    ]
    by_title = {p["title"]: p for p in board["panels"]}
    assert "ALERTS{" in by_title["Firing alerts"]["targets"][0]["expr"]
    # Relative thresholds: the ratio against the budget, no absolute error-rate colours.
    steps = by_title["Error ratio (SLO 99 %)"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.01, 0.144]
    rate_steps = by_title["Error rate"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in rate_steps] == ["blue"]
    # Not red in normal operation: a pattern is a cause, drops by design are left out.
    for title in ("Critical patterns", "Dropped reports"):
        colors = [
            s["color"] for s in by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        ]
        assert "red" not in colors, title
    assert 'reason!~"store_evicted|coalesced"' in by_title["Dropped reports"]["targets"][0]["expr"]
    # Since when: deploys (a version's release counters are born) and pages as annotations.
    annotations = {a["name"]: a["expr"] for a in board["annotations"]["list"]}
    assert set(annotations) == {"Deploys", "Pages"}
    for expr in annotations.values():
        parsed_expr = pp.parse(substitute_macros(expr, **MACRO_SENTINELS))
        assert counters_read_raw(parsed_expr) == []


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_fleet_variables_have_an_all_value(name: str) -> None:
    """All is .*: it matches series without an instance (job-level alerts) too."""
    found = variables(DASHBOARDS[name])
    for var in ("job", "instance"):
        assert found[var]["allValue"] == ".*"


API_LINK_START = re.compile(
    r"^\$\{api_base\}\$\{(__field\.labels|__data\.fields)\.instance\}/api/v1/"
)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_links_work_for_any_instance_and_through_a_proxy(name: str) -> None:
    """No link reads ${instance} (it is All or several); API links read the clicked row's or
    series' instance after the api_base variable (http://, https:// or a proxy's base URL);
    no link holds a scheme, a host or a credential of its own."""
    board = DASHBOARDS[name]
    text = json.dumps(board)
    for word in ("${instance}", "${scheme}", "Authorization", "Bearer"):
        assert word not in text, word
    [api_base] = [v for v in board["templating"]["list"] if v["name"] == "api_base"]
    assert api_base["type"] == "textbox" and api_base["query"] == "http://"
    assert api_base["current"]["value"] == "http://"
    for panel in panels(board):
        links = panel.get("links", []) + panel["fieldConfig"]["defaults"].get("links", [])
        for link in links:
            assert "token" not in link["url"].lower(), link["url"]
            if "/api/v1/" in link["url"]:
                assert API_LINK_START.match(link["url"]), link["url"]
            else:
                assert link["url"].startswith("/d/"), link["url"]


PROXY_BASE = "https://grafana.example/error-exporter-api/"


@pytest.mark.parametrize(
    ("api_base", "url"),
    [
        ("http://", "http://10.0.0.7:9718/api/v1/plugins/stripe/health"),
        ("https://", "https://10.0.0.7:9718/api/v1/plugins/stripe/health"),
        (PROXY_BASE, f"{PROXY_BASE}10.0.0.7:9718/api/v1/plugins/stripe/health"),
    ],
)
def test_api_base_renders_direct_and_proxied_links(api_base: str, url: str) -> None:
    """The link a user gets for each api_base: the instance comes right after it, so a proxy
    takes the instance as its first path segment."""
    board = DASHBOARDS["error-exporter-drilldown.json"]
    panel = next(p for p in panels(board) if p["title"] == "Plugin health")
    [link] = panel["links"]
    rendered = (
        link["url"]
        .replace("${api_base}", api_base)
        .replace("${__field.labels.instance}", "10.0.0.7:9718")
        .replace("${__field.labels.plugin}", "stripe")
    )
    assert rendered == url


def test_build_api_base_option(tmp_path: Path) -> None:
    """A deployment renders the boards with its proxy as the default; a value with a
    credential, a query or without the closing / is refused (every viewer reads the JSON)."""
    script = str(DASHBOARD_DIR / "build.py")
    ok = subprocess.run(
        [sys.executable, script, "--api-base", PROXY_BASE, "--out", str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    for name in DASHBOARD_FILES:
        written = (tmp_path / name).read_text()
        assert written == (DASHBOARD_DIR / name).read_text().replace(
            '"http://"', json.dumps(PROXY_BASE)
        )
    for bad in (
        "https://user:secret@proxy/",
        "https://proxy/x?token=1/",
        "https://proxy",
        "ftp://",
    ):
        refused = subprocess.run(
            [sys.executable, script, "--api-base", bad, "--out", str(tmp_path)],
            capture_output=True,
            check=False,
        )
        assert refused.returncode == 2, bad
        assert b"invalid --api-base" in refused.stderr


def test_overview_links_to_the_drilldown_with_the_clicked_value() -> None:
    board = DASHBOARDS["error-exporter-overview.json"]
    by_title = {p["title"]: p for p in board["panels"]}
    for title, variable in (
        ("Error rate by component", "component"),
        ("Error rate by plugin", "plugin"),
        ("Error ratio by component / operation", "component"),
    ):
        (link,) = by_title[title]["fieldConfig"]["defaults"]["links"]
        assert link["url"].startswith("/d/error-exporter-drilldown/")
        assert f"var-{variable}=${{__field.labels.{variable}}}" in link["url"]
        assert "${job:queryparam}" in link["url"] and "${__url_time_range}" in link["url"]


@pytest.mark.parametrize(
    ("board", "title", "colors"),
    [
        (
            "error-exporter-overview.json",
            "Error rate by severity",
            {"low": "blue", "medium": "yellow", "high": "orange", "critical": "red"},
        ),
        (
            "error-exporter-drilldown.json",
            "Error rate by severity",
            {"low": "blue", "medium": "yellow", "high": "orange", "critical": "red"},
        ),
        (
            "error-exporter-drilldown.json",
            "Operations by outcome",
            {"ok": "green", "error": "red", "retry": "orange", "ignored": "text"},
        ),
    ],
)
def test_colours_are_pinned_by_severity_and_outcome(
    board: str, title: str, colors: dict[str, str]
) -> None:
    panel = next(p for p in panels(DASHBOARDS[board]) if p["title"] == title)
    pinned = {
        o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byName"
    }
    assert pinned == colors


def test_drilldown_latency_has_p50_p95_p99() -> None:
    board = DASHBOARDS["error-exporter-drilldown.json"]
    panel = next(p for p in panels(board) if p["title"] == "Operation latency")
    assert [t["expr"].split(",")[0] for t in panel["targets"]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]


@pytest.mark.parametrize("target", [t for t in ALL_TARGETS if "topk(" in t.expr], ids=target_id)
def test_topk_picks_its_series_once_per_range(target: Target) -> None:
    """topk() in a range query ranks at every step (the legend churns): the panels rank once,
    at the end of the range, and draw those series over the whole range."""
    assert "@ end()" in target.expr and " and on (" in target.expr


def test_fleet_row_reads_the_fleet_recording_rules() -> None:
    """The fleet recording rules are used by panels, and every recorded series a panel reads
    is one of alerts/fleet-rules.yml."""
    fleet = yaml.safe_load((ROOT / "alerts" / "fleet-rules.yml").read_text())
    records = {r["record"] for g in fleet["groups"] for r in g["rules"]}
    board = DASHBOARDS["error-exporter-overview.json"]
    used = {str(s.name) for t in targets(board) for s in selectors(parsed(t)) if ":" in str(s.name)}
    assert len(used) == 3
    assert used <= records


# A known history of the new-group counters (seconds after the start -> counter value), scraped
# every 15 s for two hours: what each series counted, and the groups new in each version.
NEW_GROUPS_HISTORY: dict[tuple[str, str], dict[int, int]] = {
    # web-1 restarts at 40 min (its counter starts again at 0) and counts two more after it
    ("web-1:9718", "1.0.0"): {0: 0, 307: 1, 425: 2, 430: 3, 1800: 4, 2400: 0, 2467: 1, 3000: 2},
    # web-2 runs 1.0.0 for an hour, then 1.1.0, whose series is born at 1 (a group counted
    # before its first scrape), and counts one more in the same minute and one later
    ("web-2:9718", "1.0.0"): {0: 0, 720: 1, 725: 2},
    ("web-2:9718", "1.1.0"): {3605: 1, 3610: 2, 4500: 3},
}
NEW_GROUPS_EXPECTED = {"1.0.0": 4 + 2 + 2, "1.1.0": 3}


def _new_groups_openmetrics(start: int, kind: str = "new", seconds: int = 7200) -> str:
    """The history as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`: a
    sample every 15 s, the value of the latest change; web-2's 1.0.0 stops at its deploy.
    ``kind`` names the counter (the regressed groups' counter follows the same history)."""
    counter = f"app_error_groups_{kind}_total"
    lines = [f"# TYPE {counter} unknown"]
    for (instance, version), changes in NEW_GROUPS_HISTORY.items():
        ends = 3600 if (instance, version) == ("web-2:9718", "1.0.0") else seconds
        labels = f'job="shop",instance="{instance}",app_version="{version}"'
        for at in range(min(changes), ends, 15):
            value = changes[max(t for t in changes if t <= at)]
            lines.append(f"{counter}{{{labels}}} {value} {start + at}")
    lines.append("# TYPE app_monitor_store_info unknown")
    for instance in ("web-1:9718", "web-2:9718"):
        labels = f'job="shop",instance="{instance}",release_scope="fleet"'
        lines += [
            f"app_monitor_store_info{{{labels}}} 1 {start + at}" for at in range(0, seconds, 15)
        ]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.mark.tools
@pytest.mark.parametrize("bar_seconds", [60, 300])
@pytest.mark.parametrize("kind", sorted(RELEASE_PANELS))
def test_group_bars_add_up_to_the_groups(kind: str, bar_seconds: int, tmp_path: Path) -> None:
    """On a real Prometheus holding a known history (backfilled with promtool: a restart, a
    deploy whose series is born at 1, several groups in one bar), the New (Regressed) error
    groups panel
    run as Grafana runs it (a range query whose step is $__interval, the bar width) draws
    whole bars that add up to the groups new in each version: no group in two bars (a window
    longer than a bar, as the former increase(...[$__rate_interval]), counted it in several)."""
    promtool = require_tool("promtool")
    start = (int(time.time()) - 4 * 3600) // 3600 * 3600
    source = tmp_path / "history.om"
    source.write_text(_new_groups_openmetrics(start, kind))
    tsdb = tmp_path / "prometheus" / "tsdb"  # where PromStack.prometheus keeps its data
    tsdb.mkdir(parents=True)
    made = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    [target] = [
        t
        for t in targets(DASHBOARDS["error-exporter-overview.json"])
        if t.panel == RELEASE_PANELS[kind]
    ]
    expr = substitute_macros(target.expr, scrape_interval=15.0, interval=float(bar_seconds))
    expr = expr.replace("$job", ".*").replace("$instance", ".*")
    with PromStack(tmp_path) as stack:
        prom = stack.prometheus({"global": {"scrape_interval": "15s"}, "scrape_configs": []})
        # Grafana aligns a range query's start and end to its step
        first, last = (
            start // bar_seconds * bar_seconds,
            (start + 7200) // bar_seconds * bar_seconds,
        )
        wait_until(
            lambda: query(prom.url, "app_monitor_store_info", at=first + 60),
            30,
            what="the backfilled blocks loaded",
        )
        bars = query_range(prom.url, expr, first, last + bar_seconds, bar_seconds)
    totals: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for series in bars:
        assert series["metric"]["job"] == "shop"
        values = [float(v) for _, v in series["values"]]
        assert all(v >= 0 and v == int(v) for v in values), values
        totals[series["metric"]["app_version"]] = sum(values)
        peaks[series["metric"]["app_version"]] = max(values)
    assert totals == NEW_GROUPS_EXPECTED, (totals, expr)
    if bar_seconds == 60:  # two groups in one minute: one bar of 2 (1.1.0: born at 1, +1)
        assert peaks == {"1.0.0": 2, "1.1.0": 2}, peaks
