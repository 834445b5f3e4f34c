"""The Reports board: the fleet's error groups, read by Grafana from the shared store.

Prometheus has the rates; what a team reads next (which error, where, since which
version, the occurrence's trace, context and breadcrumbs) is in the shared store that
every instance writes (``store_url="postgresql://…"``). This board reads it through
Grafana's built-in PostgreSQL data source, provisioned with the read-only role
(dashboards/provisioning/datasources/reports.yml), so nobody has to reach an instance's
JSON API from their browser.

Every query is in :data:`SQL` (one place; tests/unit/dashboards/test_reports_dashboard.py runs each
on a
real PostgreSQL filled by the demo workload, Grafana's macros and variables substituted).
Times are the store's epoch seconds, so the time filter is ``$__unixEpochFilter(column)``.

The rows: the top groups (type, message, where, count, first / last seen, versions,
regressed, instances); one group, picked by the ``error_id`` variable, with its latest
occurrences (trace, context), its latest report's breadcrumbs and its per-instance
counts; and a deploy's story for the version picked in ``version``: the groups it brought
(new), brought back (regressed), and fixed (resolved, not seen since), each row linking
to the group's occurrences and to its trace. The metric boards link here by error id:
the exemplars of ``app_errors_total`` carry it (:data:`REPORTS_BY_ERROR_ID`, provisioned
as an exemplar destination) and every panel with exemplars gets :data:`ERROR_TYPE_LINK`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import COUNT, NONE, TAGS, PanelBuilder, add_rows, config

UID = "error-exporter-reports"
FILE_NAME = f"{UID}.json"
TITLE = "error-exporter / Reports"
PG_TYPE = "grafana-postgresql-datasource"  # Grafana's built-in PostgreSQL plugin
PG_UID = "error-exporter-reports"  # the provisioned data source (provisioning/datasources)
DS = model.DataSourceRef(type_val=PG_TYPE, uid="${reports_ds}")
# this board, opened on one group (the metric boards' links, the rows' links)
REPORTS_BY_ERROR_ID = f"/d/{UID}/reports?var-error_id={{error_id}}"
GROUP_URL = (
    f"/d/{UID}/reports?var-reports_ds=${{reports_ds}}&var-app=${{app}}"
    "&var-version=${version}&var-error_id=${__data.fields.error_id}&${__url_time_range}"
)
TRACE_URL = "${__data.fields.trace_url}"
# from a metric panel's series (labels of app_errors_total) to this board, by error type
ERROR_TYPE_LINK = (
    "Reports: groups of this error type",
    f"/d/{UID}/reports?var-error_type=${{__field.labels.error_type}}&${{__url_time_range}}",
)

# ---------------------------------------------------------------------------- the SQL

# Every version the app's groups were seen in, the latest first (the `version` variable).
_VERSIONS = """
SELECT version, max(at) AS at FROM (
  SELECT first_seen_version AS version, first_occurrence AS at FROM groups
  WHERE app = '${app}'
  UNION ALL
  SELECT last_seen_version, last_occurrence FROM groups WHERE app = '${app}'
) seen WHERE version IS NOT NULL GROUP BY version
""".strip()

# What a group row shows (the deploy tables share it): its latest report's fields.
_GROUP_COLUMNS = """
  g.error_id,
  g.report::jsonb ->> 'error_type' AS type,
  left(g.report::jsonb ->> 'error_message', 200) AS message,
  concat(g.report::jsonb ->> 'file_path', ':', g.report::jsonb ->> 'line_number',
         ' in ', g.report::jsonb ->> 'function_name') AS "where",
  g.occurrence_count AS count,
  to_timestamp(g.first_occurrence) AS first_seen,
  to_timestamp(g.last_occurrence) AS last_seen,
  g.first_seen_version,
  g.last_seen_version,
  g.regressed = 1 AS regressed,
  g.resolved_at IS NOT NULL AS resolved,
  g.report::jsonb ->> 'trace_url' AS trace_url
""".strip()

SQL: dict[str, str] = {
    # variables
    "var_app": "SELECT DISTINCT app FROM groups ORDER BY app",
    "var_version": f"SELECT version FROM ({_VERSIONS}) v ORDER BY at DESC",
    "var_error_id": (
        "SELECT error_id FROM groups WHERE app = '${app}' ORDER BY last_occurrence DESC LIMIT 500"
    ),
    # the fleet's top groups (seen in the time range), busiest first
    "top_groups": f"""
SELECT {_GROUP_COLUMNS},
  (SELECT count(*) FROM group_instances i
   WHERE i.app = g.app AND i.error_id = g.error_id) AS instances
