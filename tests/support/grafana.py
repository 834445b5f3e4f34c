"""Read the generated Grafana dashboards and turn panel targets into plain PromQL.

No Grafana server runs in the tests: a dashboard is proven by linting its JSON and by running
each target on a real Prometheus after substituting Grafana's macros and variables the way
Grafana would.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
DASHBOARD_FILES = ("error-exporter-overview.json", "error-exporter-drilldown.json")

MACRO = re.compile(r"\$__(rate_interval|interval_ms|interval|range_s|range_ms|range)\b")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True)
class Target:
    dashboard: str  # uid
    panel: str  # title
    panel_type: str
    ref_id: str
    expr: str
    target: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def load_build_module() -> ModuleType:
    """Import the dashboards' command line, dashboards/build.py, from its path (it puts the
    repository on sys.path and re-exports ``build_all`` of the ``dashboards`` package)."""
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARD_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> committed dashboard JSON."""
    return {name: json.loads((DASHBOARD_DIR / name).read_text()) for name in DASHBOARD_FILES}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; rows themselves excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: Mapping[str, Any]) -> Iterator[Target]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Target(
                dashboard=str(dashboard["uid"]),
                panel=str(panel.get("title", "")),
                panel_type=str(panel.get("type", "")),
                ref_id=str(target.get("refId", "")),
                expr=str(target.get("expr", "")),
                target=target,
            )


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def format_duration(seconds: float) -> str:
    """A PromQL duration for a whole number of seconds (at least 1s)."""
    return f"{max(1, math.ceil(seconds))}s"


def rate_interval(scrape_interval: float, interval: float) -> float:
    """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(interval + scrape_interval, 4 * scrape_interval)


def substitute_macros(
    expr: str,
    *,
    scrape_interval: float = 15.0,
    interval: float = 15.0,
    range_seconds: float = 3600.0,
) -> str:
    """Replace $__rate_interval, $__interval, $__range (and _ms/_s variants) like Grafana."""
    values = {
        "rate_interval": format_duration(rate_interval(scrape_interval, interval)),
        "interval": format_duration(interval),
        "interval_ms": str(int(interval * 1000)),
        "range": format_duration(range_seconds),
        "range_s": str(int(range_seconds)),
        "range_ms": str(int(range_seconds * 1000)),
    }
    return MACRO.sub(lambda m: values[m.group(1)], expr)


def substitute_variables(expr: str, values: Mapping[str, str]) -> str:
    """Replace $name / ${name} / ${name:fmt} with ``values[name]`` (unknown names stay)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return VARIABLE.sub(replace, expr)


def to_promql(
    expr: str,
    variable_values: Mapping[str, str],
    *,
    scrape_interval: float = 15.0,
    interval: float = 15.0,
    range_seconds: float = 3600.0,
) -> str:
    expr = substitute_macros(
        expr, scrape_interval=scrape_interval, interval=interval, range_seconds=range_seconds
    )
    return substitute_variables(expr, variable_values)


# ---------------------------------------------------------------------------- on a real Prometheus

LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Outcome:
    target: Target
    promql: str
    series: int  # number of series returned, -1 on error
    error: str = ""


def promql_string_regex(values: list[str]) -> str:
    """Grafana's "All" for a multi-value variable: (a|b), regex-escaped for a PromQL string."""
    escaped = "|".join(re.escape(v) for v in values)
    return f"({escaped})".replace("\\", "\\\\")


def resolve_variables(prom_url: str, dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Evaluate the query variables as Grafana does with "All" selected, in dashboard order.

    A variable with a custom all value (``.*``) gets that value; the others get the regex
    alternation of the values their ``label_values(...)`` query returns on ``prom_url``.
    """
    from .promstack import label_values

    values: dict[str, str] = {}
    for name, variable in variables(dashboard).items():
        if variable.get("type") != "query":
            continue
        if variable.get("includeAll") and variable.get("allValue"):
            values[name] = str(variable["allValue"])
            continue
        match = LABEL_VALUES.match(substitute_variables(str(variable["query"]), values))
        assert match, f"unsupported variable query {variable['query']!r}"
        found = label_values(prom_url, match["label"], match["selector"])
        assert found, f"variable {name}: {variable['query']} returned no values"
        values[name] = promql_string_regex(found)
    return values


def run_targets(
    prom_url: str,
    dashboard: Mapping[str, Any],
    *,
    scrape_interval: float,
    interval: float,
    range_seconds: float,
    overrides: Mapping[str, str] | None = None,
) -> list[Outcome]:
    """Run every panel target of ``dashboard`` as an instant query on ``prom_url``."""
    from .promstack import QueryError, query

    values = {**resolve_variables(prom_url, dashboard), **(overrides or {})}
    outcomes = []
    for target in targets(dashboard):
        promql = to_promql(
            target.expr,
            values,
            scrape_interval=scrape_interval,
            interval=interval,
            range_seconds=range_seconds,
        )
        try:
            outcomes.append(Outcome(target, promql, len(query(prom_url, promql))))
        except QueryError as exc:
            outcomes.append(Outcome(target, promql, -1, str(exc)))
    return outcomes


def describe_failures(outcomes: list[Outcome]) -> str:
    lines = []
    for outcome in outcomes:
        if outcome.series > 0:
            continue
        reason = outcome.error or "no data"
        lines.append(f"- {outcome.target.name}: {reason}\n    {outcome.promql}")
    return "\n".join(lines)
