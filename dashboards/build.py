"""Build the error-exporter Grafana dashboards (Grafana 11.6) with grafana-foundation-sdk.

    python dashboards/build.py           # (re)write dashboards/*.json
    python dashboards/build.py --check   # exit 1 if the committed JSON differs from the code

Conventions every panel follows (enforced by tests/test_dashboards.py):
- the data source is the `datasource` variable (no `${DS_...}` inputs: provisioning-friendly);
- every query filters `job=~"$job", instance=~"$instance"`, every rate/increase uses
  `$__rate_interval`;
- every panel has a title and a unit.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

HERE = Path(__file__).resolve().parent
OVERVIEW_UID = "error-exporter-overview"
DRILLDOWN_UID = "error-exporter-drilldown"
TAGS = ["error-exporter"]

DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job=~"$job", instance=~"$instance"'
# Drill-down selector: `component` and `plugin` are labels of the capture-path families.
CSEL = f'{SEL}, component=~"$component", plugin=~"$plugin"'
RI = "$__rate_interval"

# Units (Grafana unit ids).
PER_SECOND = "cps"  # counts per second
RATIO = "percentunit"
SECONDS = "s"
COUNT = "short"
NONE = "none"

PATTERN_LEVELS = {
    0: ("none", "green"),
    1: ("warning", "yellow"),
    2: ("error", "orange"),
    3: ("critical", "red"),
}
PLUGIN_STATES = {0: ("healthy", "green"), 1: ("degraded", "yellow"), 2: ("unhealthy", "red")}

Query = prometheus.Dataquery
PanelBuilder = cogbuilder.Builder[model.Panel]


# ---------------------------------------------------------------------------- helpers


def query(
    expr: str,
    legend: str = "__auto",
    ref: str = "A",
    *,
    instant: bool = False,
    table_format: bool = False,
    exemplar: bool = False,
) -> Query:
    q = Query().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(prom_model.PromQueryFormat.TABLE)
    if exemplar:
        q = q.exemplar(True)
    return q


def rate(metric: str, selector: str = SEL) -> str:
    return f"rate({metric}{{{selector}}}[{RI}])"


def value_mappings(states: dict[int, tuple[str, str]]) -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                str(value): model.ValueMappingResult(text=text, color=color, index=value)
                for value, (text, color) in states.items()
            }
        )
    ]


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def legend_table(*calcs: str) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(list(calcs))
    )


def series(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Query],
    *,
    stacked: bool = False,
    width: int = 12,
    height: int = 8,
    legend_calcs: Sequence[str] = ("mean", "max"),
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .targets(list(targets))
        .span(width)
        .height(height)
        .fill_opacity(20 if stacked else 10)
        .line_width(1)
        .legend(legend_table(*legend_calcs))
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def single_stat(
    title: str,
    description: str,
    unit: str,
    target: Query,
    *,
    calc: str = "lastNotNull",
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    width: int = 4,
    decimals: float | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .with_target(target)
        .span(width)
        .height(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs([calc]).values(False))
        .thresholds(thresholds(*steps))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def api_link(title: str, path: str) -> dash.DashboardLink:
    """A dashboard link to the exporter's JSON API on the selected instance."""
    return (
        dash.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(f"http://${{instance}}{path}")
        .icon("external link")
        .tooltip(f"JSON API: {path}")
        .target_blank(True)
        .include_vars(False)
        .keep_time(False)
    )


def data_link(title: str, url: str) -> dash.DashboardLink:
    return dash.DashboardLink(title).url(url).target_blank(True)


