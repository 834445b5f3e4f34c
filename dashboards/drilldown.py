"""The drill-down board: one component or plugin (error types with exemplars, operations,
recoveries, plugin health), selected by the `component` and `plugin` variables."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common

from dashboards.panels import (
    NONE,
    OUTCOME_COLORS,
    PATTERN_LEVELS,
    PER_SECOND,
    PLUGIN_STATES,
    PLUGIN_STEPS,
    RATIO,
    ROW_API,
    SECONDS,
    SERIES_API,
    SEVERITY_COLORS,
    PanelBuilder,
    add_rows,
    all_selected,
    base_dashboard,
    data_link,
    organize,
    pin_colors,
    quantile_queries,
    query,
    query_variable,
    reports_link,
    series,
    state_timeline,
    table_panel,
    table_query,
    thresholds,
    value_mappings,
)
from dashboards.queries import CSEL, DEFAULT_NAMESPACE, Queries

UID = "error-exporter-drilldown"
FILE_NAME = f"{UID}.json"

SERIES_EXPORT_URL = (
    f"{SERIES_API}/api/v1/export?component=${{__field.labels.component}}"
    "&error_type=${__field.labels.error_type}"
)
ROW_EXPORT_URL = (
    f"{ROW_API}/api/v1/export"
    "?component=${__data.fields.component}&plugin=${__data.fields.plugin}"
    "&error_type=${__data.fields.error_type}"
)
PLUGIN_HEALTH_URL = f"{SERIES_API}/api/v1/plugins/${{__field.labels.plugin}}/health"


def errors_row(q: Queries) -> list[PanelBuilder]:
    return [
        series(
            "Error rate by type",
            "Errors per second by type for the selected components and plugins. Exemplars "
            "carry the error_id: open it in the JSON API (/api/v1/errors/<error_id>).",
            PER_SECOND,
            [
                query(
                    q.errors_by("instance", "component", "error_type"),
                    "{{component}} {{error_type}}",
                    exemplar=True,
                )
            ],
            stacked=True,
            width=16,
        ).data_links([data_link("Export these errors (JSON)", SERIES_EXPORT_URL)]),
        pin_colors(
            series(
                "Error rate by severity",
                "Errors per second by error severity.",
                PER_SECOND,
                [query(q.errors_by("severity"), "{{severity}}")],
                stacked=True,
                width=8,
            ),
            SEVERITY_COLORS,
        ),
        table_panel(
            "Current error rate by type",
            "Errors per second right now, by instance, component, plugin, type and severity. "
            "Click a row to export its errors from the JSON API.",
            PER_SECOND,
            [table_query(q.current_errors(), "")],
            transformations=[organize({"Value": "errors/s"})],
            sort_desc="errors/s",
            width=24,
            links=[data_link("Export these errors (JSON)", ROW_EXPORT_URL)],
        ),
        series(
            "Error rate by plugin",
            "Errors per second by plugin.",
            PER_SECOND,
            [query(q.errors_by_label_or_none("plugin"), "{{plugin}}")],
            stacked=True,
        ),
        series(
            "Error patterns of these error types",
            "Pattern severity (0 none .. 3 critical) of the error types seen in the selection.",
            NONE,
            [query(q.pattern_severity_of_errors_seen(), "{{error_type}}")],
        )
        .mappings(value_mappings(PATTERN_LEVELS))
        .min(0)
        .max(3),
    ]


def operations_row(q: Queries) -> list[PanelBuilder]:
    return [
        series(
            "Operation error ratio",
            "Share of the instrumented operations that failed, by operation.",
            RATIO,
            [query(q.operation_error_ratio(), "{{component}} / {{operation}}")],
            width=8,
        ),
        pin_colors(
            series(
                "Operations by outcome",
                "Instrumented operations per second, ok and error (tasks: retry, ignored).",
                PER_SECOND,
                [query(q.operations_by_outcome(), "{{outcome}}")],
                stacked=True,
                width=8,
            ),
            OUTCOME_COLORS,
        ),
        series(
            "Operation latency",
            "p50, p95 and p99 of the instrumented operations' duration, by operation.",
            SECONDS,
            [
                query(
                    q.operation_latency(quantile),
                    f"{{{{component}}}} / {{{{operation}}}} p{int(quantile * 100)}",
                    ref,
                )
                for ref, quantile in (("A", 0.5), ("B", 0.95), ("C", 0.99))
            ],
            width=8,
        ),
    ]


def recovery_row(q: Queries) -> list[PanelBuilder]:
    return [
        series(
            "Recoveries by result",
            "Recovery attempts per second, success and failure.",
            PER_SECOND,
            [query(q.recoveries_by_result(), "{{plugin}} {{result}}")],
            stacked=True,
            width=8,
        ),
        series(
            "Time to recover",
            "Quantiles of the time to a successful recovery.",
            SECONDS,
            quantile_queries(q.time_to_recover),
            width=8,
        ),
        state_timeline(
            "Plugin health",
            "Health reported by the selected plugins.",
            query(
                q.plugin_health(plugin_variable=True, per_instance=True), "{{plugin}} {{instance}}"
            ),
            states=PLUGIN_STATES,
            steps=PLUGIN_STEPS,
            width=8,
            links=[data_link("Plugin health (JSON)", PLUGIN_HEALTH_URL)],
        ),
    ]


def background_jobs_row(q: Queries) -> list[PanelBuilder]:
    """Celery and RQ tasks: failures and retries, duration percentiles and the failure ratio
    of each task (the series of exporter.integrations' Celery and RQ hooks)."""
    return [
        series(
            "Task failures and retries",
            "Failed runs (outcome error) and retries per second, by task (Celery, RQ).",
            PER_SECOND,
            [
                query(q.task_runs("error"), "{{component}} {{operation}} failed", "A"),
                query(q.task_retries(), "{{component}} {{operation}} retried", "B"),
            ],
            width=8,
        ),
        series(
            "Task duration percentiles",
            "p50, p95 and p99 of each task's run duration (every outcome).",
            SECONDS,
            [
                query(q.task_latency(quantile), f"{{{{operation}}}} p{int(quantile * 100)}", ref)
                for ref, quantile in (("A", 0.5), ("B", 0.95), ("C", 0.99))
            ],
            width=8,
        ),
        series(
            "Task failure ratio",
            "Share of each task's finished runs (ok or error) that failed. The line is the "
            "threshold of ErrorExporterTaskFailureRatioHigh (10 % over 30 minutes, at least "
            "10 runs).",
            RATIO,
            [query(q.task_failure_ratio(), "{{component}} {{operation}}")],
            width=8,
        )
        .min(0)
        .max(1)
        .thresholds(thresholds((None, "green"), (0.1, "red")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        ),
    ]


def drilldown(namespace: str = DEFAULT_NAMESPACE) -> dash.Dashboard:
    q = Queries(namespace, scope=CSEL)
    builder = base_dashboard(
        q,
        UID,
        "error-exporter / Drill-down",
        "One component or plugin of an application instrumented with error-exporter: error "
        "types with exemplars, operations, recoveries, plugin health and background jobs "
        "(Celery, RQ).",
    )
    for name, label in (("component", "Component"), ("plugin", "Plugin")):
        builder = builder.with_variable(
            query_variable(name, label, q.error_label_values(name))
            .all_value(".*")
            .current(all_selected())
        )
    builder = builder.link(reports_link())
    return add_rows(
        builder,
        [
            ("Errors", errors_row(q)),
            ("Operations", operations_row(q)),
            ("Recoveries and plugin health", recovery_row(q)),
            ("Background jobs", background_jobs_row(q)),
        ],
    )
