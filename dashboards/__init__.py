"""The error-exporter Grafana dashboards (Grafana 11.6), built with grafana-foundation-sdk.

- ``queries``: every PromQL expression, the metric prefix from one value (``DEFAULT_NAMESPACE``);
- ``panels``: one helper per panel kind, links, variables, ``render``;
- ``overview``, ``drilldown``: one module per board;
- ``reports``: the Reports board, SQL on the shared store (PostgreSQL data source);
- ``build.py``: the command line that writes ``dashboards/*.json``.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards import drilldown, overview, reports
from dashboards.panels import DEFAULT_API_BASE, render
from dashboards.queries import DEFAULT_NAMESPACE

# File name -> the function building that board for a metric namespace.
DASHBOARDS: dict[str, Callable[[str], dash.Dashboard]] = {
    overview.FILE_NAME: overview.overview,
    drilldown.FILE_NAME: drilldown.drilldown,
    reports.FILE_NAME: reports.reports,  # SQL on the shared store: no metric prefix
}


def build_all(
    namespace: str = DEFAULT_NAMESPACE, api_base: str = DEFAULT_API_BASE
) -> dict[str, str]:
    """File name -> JSON text of every dashboard (``api_base``: the default of the links' JSON
    API base variable, panels.API_BASE)."""
    return {name: render(factory(namespace), api_base) for name, factory in DASHBOARDS.items()}
