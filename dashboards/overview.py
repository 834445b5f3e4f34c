"""The overview board: errors, sessions, patterns, plugins, recoveries, resources and release
health (new and regressed error groups by app version)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common

from dashboards.panels import (
    COUNT,
    DS,
    NONE,
    PATTERN_LEVELS,
    PER_SECOND,
    PLUGIN_STATES,
    PLUGIN_STEPS,
    RATIO,
    ROW_API,
    SECONDS,
    SEVERITY_COLORS,
    PanelBuilder,
    add_rows,
    base_dashboard,
    config,
    data_link,
    drilldown_link,
    merge,
    organize,
    pin_colors,
    quantile_queries,
    query,
    reports_link,
    right_axis,
    series,
    single_stat,
    state_timeline,
    table_panel,
    table_query,
    thresholds,
    value_mappings,
)
from dashboards.queries import DEFAULT_NAMESPACE, Queries

UID = "error-exporter-overview"
FILE_NAME = f"{UID}.json"
# The release panels' minimum bar width (their step, $__interval, never shorter).
BAR_WIDTH = "1m"


def health_first_row(q: Queries) -> list[PanelBuilder]:
    """Is it healthy, what broke, since when, which version: the SLO's error ratio and burn
    rate, traffic and latency (RED), the alerts firing and the app versions running; the
    sparklines and the deploy / page annotations say since when."""
    budget = q.SLO_ERROR_BUDGET
    return [
        single_stat(
            "Error ratio (SLO 99 %)",
            "Share of the instrumented operations that failed. Green within the 1 % error "
            "budget, orange above it, red at the fast-burn page's 14.4 x budget.",
            RATIO,
            query(q.error_ratio(), "error ratio"),
            steps=((None, "green"), (budget, "orange"), (round(14.4 * budget, 6), "red")),
            decimals=2,
        ),
        single_stat(
            "Error budget burn",
            "The error ratio in units of the budget: 1 spends the monthly budget in 30 days; "
            "6 is the slow-burn ticket, 14.4 the fast-burn page (ErrorExporterErrorBudgetBurn).",
            NONE,
            query(q.budget_burn(), "burn rate"),
            steps=((None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red")),
            decimals=1,
        ),
        single_stat(
            "Traffic",
            "Instrumented operations per second (requests, tasks...).",
            PER_SECOND,
            query(q.traffic(), "operations/s"),
            steps=((None, "blue"),),
        ),
        single_stat(
            "Latency p95",
            "95th percentile of the instrumented operations' duration.",
            SECONDS,
            query(q.latency(0.95), "p95"),
            steps=((None, "blue"),),
        ),
        single_stat(
            "Firing alerts",
            "Alerts firing now for the selection (Prometheus's ALERTS), pages and tickets; "
            "the Pages annotation marks on every panel when a page fired.",
            COUNT,
            query(q.firing_alerts(), "firing"),
            steps=((None, "green"), (1, "orange")),
        ),
        single_stat(
            "App versions",
            "The app versions the instances run (app_version), and how many run each; the "
            "Deploys annotation marks when a version started.",
            COUNT,
            query(q.instances_by_version(), "{{app_version}}"),
            steps=((None, "blue"),),
        ).text_mode(common.BigValueTextMode.VALUE_AND_NAME),
        table_panel(
            "Instances",
            "The instances reporting, with links to each one's JSON API (whatever the instance "
            "selection). The JSON API base variable says how the browser reaches them: https:// "
            "when the exporter serves TLS, or the token-adding proxy's URL.",
            NONE,
            [table_query(q.instances(), "")],
            transformations=[organize({"Value": "up"})],
            sort_desc="instance",
            width=24,
            height=5,
            links=[
                data_link("Error groups (JSON)", f"{ROW_API}/api/v1/errors?sort=last_seen"),
                data_link("Statistics (JSON)", f"{ROW_API}/api/v1/statistics"),
                data_link("Patterns (JSON)", f"{ROW_API}/api/v1/patterns"),
            ],
        ),
    ]


def summary_row(q: Queries) -> list[PanelBuilder]:
    return [
        single_stat(
            "Crash-free sessions",
            "Share of ending sessions that did not end crashed or abnormal (mean over the range).",
            RATIO,
            query(q.crash_free(), "crash-free"),
            calc="mean",
            steps=((None, "red"), (0.95, "orange"), (0.99, "green")),
            decimals=2,
        ),
        single_stat(
            "Error rate",
            "Captured errors per second, all severities. No absolute threshold: what is too "
            "many depends on the traffic; the error ratio above is judged against the SLO.",
            PER_SECOND,
            query(q.error_rate(), "errors/s"),
            steps=((None, "blue"),),
        ),
        single_stat(
            "Unique errors",
            f"Distinct error groups known to the monitors ({q.metric('unique_errors')}): per "
            "job its largest instance (the instances of a job share most groups), added up "
            "over the jobs.",
            COUNT,
            query(q.unique_errors(), "unique errors"),
        ),
        single_stat(
            "Critical patterns",
            "Error types whose recurrence the pattern detector rates critical: a cause to look "
            "at (ErrorExporterErrorPattern is a ticket), not an outage.",
            COUNT,
            query(q.critical_patterns(), "critical patterns"),
            steps=((None, "green"), (1, "yellow")),
        ),
        single_stat(
            "Recovery success rate",
            "Share of recovery attempts that succeeded.",
            RATIO,
            query(q.recovery_success(), "success"),
            calc="mean",
            steps=((None, "red"), (0.8, "orange"), (0.95, "green")),
            decimals=1,
        ),
        single_stat(
            "Dropped reports",
            "Error reports lost per second by the monitor; not the drops by design "
            "(store_evicted at the store's capacity, coalesced repeats), as the alert.",
            PER_SECOND,
            query(q.dropped_rate(), "dropped/s"),
            steps=((None, "green"), (0.001, "orange")),
        ),
    ]


def error_row(q: Queries) -> list[PanelBuilder]:
    return [
        pin_colors(
            series(
                "Error rate by severity",
                "Captured errors per second by error severity (low/medium/high/critical).",
                PER_SECOND,
                [query(q.errors_by("severity"), "{{severity}}")],
                stacked=True,
            ),
            SEVERITY_COLORS,
        ),
        series(
            "Top error types",
            "The 10 error types with the highest rate at the end of the range (a stable legend).",
            PER_SECOND,
            [query(q.top_error_types(), "{{error_type}}")],
            stacked=True,
        ),
        series(
            "Error rate by component",
            'Captured errors per second by component ("(none)?": captured without a component; '
            "a click drills down into those).",
            PER_SECOND,
            [query(q.top_errors_by_label_or_none("component"), "{{component}}")],
            stacked=True,
        ).data_links(
            [
                drilldown_link(
                    "Drill down into ${__field.labels.component}",
                    "component",
                    "${__field.labels.component}",
                )
            ]
        ),
        series(
            "Error rate by plugin",
            'Captured errors per second by plugin ("(none)?": not raised in a plugin; a click '
            "drills down into those).",
            PER_SECOND,
            [query(q.top_errors_by_label_or_none("plugin"), "{{plugin}}")],
            stacked=True,
        ).data_links(
            [
                drilldown_link(
                    "Drill down into ${__field.labels.plugin}", "plugin", "${__field.labels.plugin}"
                )
            ]
        ),
        series(
            "Error ratio by component / operation",
            "Share of the instrumented operations (capture(), @handle_errors) that failed.",
            RATIO,
            [query(q.operation_error_ratio(), "{{component}} / {{operation}}")],
            width=24,
        )
        .thresholds(thresholds((None, "green"), (q.SLO_ERROR_BUDGET, "red")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
        .data_links(
            [
                drilldown_link(
                    "Drill down into ${__field.labels.component}",
                    "component",
                    "${__field.labels.component}",
                )
            ]
        ),
    ]


def release_row(q: Queries) -> list[PanelBuilder]:
    """What each deploy broke: needs the monitor's ``app_version`` and a store that outlives a
    restart (``store_path`` or the shared store), so that "first seen" spans restarts."""
    return [
        series(
            "New error groups by version",
            "Error groups seen for the first time, by app and the version that first saw them (a "
            "bar right after a deploy is what the deploy introduced). Each bar counts the groups "
            "new in its own interval (at least 1 minute): the bars add up to the groups new in "
            "the range. Counted as the alert ErrorExporterNewErrorGroup counts: memory-only "
            "stores are left out. List: /api/v1/errors?new_in=VERSION.",
            COUNT,
            [query(q.groups_by_version("new"), "{{job}} {{app_version}}")],
            stacked=True,
            width=9,
            legend_calcs=("max",),
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .interval(BAR_WIDTH)
        .decimals(0),
        series(
            "Regressed error groups by version",
            "Resolved error groups (POST /api/v1/errors/{id}/resolve, error-exporter resolve) "
            "seen again, by app and the version that saw them again; each bar counts its own "
            "interval (at least 1 minute). Counted as the alert ErrorExporterErrorRegressed "
            "counts: memory-only stores are left out.",
            COUNT,
            [query(q.groups_by_version("regressed"), "{{job}} {{app_version}}")],
            stacked=True,
            width=9,
            legend_calcs=("max",),
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .interval(BAR_WIDTH)
        .decimals(0),
        series(
            "Instances by version",
            "Instances whose monitor reports each app version: a rolling deploy shows the new "
            "version taking over. A deploy without a restart (set_app_version) keeps the old "
            'version listed until the next restart; "unknown": no app_version configured.',
            COUNT,
            [query(q.instances_by_version(), "{{app_version}}")],
            stacked=True,
            width=6,
            legend_calcs=("lastNotNull",),
        ).decimals(0),
    ]


def health_row(q: Queries) -> list[PanelBuilder]:
    return [
        table_panel(
            "Active error patterns",
            "Pattern severity per error type (0 none, 1 warning, 2 error, 3 critical) and the "
            "occurrences the detector counted. Details: /api/v1/patterns.",
            COUNT,
            [
                table_query(q.pattern_severity_by_type(), "severity", "A"),
                table_query(q.pattern_occurrences_by_type(), "occurrences", "B"),
            ],
            transformations=[
                merge(),
                organize(
                    {"error_type": "Error type", "Value #A": "Severity", "Value #B": "Occurrences"}
                ),
            ],
            sort_desc="Severity",
            width=8,
        ).override_by_name(
            "Severity",
            [
                config("mappings", value_mappings(PATTERN_LEVELS)),
                config("unit", NONE),
                config("custom.cellOptions", {"type": "color-background"}),
            ],
        ),
        state_timeline(
            "Plugin health",
            "Health reported by each plugin: healthy, degraded or unhealthy.",
            query(q.plugin_health(), "{{plugin}}"),
            states=PLUGIN_STATES,
            steps=PLUGIN_STEPS,
            width=16,
        ),
        series(
            "Recovery success rate by component",
            "Share of recovery attempts (record_recovery, recovery()) that succeeded.",
            RATIO,
            [query(q.recovery_success_by_component(), "{{component}}")],
        ),
        series(
            "Time to recover",
            "Quantiles of the time from an error to its successful recovery.",
            SECONDS,
            quantile_queries(q.time_to_recover),
        ),
    ]


def pipeline_row(q: Queries) -> list[PanelBuilder]:
    return [
        series(
            "Unique errors by instance",
            "Distinct error groups held by each monitor.",
            COUNT,
            [query(q.per_instance("sum", "unique_errors"), "{{instance}}")],
            width=8,
            legend_calcs=("lastNotNull", "max"),
        ),
        series(
            "Dropped reports by reason",
            "Error reports dropped per second, by reason (queue_full, callback_queue_full, "
            "store_evicted, export_failed).",
            PER_SECOND,
            [query(q.dropped_by_reason(), "{{reason}}")],
            stacked=True,
            width=8,
        ),
        series(
            "Queue depth",
            "Reports waiting for the monitor's background worker.",
            COUNT,
            [query(q.per_instance("max", "error_queue_depth"), "{{instance}}")],
            width=8,
            legend_calcs=("lastNotNull", "max"),
        ),
        series(
            "Sessions by status",
            "Sessions ended per second by status (exited, errored, crashed, abnormal).",
            PER_SECOND,
            [query(q.sessions_by_status(), "{{status}}")],
            stacked=True,
        ),
        series(
            "Active sessions",
            "Sessions currently open.",
            COUNT,
            [query(q.per_instance("sum", "sessions_active"), "{{instance}}")],
            legend_calcs=("lastNotNull", "max"),
        ),
    ]


def resources_row(q: Queries) -> list[PanelBuilder]:
    return [
        series(
            "Resources vs. error rate",
            "Host CPU and memory utilisation (left axis) next to the error rate (right axis).",
            RATIO,
            [
                query(q.per_instance("max", "system_cpu_utilization_ratio"), "cpu {{instance}}"),
                query(
                    q.per_instance("max", "system_memory_utilization_ratio"),
                    "memory {{instance}}",
                    "B",
                ),
                query(q.errors_by_instance(), "errors/s {{instance}}", "C"),
            ],
            width=24,
        ).override_by_query("C", right_axis(PER_SECOND, config("custom.drawStyle", "bars"))),
        series(
            "Process",
            "The monitored process: CPU utilisation (left axis) and threads, open files "
            "(right axis).",
            RATIO,
            [
                query(q.per_instance("max", "process_cpu_utilization_ratio"), "cpu {{instance}}"),
                query(q.per_instance("max", "process_threads"), "threads {{instance}}", "B"),
                query(q.per_instance("max", "process_open_files"), "open files {{instance}}", "C"),
            ],
        ).override_by_regexp("^(threads|open files) .*", right_axis(COUNT)),
        series(
            "Monitor internal errors",
            "Failures inside the error monitor itself (should stay at 0).",
            PER_SECOND,
            [query(q.internal_errors_by_instance(), "{{instance}}")],
        ),
    ]


def fleet_row(q: Queries) -> list[PanelBuilder]:
    """Per job, from the fleet recording rules (alerts/fleet-rules.yml): cheap over hundreds of
    instances, and what a global Prometheus federates. Empty where those rules are not loaded."""
    return [
        series(
            "Error rate by job and component (fleet rules)",
            "Errors per second per job and component over 5 minutes, read from "
            "job_component:*errors:rate5m (alerts/fleet-rules.yml).",
            PER_SECOND,
            [query(q.fleet_errors_by_component(), "{{job}} {{component}}")],
            stacked=True,
            width=9,
        ),
        series(
            "Latency p95 by job and component (fleet rules)",
            "95th percentile of the operations' duration per job and component, read from "
            "job_component:*operation_duration_seconds:p95_rate5m (alerts/fleet-rules.yml).",
            SECONDS,
            [query(q.fleet_latency_p95(), "{{job}} {{component}}")],
            width=9,
        ),
        series(
            "Exporter versions by job (fleet rules)",
            "Instances per job and error-exporter version, read from "
            "job_version:*monitor_instances:count (alerts/fleet-rules.yml).",
            COUNT,
            [query(q.fleet_exporter_versions(), "{{job}} {{version}}")],
            stacked=True,
            width=6,
            legend_calcs=("lastNotNull",),
        ).decimals(0),
    ]


def overview(namespace: str = DEFAULT_NAMESPACE) -> dash.Dashboard:
    q = Queries(namespace)
    builder = base_dashboard(
        q,
        UID,
        "error-exporter / Overview",
        "Errors, sessions, patterns, plugins and recoveries of the applications instrumented "
        "with error-exporter. Alerts: alerts/rules.yml, runbook: alerts/runbook.md.",
    )
    builder = builder.annotation(
        dash.AnnotationQuery()
        .name("Deploys")
        .datasource(DS)
        .expr(q.deploys())
        .icon_color("blue")
        .enable(True)
    ).annotation(
        dash.AnnotationQuery()
        .name("Pages")
        .datasource(DS)
        .expr(q.pages())
        .icon_color("red")
        .enable(True)
    )
    builder = builder.link(reports_link())
    return add_rows(
        builder,
        [
            ("Service health", health_first_row(q)),
            ("Summary", summary_row(q)),
            ("Errors", error_row(q)),
            ("Patterns, plugins and recoveries", health_row(q)),
            ("Sessions and reporting pipeline", pipeline_row(q)),
            ("Resources", resources_row(q)),
            # Last, so that the ids of the panels above stay what they were.
            ("New and regressed groups by version", release_row(q)),
            ("Fleet (recording rules)", fleet_row(q)),
        ],
    )