def common_variables() -> list[cogbuilder.Builder[model.VariableModel]]:
    return [
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(model.VariableOption(selected=True, text="Prometheus", value="prometheus")),
        dash.QueryVariable("job")
        .label("Job")
        .datasource(DS)
        .query("label_values(app_monitor_info, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
        dash.QueryVariable("instance")
        .label("Instance")
        .datasource(DS)
        .query('label_values(app_monitor_info{job=~"$job"}, instance)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
    ]


def base_dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    builder = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("error-exporter dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in common_variables():
        builder = builder.with_variable(variable)
    return builder


def add_rows(
    builder: dash.Dashboard, rows: Sequence[tuple[str, Sequence[PanelBuilder]]]
) -> dash.Dashboard:
    for title, panels in rows:
        builder = builder.with_row(dash.Row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    return builder


def render(builder: dash.Dashboard) -> str:
    """Serialise with stable, unique panel ids (1, 2, ... in layout order)."""
    board = builder.build()
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------- overview


def overview() -> dash.Dashboard:
    crashed = rate("app_sessions_total", f'{SEL}, status=~"crashed|abnormal"')
    ended = rate("app_sessions_total")
    crash_free = f"1 - ((sum({crashed}) or vector(0)) / sum({ended}))"
    errors = rate("app_errors_total")
    recoveries = rate("app_error_recoveries_total")
    recovered = rate("app_error_recoveries_total", f'{SEL}, result="success"')
    op_errors = rate("app_operation_duration_seconds_count", f'{SEL}, outcome="error"')
    ops = rate("app_operation_duration_seconds_count")
    recovery_buckets = rate("app_error_recovery_duration_seconds_bucket")

    summary_row: list[PanelBuilder] = [
        single_stat(
            "Crash-free sessions",
            "Share of ending sessions that did not end crashed or abnormal (mean over the range).",
            RATIO,
            query(crash_free, "crash-free"),
            calc="mean",
            steps=((None, "red"), (0.95, "orange"), (0.99, "green")),
            decimals=2,
        ),
        single_stat(
            "Error rate",
            "Captured errors per second, all severities.",
            PER_SECOND,
            query(f"sum({errors})", "errors/s"),
            steps=((None, "green"), (1, "orange"), (5, "red")),
        ),
        single_stat(
            "Unique errors",
            "Distinct error groups known to the monitors (app_unique_errors).",
            COUNT,
            query(f"sum(app_unique_errors{{{SEL}}})", "unique errors"),
        ),
        single_stat(
            "Critical patterns",
            "Error types whose recurrence the pattern detector rates critical.",
            COUNT,
            query(
                f"count(max by (error_type) (app_error_pattern_severity{{{SEL}}}) >= 3)"
                " or vector(0)",
                "critical patterns",
            ),
            steps=((None, "green"), (1, "red")),
        ),
        single_stat(
            "Recovery success rate",
            "Share of recovery attempts that succeeded.",
            RATIO,
            query(f"sum({recovered}) / sum({recoveries})", "success"),
            calc="mean",
            steps=((None, "red"), (0.8, "orange"), (0.95, "green")),
            decimals=1,
        ),
        single_stat(
            "Dropped reports",
            "Error reports dropped per second by the monitor (all reasons).",
            PER_SECOND,
            query(f"sum({rate('app_error_reports_dropped_total')})", "dropped/s"),
            steps=((None, "green"), (0.001, "red")),
        ),
    ]

    error_row: list[PanelBuilder] = [
        series(
            "Error rate by severity",
            "Captured errors per second by error severity (low/medium/high/critical).",
            PER_SECOND,
            [query(f"sum by (severity) ({errors})", "{{severity}}")],
            stacked=True,
        ),
        series(
            "Top error types",
            "The 10 error types with the highest rate.",
            PER_SECOND,
            [query(f"topk(10, sum by (error_type) ({errors}))", "{{error_type}}")],
            stacked=True,
        ),
        series(
            "Error rate by component",
            'Captured errors per second by component ("(none)": captured without a component).',
            PER_SECOND,
            [
                query(
                    "topk(10, label_replace(sum by (component) "
                    f'({errors}), "component", "(none)", "component", ""))',
                    "{{component}}",
                )
            ],
            stacked=True,
        ),
        series(
            "Error rate by plugin",
            'Captured errors per second by plugin ("(none)": not raised in a plugin).',
            PER_SECOND,
            [
                query(
                    "topk(10, label_replace(sum by (plugin) "
                    f'({errors}), "plugin", "(none)", "plugin", ""))',
                    "{{plugin}}",
                )
            ],
            stacked=True,
        ),
        series(
            "Error ratio by component / operation",
            "Share of the instrumented operations (capture(), @handle_errors) that failed.",
            RATIO,
            [
                query(
                    f"sum by (component, operation) ({op_errors})"
                    f" / sum by (component, operation) ({ops})",
                    "{{component}} / {{operation}}",
                )
            ],
            width=24,
        ),
    ]

    health_row: list[PanelBuilder] = [
        table.Panel()
        .title("Active error patterns")
        .description(
            "Pattern severity per error type (0 none, 1 warning, 2 error, 3 critical) and the "
            "occurrences the detector counted. Details: /api/v1/patterns."
        )
        .datasource(DS)
        .unit(COUNT)
        .targets(
            [
                query(
                    f"max by (error_type) (app_error_pattern_severity{{{SEL}}})",
                    "severity",
                    "A",
                    instant=True,
                    table_format=True,
                ),
                query(
                    f"max by (error_type) (app_error_pattern_occurrences{{{SEL}}})",
                    "occurrences",
                    "B",
                    instant=True,
                    table_format=True,
                ),
            ]
        )
        .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "error_type": "Error type",
                        "Value #A": "Severity",
                        "Value #B": "Occurrences",
                    },
                },
            )
        )
        .override_by_name(
            "Severity",
            [
                model.DynamicConfigValue(id_val="mappings", value=value_mappings(PATTERN_LEVELS)),
                model.DynamicConfigValue(id_val="unit", value=NONE),
                model.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
        .sort_by([common_builders.TableSortByFieldState().display_name("Severity").desc(True)])
        .span(8)
        .height(8),
        statetimeline.Panel()
        .title("Plugin health")
        .description("Health reported by each plugin: healthy, degraded or unhealthy.")
        .datasource(DS)
        .unit(NONE)
        .with_target(query(f"max by (plugin) (app_plugin_health{{{SEL}}})", "{{plugin}}"))
        .mappings(value_mappings(PLUGIN_STATES))
        .thresholds(thresholds((None, "green"), (1, "yellow"), (2, "red")))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .fill_opacity(80)
        .span(16)
        .height(8),
        series(
            "Recovery success rate by component",
            "Share of recovery attempts (record_recovery, recovery()) that succeeded.",
            RATIO,
            [
                query(
                    f"sum by (component) ({recovered}) / sum by (component) ({recoveries})",
                    "{{component}}",
                )
            ],
        ),
        series(
            "Time to recover",
            "Quantiles of the time from an error to its successful recovery.",
            SECONDS,
            [
                query(
                    f"histogram_quantile({q}, sum by (le) ({recovery_buckets}))",
                    f"p{int(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
            ],
        ),
    ]

    pipeline_row: list[PanelBuilder] = [
        series(
            "Unique errors by instance",
            "Distinct error groups held by each monitor.",
            COUNT,
            [query(f"sum by (instance) (app_unique_errors{{{SEL}}})", "{{instance}}")],
            width=8,
            legend_calcs=("lastNotNull", "max"),
        ),
        series(
            "Dropped reports by reason",
            "Error reports dropped per second, by reason (queue_full, callback_queue_full, "
            "store_evicted, export_failed).",
            PER_SECOND,
            [query(f"sum by (reason) ({rate('app_error_reports_dropped_total')})", "{{reason}}")],
            stacked=True,
            width=8,
        ),
        series(
            "Queue depth",
            "Reports waiting for the monitor's background worker.",
            COUNT,
            [query(f"max by (instance) (app_error_queue_depth{{{SEL}}})", "{{instance}}")],
            width=8,
            legend_calcs=("lastNotNull", "max"),
        ),
        series(
            "Sessions by status",
            "Sessions ended per second by status (exited, errored, crashed, abnormal).",
            PER_SECOND,
            [query(f"sum by (status) ({ended})", "{{status}}")],
            stacked=True,
        ),
        series(
            "Active sessions",
            "Sessions currently open.",
            COUNT,
            [query(f"sum by (instance) (app_sessions_active{{{SEL}}})", "{{instance}}")],
            legend_calcs=("lastNotNull", "max"),
        ),
    ]

    resources_row: list[PanelBuilder] = [
        series(
            "Resources vs. error rate",
            "Host CPU and memory utilisation (left axis) next to the error rate (right axis).",
            RATIO,
            [
                query(
                    f"max by (instance) (app_system_cpu_utilization_ratio{{{SEL}}})",
                    "cpu {{instance}}",
                    "A",
                ),
                query(
                    f"max by (instance) (app_system_memory_utilization_ratio{{{SEL}}})",
                    "memory {{instance}}",
                    "B",
                ),
                query(f"sum by (instance) ({errors})", "errors/s {{instance}}", "C"),
            ],
            width=24,
        ).override_by_query(
            "C",
            [
                model.DynamicConfigValue(id_val="unit", value=PER_SECOND),
                model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                model.DynamicConfigValue(id_val="custom.drawStyle", value="bars"),
            ],
        ),
        series(
            "Process",
            "The monitored process: CPU utilisation (left axis) and threads, open files "
            "(right axis).",
            RATIO,
            [
                query(
                    f"max by (instance) (app_process_cpu_utilization_ratio{{{SEL}}})",
                    "cpu {{instance}}",
                    "A",
                ),
                query(
                    f"max by (instance) (app_process_threads{{{SEL}}})", "threads {{instance}}", "B"
                ),
                query(
                    f"max by (instance) (app_process_open_files{{{SEL}}})",
                    "open files {{instance}}",
                    "C",
                ),
            ],
        ).override_by_regexp(
            "^(threads|open files) .*",
            [
                model.DynamicConfigValue(id_val="unit", value=COUNT),
                model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            ],
        ),
        series(
            "Monitor internal errors",
            "Failures inside the error monitor itself (should stay at 0).",
            PER_SECOND,
            [
                query(
                    f"sum by (instance) ({rate('app_monitor_internal_errors_total')})",
                    "{{instance}}",
                )
            ],
        ),
    ]

    builder = base_dashboard(
        OVERVIEW_UID,
        "error-exporter / Overview",
        "Errors, sessions, patterns, plugins and recoveries of the applications instrumented "
        "with error-exporter. Alerts: alerts/rules.yml, runbook: alerts/runbook.md.",
    )
    builder = builder.link(api_link("Error groups (JSON)", "/api/v1/errors?sort=last_seen"))
    builder = builder.link(api_link("Statistics (JSON)", "/api/v1/statistics"))
    builder = builder.link(api_link("Patterns (JSON)", "/api/v1/patterns"))
    return add_rows(
        builder,
        [
            ("Summary", summary_row),
            ("Errors", error_row),
            ("Patterns, plugins and recoveries", health_row),
            ("Sessions and reporting pipeline", pipeline_row),
            ("Resources", resources_row),
        ],
    )


# ---------------------------------------------------------------------------- drill-down


def drilldown() -> dash.Dashboard:
    errors = rate("app_errors_total", CSEL)
    op_errors = rate("app_operation_duration_seconds_count", f'{CSEL}, outcome="error"')
    ops = rate("app_operation_duration_seconds_count", CSEL)
    op_buckets = rate("app_operation_duration_seconds_bucket", CSEL)
    recoveries = rate("app_error_recoveries_total", CSEL)
    recovery_buckets = rate("app_error_recovery_duration_seconds_bucket", CSEL)
    export_url = (
        "http://${__field.labels.instance}/api/v1/export?component=${__field.labels.component}"
        "&error_type=${__field.labels.error_type}"
    )

    errors_row: list[PanelBuilder] = [
        series(
            "Error rate by type",
            "Errors per second by type for the selected components and plugins. Exemplars "
            "carry the error_id: open it in the JSON API (/api/v1/errors/<error_id>).",
            PER_SECOND,
            [
                query(
                    f"sum by (instance, component, error_type) ({errors})",
                    "{{component}} {{error_type}}",
                    exemplar=True,
                )
            ],
            stacked=True,
            width=16,
        ).data_links([data_link("Export these errors (JSON)", export_url)]),
        series(
            "Error rate by severity",
            "Errors per second by error severity.",
            PER_SECOND,
            [query(f"sum by (severity) ({errors})", "{{severity}}")],
            stacked=True,
            width=8,
        ),
        table.Panel()
        .title("Current error rate by type")
        .description(
            "Errors per second right now, by instance, component, plugin, type and severity. "
            "Click a row to export its errors from the JSON API."
        )
        .datasource(DS)
        .unit(PER_SECOND)
        .with_target(
            query(
                f"sum by (instance, component, plugin, error_type, severity) ({errors})",
                "",
                instant=True,
                table_format=True,
            )
        )
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"Value": "errors/s"}},
            )
        )
        .sort_by([common_builders.TableSortByFieldState().display_name("errors/s").desc(True)])
        .data_links(
            [
                data_link(
                    "Export these errors (JSON)",
                    "http://${__data.fields.instance}/api/v1/export"
                    "?component=${__data.fields.component}&plugin=${__data.fields.plugin}"
                    "&error_type=${__data.fields.error_type}",
                )
            ]
        )
        .span(24)
        .height(8),
        series(
            "Error rate by plugin",
            "Errors per second by plugin.",
            PER_SECOND,
            [
                query(
                    f'label_replace(sum by (plugin) ({errors}), "plugin", "(none)", "plugin", "")',
                    "{{plugin}}",
                )
            ],
            stacked=True,
        ),
        series(
            "Error patterns of these error types",
            "Pattern severity (0 none .. 3 critical) of the error types seen in the selection.",
            NONE,
            [
                query(
                    f"max by (error_type) (app_error_pattern_severity{{{SEL}}})"
                    f" and on (error_type) sum by (error_type) ({errors})",
                    "{{error_type}}",
                )
            ],
        )
        .mappings(value_mappings(PATTERN_LEVELS))
        .min(0)
        .max(3),
    ]

    operations_row: list[PanelBuilder] = [
        series(
            "Operation error ratio",
            "Share of the instrumented operations that failed, by operation.",
            RATIO,
            [
                query(
                    f"sum by (component, operation) ({op_errors})"
                    f" / sum by (component, operation) ({ops})",
                    "{{component}} / {{operation}}",
                )
            ],
            width=8,
        ),
        series(
            "Operations by outcome",
            "Instrumented operations per second, ok and error.",
            PER_SECOND,
            [query(f"sum by (outcome) ({ops})", "{{outcome}}")],
            stacked=True,
            width=8,
        ),
        series(
            "Operation latency p90",
            "90th percentile of the instrumented operations' duration, by operation.",
            SECONDS,
            [
                query(
                    f"histogram_quantile(0.9, sum by (component, operation, le) ({op_buckets}))",
                    "{{component}} / {{operation}}",
                )
            ],
            width=8,
        ),
    ]

    recovery_row: list[PanelBuilder] = [
        series(
            "Recoveries by result",
            "Recovery attempts per second, success and failure.",
            PER_SECOND,
            [query(f"sum by (plugin, result) ({recoveries})", "{{plugin}} {{result}}")],
            stacked=True,
            width=8,
        ),
        series(
            "Time to recover",
            "Quantiles of the time to a successful recovery.",
            SECONDS,
            [
                query(
                    f"histogram_quantile({q}, sum by (le) ({recovery_buckets}))",
                    f"p{int(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
            ],
            width=8,
        ),
        statetimeline.Panel()
        .title("Plugin health")
        .description("Health reported by the selected plugins.")
        .datasource(DS)
        .unit(NONE)
        .with_target(
            query(f'max by (plugin) (app_plugin_health{{{SEL}, plugin=~"$plugin"}})', "{{plugin}}")
        )
        .mappings(value_mappings(PLUGIN_STATES))
        .thresholds(thresholds((None, "green"), (1, "yellow"), (2, "red")))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .fill_opacity(80)
        .links(
            [
                data_link(
                    "Plugin health (JSON)", "http://${instance}/api/v1/plugins/${plugin}/health"
                )
            ]
        )
        .span(8)
        .height(8),
    ]

    builder = base_dashboard(
        DRILLDOWN_UID,
        "error-exporter / Drill-down",
        "One component or plugin of an application instrumented with error-exporter: error "
        "types with exemplars, operations, recoveries and plugin health.",
    )
    for name, label in (("component", "Component"), ("plugin", "Plugin")):
        builder = builder.with_variable(
            dash.QueryVariable(name)
            .label(label)
            .datasource(DS)
            .query(f'label_values(app_errors_total{{job=~"$job", instance=~"$instance"}}, {name})')
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(model.VariableOption(selected=True, text="All", value="$__all"))
        )
    builder = builder.link(
        api_link("Export this component (JSON)", "/api/v1/export?component=${component}")
    )
    builder = builder.link(api_link("Error groups (JSON)", "/api/v1/errors?sort=count"))
    return add_rows(
        builder,
        [
            ("Errors", errors_row),
            ("Operations", operations_row),
            ("Recoveries and plugin health", recovery_row),
        ],
    )


# ---------------------------------------------------------------------------- main

DASHBOARDS = {
    "error-exporter-overview.json": overview,
    "error-exporter-drilldown.json": drilldown,
}


def build_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(factory()) for name, factory in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON files are stale")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build_all().items():
        path = args.out / name
        if args.check:
            current = path.read_text() if path.exists() else ""
            if current != text:
                stale.append(name)
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"{name} (committed)",
                        f"{name} (built)",
                        n=2,
                    )
                )
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
