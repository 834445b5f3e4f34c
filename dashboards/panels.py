"""Panel, variable and dashboard helpers shared by the boards (grafana-foundation-sdk builders).

One function per panel kind (``series``, ``single_stat``, ``table_panel``, ``state_timeline``)
holds the builder chain that every panel of that kind repeats: the data source variable, the
legend, tooltip, thresholds, size. ``render`` serialises a dashboard reproducibly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

from dashboards.queries import Queries

TAGS = ["error-exporter"]
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

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
PLUGIN_STEPS = ((None, "green"), (1, "yellow"), (2, "red"))
QUANTILES = (0.5, 0.9, 0.99)

Query = prometheus.Dataquery
PanelBuilder = cogbuilder.Builder[model.Panel]
Steps = Sequence[tuple[float | None, str]]


# ---------------------------------------------------------------------------- queries, fields


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


def table_query(expr: str, legend: str, ref: str = "A") -> Query:
    """An instant query in table format (one row per series)."""
    return query(expr, legend, ref, instant=True, table_format=True)


def quantile_queries(
    expr_for_quantile: Callable[[float], str], quantiles: Sequence[float] = QUANTILES
) -> list[Query]:
    """One target per quantile (legend p50, p90, ...; refs A, B, ...)."""
    return [
        query(expr_for_quantile(q), f"p{int(q * 100)}", chr(ord("A") + i))
        for i, q in enumerate(quantiles)
    ]


def value_mappings(states: Mapping[int, tuple[str, str]]) -> list[model.ValueMapping]:
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


def config(name: str, value: object) -> model.DynamicConfigValue:
    """One field-config property of an override (``unit``, ``custom.axisPlacement``...)."""
    return model.DynamicConfigValue(id_val=name, value=value)


def right_axis(unit: str, *extra: model.DynamicConfigValue) -> list[model.DynamicConfigValue]:
    """Override properties: these series in ``unit`` on the right axis."""
    return [config("unit", unit), config("custom.axisPlacement", "right"), *extra]


def merge() -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val="merge", options={})


def organize(rename: Mapping[str, str]) -> model.DataTransformerConfig:
    """Drop the Time column, rename the others."""
    return model.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": {"Time": True}, "renameByName": dict(rename)},
    )


# ---------------------------------------------------------------------------- panels


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
    """A time series panel: a table legend on the right, a multi-series tooltip."""
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
    steps: Steps = ((None, "green"),),
    width: int = 4,
    decimals: float | None = None,
) -> stat.Panel:
    """A stat panel (height 4): one value coloured by ``steps``, with its sparkline."""
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


def table_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Query],
    *,
    transformations: Sequence[model.DataTransformerConfig],
    sort_desc: str,
    width: int,
    height: int = 8,
    links: Sequence[dash.DashboardLink] = (),
) -> table.Panel:
    """A table of instant queries, sorted by the column ``sort_desc`` (descending)."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .targets(list(targets))
    )
    for transformation in transformations:
        panel = panel.with_transformation(transformation)
    panel = panel.sort_by(
        [common_builders.TableSortByFieldState().display_name(sort_desc).desc(True)]
    )
    if links:
        panel = panel.data_links(list(links))
    return panel.span(width).height(height)


def state_timeline(
    title: str,
    description: str,
    target: Query,
    *,
    states: Mapping[int, tuple[str, str]],
    steps: Steps,
    width: int,
    height: int = 8,
    links: Sequence[dash.DashboardLink] = (),
) -> statetimeline.Panel:
    """A state timeline of a small-integer gauge: each value named and coloured by ``states``."""
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(NONE)
        .with_target(target)
        .mappings(value_mappings(states))
        .thresholds(thresholds(*steps))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .fill_opacity(80)
    )
    if links:
        panel = panel.links(list(links))
    return panel.span(width).height(height)


# ---------------------------------------------------------------------------- links


# The exporter's JSON API on the instance of a clicked row / series: works whatever the
# instance variable holds (All, several), unlike ${instance}. `api_base` is what comes before
# the instance (its label value, host:port): `http://` or `https://` to open the monitor
# directly, or the base of a reverse proxy that takes the instance as its first path segment
# and adds the API token (README: Links to the JSON API and the API token). Grafana's browser
# cannot send an Authorization header, and a token in a link would end up in every log: the
# dashboards never hold one.
API_BASE = "api_base"
DEFAULT_API_BASE = "http://"
ROW_API = f"${{{API_BASE}}}${{__data.fields.instance}}"
SERIES_API = f"${{{API_BASE}}}${{__field.labels.instance}}"
DRILLDOWN = "/d/error-exporter-drilldown/error-exporter-drill-down"