FROM groups g
WHERE g.app = '${{app}}' AND $__unixEpochFilter(g.last_occurrence)
  AND ('${{error_type}}' = '' OR g.report::jsonb ->> 'error_type' = '${{error_type}}')
ORDER BY g.occurrence_count DESC, g.error_id
LIMIT 100""".strip(),
    # one group: its latest occurrences, from every instance
    "occurrences": """
SELECT to_timestamp(r.ts) AS time,
  r.instance,
  r.data::jsonb ->> 'message' AS message,
  r.data::jsonb ->> 'component' AS component,
  r.data::jsonb ->> 'operation' AS operation,
  r.data::jsonb ->> 'user_id' AS user_id,
  (r.data::jsonb -> 'context')::text AS context,
  r.data::jsonb ->> 'trace_id' AS trace_id,
  r.data::jsonb ->> 'trace_url' AS trace_url,
  r.data::jsonb ->> 'stack_trace' AS stack_trace
FROM records r
WHERE r.app = '${app}' AND r.error_id = '${error_id}' AND $__unixEpochFilter(r.ts)
ORDER BY r.seq DESC
LIMIT 50""".strip(),
    # one group: what the app did before its latest occurrence
    "breadcrumbs": """
SELECT to_timestamp((b ->> 'timestamp_epoch')::float8) AS time,
  b ->> 'level' AS level,
  b ->> 'category' AS category,
  b ->> 'component' AS component,
  b ->> 'action' AS action,
  (b -> 'data')::text AS data
FROM groups g, jsonb_array_elements(g.report::jsonb -> 'breadcrumbs') AS b
WHERE g.app = '${app}' AND g.error_id = '${error_id}'
ORDER BY time""".strip(),
    # one group: which instance counted how many, and when it last saw it
    "instances": """
SELECT i.instance, i.occurrence_count AS count, to_timestamp(i.last_seen) AS last_seen
FROM group_instances i
WHERE i.app = '${app}' AND i.error_id = '${error_id}'
ORDER BY i.occurrence_count DESC, i.instance""".strip(),
    # a deploy's story, for the version picked in `version`
    "new_in_version": f"""
SELECT {_GROUP_COLUMNS}
FROM groups g
WHERE g.app = '${{app}}' AND g.first_seen_version = '${{version}}'
ORDER BY g.occurrence_count DESC, g.error_id""".strip(),
    "regressed_in_version": f"""
SELECT {_GROUP_COLUMNS}, g.resolved_version AS fixed_in, to_timestamp(g.regressed_at) AS back_at
FROM groups g
WHERE g.app = '${{app}}' AND g.regressed = 1 AND g.last_seen_version = '${{version}}'
ORDER BY g.regressed_at DESC, g.error_id""".strip(),
    # resolved while the version ran, and not seen since (a regression clears resolved_at)
    "fixed_in_version": f"""
SELECT {_GROUP_COLUMNS}, to_timestamp(g.resolved_at) AS resolved_at
FROM groups g
WHERE g.app = '${{app}}' AND g.resolved_at IS NOT NULL AND g.resolved_version = '${{version}}'
ORDER BY g.resolved_at DESC, g.error_id""".strip(),
    # every version: how many groups it brought, brought back and fixed
    "by_version": f"""
SELECT v.version,
  (SELECT count(*) FROM groups g WHERE g.app = '${{app}}'
     AND g.first_seen_version = v.version) AS new_groups,
  (SELECT count(*) FROM groups g WHERE g.app = '${{app}}' AND g.regressed = 1
     AND g.last_seen_version = v.version) AS regressed_groups,
  (SELECT count(*) FROM groups g WHERE g.app = '${{app}}' AND g.resolved_at IS NOT NULL
     AND g.resolved_version = v.version) AS fixed_groups