def drilldown_link(title: str, variable: str, value: str) -> dash.DashboardLink:
    """A data link to the drill-down board with the clicked value selected, keeping the job,
    instance and time range."""
    return data_link(
        title,
        f"{DRILLDOWN}?${{job:queryparam}}&${{instance:queryparam}}&var-{variable}={value}"
        "&${__url_time_range}",
        new_tab=False,
    )


def reports_link() -> dash.DashboardLink:
    """A dashboard link to the Reports board (the shared store, read by Grafana: no token, no
    browser access to the instances), keeping the time range. The boards have no dashboard
    link to an instance's JSON API: it would read ${instance}, which is All or several."""
    from dashboards.reports import TITLE, UID

    return (
        dash.DashboardLink("Reports (shared store)")
        .type(model.DashboardLinkType.LINK)
        .url(f"/d/{UID}/reports")
        .icon("doc")
        .tooltip(f"{TITLE}: the fleet's error groups, occurrences and breadcrumbs")
        .target_blank(False)
        .include_vars(False)
        .keep_time(True)
    )


def data_link(title: str, url: str, *, new_tab: bool = True) -> dash.DashboardLink:
    return dash.DashboardLink(title).url(url).target_blank(new_tab)


# Pinned colours: the same severity or outcome is the same colour on every panel.
SEVERITY_COLORS = {"low": "blue", "medium": "yellow", "high": "orange", "critical": "red"}
OUTCOME_COLORS = {"ok": "green", "error": "red", "retry": "orange", "ignored": "text"}


def fixed_color(color: str) -> list[model.DynamicConfigValue]:
    return [config("color", {"mode": "fixed", "fixedColor": color})]


def pin_colors(panel: timeseries.Panel, colors: Mapping[str, str]) -> timeseries.Panel:
    """Override the colour of the series named (by legend) after each key of ``colors``."""
    for name, color in colors.items():
        panel = panel.override_by_name(name, fixed_color(color))
    return panel


# ---------------------------------------------------------------------------- dashboards


def query_variable(name: str, label: str, expr: str) -> dash.QueryVariable:
    """A multi-value query variable with "All", refreshed with the time range."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(expr)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def all_selected() -> model.VariableOption:
    return model.VariableOption(selected=True, text="All", value="$__all")


def common_variables(q: Queries) -> list[cogbuilder.Builder[model.VariableModel]]:
    """The data source, job and instance variables every board starts with."""
    return [
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(model.VariableOption(selected=True, text="Prometheus", value="prometheus")),
        # "All" is `.*`, not the alternation of the values listed: it matches series without
        # an instance (job-level alerts, fleet recording rules) and instances not listed yet.
        query_variable("job", "Job", q.job_values()).all_value(".*").current(all_selected()),
        query_variable("instance", "Instance", q.instance_values())
        .all_value(".*")
        .current(all_selected()),
        # What comes before an instance in the links to its JSON API (API_BASE).
        dash.TextBoxVariable(API_BASE)
        .label("JSON API base")
        .description(
            "Prefix of the links to an instance's JSON API, before the instance (host:port): "
            "http:// or https:// to open it directly, or a reverse proxy's base URL ending in / "
            "that adds the API token (README: Links to the JSON API and the API token)."
        )
        .default_value(DEFAULT_API_BASE),
    ]


def base_dashboard(q: Queries, uid: str, title: str, description: str) -> dash.Dashboard:
    """A dashboard with the shared settings, the dashboards link and the common variables."""
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
    for variable in common_variables(q):
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


def link_to_reports(panel: model.Panel | model.RowPanel) -> None:
    """A panel with exemplars (they carry the error_id) also links to the Reports board
    (dashboards/reports.py) for the error type of the series clicked."""
    if not any(getattr(t, "exemplar", False) for t in getattr(panel, "targets", None) or []):
        return
    from dashboards.reports import ERROR_TYPE_LINK

    defaults = panel.field_config.defaults if panel.field_config else None
    if defaults is not None:
        defaults.links = [*(defaults.links or []), data_link(*ERROR_TYPE_LINK).build()]


def render(builder: dash.Dashboard, api_base: str = DEFAULT_API_BASE) -> str:
    """Serialise with stable, unique panel ids (1, 2, ... in layout order), ``api_base`` the
    default of the API_BASE variable (a deployment's proxy: build.py --api-base)."""
    board = builder.build()
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
        link_to_reports(panel)
    for variable in (board.templating.list_val if board.templating else None) or []:
        if variable.name == API_BASE:
            variable.query = api_base
            variable.current = model.VariableOption(selected=True, text=api_base, value=api_base)
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