FROM ({_VERSIONS}) v
ORDER BY v.at DESC""".strip(),
}

# ---------------------------------------------------------------------------- the builders


class SqlTarget(cogvariants.Dataquery):
    """A PostgreSQL data source query in code mode (the SDK has no SQL query builder)."""

    def __init__(self, ref: str, sql: str) -> None:
        self.ref = ref
        self.sql = sql

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": {"type": PG_TYPE, "uid": "${reports_ds}"},
            "editorMode": "code",
            "format": "table",
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, name: str, ref: str = "A") -> None:
        self.target = SqlTarget(ref, SQL[name])

    def build(self) -> cogvariants.Dataquery:
        return self.target


def link(title: str, url: str, blank: bool = False) -> dict[str, Any]:
    return {"title": title, "url": url, "targetBlank": blank}


# each row's group: its occurrences on this board, and its latest occurrence's trace
GROUP_LINKS: Mapping[str, list[dict[str, Any]]] = {
    "error_id": [link("Occurrences of this group", GROUP_URL)],
    "trace_url": [link("Trace of the latest occurrence", TRACE_URL, blank=True)],
}


def sql_table(
    title: str,
    description: str,
    query: str,
    *,
    width: int = 24,
    height: int = 9,
    links: Mapping[str, list[dict[str, Any]]] = GROUP_LINKS,
    unit: str = NONE,
) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .with_target(Sql(query))
        .span(width)
        .height(height)
    )
    for column, column_links in links.items():
        panel = panel.override_by_name(column, [config("links", column_links)])
    return panel


def sql_variable(name: str, label: str, query: str, **options: Any) -> dash.QueryVariable:
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(SQL[query])
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
    )
    for key, value in options.items():
        variable = getattr(variable, key)(value)
    return variable


# ---------------------------------------------------------------------------- the rows


def top_row() -> list[PanelBuilder]:
    return [
        sql_table(
            "Top error groups",
            "The fleet's groups seen in the time range (every instance's occurrences summed), "
            "busiest first: where each is raised, since which version, whether it came back "
            "after a resolve, how many instances saw it. error_id opens its occurrences; "
            "trace_url its latest occurrence's trace. Filtered by the error_type variable "
            "(set by the metric boards' links).",
            "top_groups",
            height=10,
        )
    ]


def group_row() -> list[PanelBuilder]:
    return [
        sql_table(
            "Latest occurrences of ${error_id}",
            "The group's latest occurrences from every instance, newest first: the "
            "instance, message, context, trace (trace_url opens it) and stack trace.",
            "occurrences",
            links={"trace_url": [link("Trace", "${__value.raw}", blank=True)]},
            height=10,
        ),
        sql_table(
            "Breadcrumbs of the latest report",
            "What the app did before the group's latest occurrence, oldest first.",
            "breadcrumbs",
            links={},
            width=16,
        ),
        sql_table(
            "Instances",
            "Which instance counted how many of the group's occurrences (they add up to "
            "its count), and when each last saw it.",
            "instances",
            links={},
            width=8,
            unit=COUNT,
        ),
    ]


def deploy_row() -> list[PanelBuilder]:
    return [
        sql_table(
            "New in ${version}",
            "Groups first seen in this version: what the deploy brought.",
            "new_in_version",
            width=24,
            height=7,
        ),
        sql_table(
            "Regressed in ${version}",
            "Groups resolved before, seen again in this version: what the deploy brought "
            "back (fixed_in: the version they were resolved in).",
            "regressed_in_version",
            width=24,
            height=7,
        ),
        sql_table(
            "Fixed in ${version}",
            "Groups resolved while this version ran and not seen since: what the deploy fixed.",
            "fixed_in_version",
            width=24,
            height=7,
        ),
        sql_table(
            "New, regressed and fixed groups by version",
            "Every version the app's groups were seen in, the latest first: how many groups "
            "it brought, brought back and fixed.",
            "by_version",
            links={},
            unit=COUNT,
            height=7,
        ),
    ]


def reports(namespace: str = "") -> dash.Dashboard:
    """The board (``namespace`` is the metric prefix of the other boards: none here)."""
    builder = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description(
            "The fleet's error reports from the shared store (PostgreSQL): top groups, one "
            "group's occurrences, breadcrumbs and instances, and a deploy's story."
        )
        .tags(TAGS)
        .editable()
        .timezone("browser")
        .time("now-24h", "now")
        .refresh("1m")
        .link(
            dash.DashboardLink("error-exporter dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
        .with_variable(
            dash.DatasourceVariable("reports_ds")
            .label("Reports data source")
            .type(PG_TYPE)
            .current(model.VariableOption(selected=True, text="Reports", value=PG_UID))
        )
        .with_variable(sql_variable("app", "App", "var_app"))
        .with_variable(sql_variable("version", "Version", "var_version"))
        .with_variable(sql_variable("error_id", "Error group", "var_error_id"))
        .with_variable(dash.TextBoxVariable("error_type").label("Error type").default_value(""))
    )
    rows: Sequence[tuple[str, Sequence[PanelBuilder]]] = [
        ("Top groups", top_row()),
        ("Error group ${error_id}", group_row()),
        ("Deploy ${version}: what it brought, brought back and fixed", deploy_row()),
    ]
    return add_rows(builder, rows)


__all__ = ["ERROR_TYPE_LINK", "FILE_NAME", "REPORTS_BY_ERROR_ID", "SQL", "UID", "reports"]
