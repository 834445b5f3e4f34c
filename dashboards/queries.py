"""Every PromQL expression of the dashboards, with the metric prefix from one value.

The exporter prefixes its metric names with its ``namespace`` option (default ``app``:
``app_errors_total``); ``Queries(namespace)`` renders the expressions for any namespace
(``""``: no prefix). Nothing else in the package writes a metric name.

Conventions (enforced by tests/unit/dashboards/test_dashboards.py): every selector filters
``job=~"$job", instance=~"$instance"``, every rate uses ``$__rate_interval``, counters are only
read through ``rate()``/``increase()``, except the release panels' bars (``groups_by_version``:
what each step added, ``$__interval`` the bar width).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_NAMESPACE = "app"  # the exporter's default `namespace` (exporter/config.py)
NAMESPACE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

SEL = 'job=~"$job", instance=~"$instance"'
# Drill-down selector: `component` and `plugin` are labels of the capture-path families.
CSEL = f'{SEL}, component=~"$component", plugin=~"$plugin"'
RI = "$__rate_interval"


def metric_prefix(namespace: str = DEFAULT_NAMESPACE) -> str:
    """``app`` -> ``app_``; the empty namespace gives unprefixed names, as in the exporter."""
    if namespace and not NAMESPACE_PATTERN.fullmatch(namespace):
        raise ValueError(f"invalid metric namespace {namespace!r}: letters, digits and _")
    return f"{namespace}_" if namespace else ""


def _with(selector: str, extra: str) -> str:
    return f"{selector}, {extra}" if extra else selector


# How the empty label value (``component=""``) is shown: "(none)?" reads as none, and as the
# drill-down's regex (``component=~"(none)?"``, what the overview's link selects) it matches
# the empty value; "(none)" would match only a component named "none".
NONE_VALUE = "(none)?"


def _none_label(label: str, expr: str) -> str:
    """Show the empty label value (``component=""``) as :data:`NONE_VALUE`."""
    return f'label_replace({expr}, "{label}", "{NONE_VALUE}", "{label}", "")'


@dataclass(frozen=True)
class Queries:
    """The dashboards' PromQL for one metric namespace.

    ``scope`` selects the capture-path families (errors, operations, recoveries): ``SEL`` on the
    overview, ``CSEL`` (also filtered by the component and plugin variables) on the drill-down.
    """

    namespace: str = DEFAULT_NAMESPACE
    scope: str = SEL

    # ------------------------------------------------------------------------ building blocks

    def metric(self, name: str) -> str:
        """The exported name of a family: ``metric("errors_total")`` -> ``app_errors_total``."""
        return metric_prefix(self.namespace) + name

    def select(self, name: str, extra: str = "", *, selector: str = SEL) -> str:
        return f"{self.metric(name)}{{{_with(selector, extra)}}}"

    def rate(self, name: str, extra: str = "", *, selector: str = SEL) -> str:
        return f"rate({self.select(name, extra, selector=selector)}[{RI}])"

    def scoped_rate(self, name: str, extra: str = "") -> str:
        return self.rate(name, extra, selector=self.scope)

    @property
    def errors(self) -> str:
        return self.scoped_rate("errors_total")

    @property
    def operations(self) -> str:
        return self.scoped_rate("operation_duration_seconds_count")

    @property
    def operation_errors(self) -> str:
        return self.scoped_rate("operation_duration_seconds_count", 'outcome="error"')

    @property
    def recoveries(self) -> str:
        return self.scoped_rate("error_recoveries_total")

    @property
    def recovered(self) -> str:
        return self.scoped_rate("error_recoveries_total", 'result="success"')

    @property
    def sessions_ended(self) -> str:
        return self.rate("sessions_total")

    @property
    def dropped(self) -> str:
        return self.rate("error_reports_dropped_total")

    @property
    def pattern_severity(self) -> str:
        return self.select("error_pattern_severity")

    # ------------------------------------------------------------------------ service health

    # The error SLO of alerts/rules.yml: 99 % of instrumented operations succeed.
    SLO_ERROR_BUDGET = 0.01
    # Drops that are the monitor's design, not losses (the alerts ignore them too).
    DROPS_BY_DESIGN = 'reason!~"store_evicted|coalesced"'

    def error_ratio(self) -> str:
        """Share of the instrumented operations that failed (the SLO's error ratio)."""
        return f"sum({self.operation_errors}) / sum({self.operations})"

    def budget_burn(self) -> str:
        """The error ratio in units of the error budget: 1 spends it exactly in 30 days,
        14.4 is the fast-burn page, 6 the slow-burn ticket."""
        return f"({self.error_ratio()}) / {self.SLO_ERROR_BUDGET}"

    def traffic(self) -> str:
        return f"sum({self.operations})"

    def latency(self, quantile: float) -> str:
        buckets = self.scoped_rate("operation_duration_seconds_bucket")
        return f"histogram_quantile({quantile}, sum by (le) ({buckets}))"

    def firing_alerts(self, severity: str = "") -> str:
        """Alerts firing now for the selection (Prometheus's ALERTS series); 0 when none."""
        extra = f', severity="{severity}"' if severity else ""
        return f'count(ALERTS{{alertstate="firing", {SEL}{extra}}}) or vector(0)'

    def deploys(self) -> str:
        """An app version that started in the last minute, per job (annotation): the monitor
        creates a version's release counters when it starts running it."""
        counter = self.select("error_groups_new_total")
        return f"count by (job, app_version) ({counter} unless {counter} offset 1m)"

    def pages(self) -> str:
        """Critical alerts firing (annotation)."""
        return f'ALERTS{{alertstate="firing", severity="critical", {SEL}}}'

    def instances(self) -> str:
        return f"max by (job, instance) ({self.select('monitor_info')})"

    # ------------------------------------------------------------------------ fleet rules

    def recorded(self, level: str, family: str, operation: str) -> str:
        """A series of alerts/fleet-rules.yml (``level:<prefix>family:operation``), selected
        like any other (instance=~"$instance" matches its absent instance when All is .*)."""
        return f"{level}:{self.metric(family)}:{operation}{{{SEL}}}"

    def fleet_errors_by_component(self) -> str:
        return f"sum by (job, component) ({self.recorded('job_component', 'errors', 'rate5m')})"

    def fleet_latency_p95(self) -> str:
        return self.recorded("job_component", "operation_duration_seconds", "p95_rate5m")

    def fleet_exporter_versions(self) -> str:
        return self.recorded("job_version", "monitor_instances", "count")

    # ------------------------------------------------------------------------ variables

    def job_values(self) -> str:
        return f"label_values({self.metric('monitor_info')}, job)"

    def instance_values(self) -> str:
        return f'label_values({self.metric("monitor_info")}{{job=~"$job"}}, instance)'

    def error_label_values(self, label: str) -> str:
        return f"label_values({self.select('errors_total')}, {label})"

    # ------------------------------------------------------------------------ errors

    def crash_free(self) -> str:
        crashed = self.rate("sessions_total", 'status=~"crashed|abnormal"')
        return f"1 - ((sum({crashed}) or vector(0)) / sum({self.sessions_ended}))"

    def error_rate(self) -> str:
        return f"sum({self.errors})"

    def errors_by(self, *labels: str) -> str:
        return f"sum by ({', '.join(labels)}) ({self.errors})"

    def current_errors(self) -> str:
        """Errors per second by instance, component, plugin, error type and severity."""
        return self.errors_by("instance", "component", "plugin", "error_type", "severity")

    def _top(self, expr: str, label: str) -> str:
        """The 10 series of ``expr`` (by ``label``) highest at the end of the range, over the
        whole range: a plain topk() in a range query picks 10 per step, and the legend churns."""
        at_end = expr.replace(f"[{RI}])", f"[{RI}] @ end())")
        return f"{expr} and on ({label}) topk(10, {at_end})"

    def top_error_types(self) -> str:
        return self._top(self.errors_by("error_type"), "error_type")

    def errors_by_label_or_none(self, label: str) -> str:
        """Errors by component or plugin, the missing value shown as :data:`NONE_VALUE`."""
        return _none_label(label, self.errors_by(label))

    def top_errors_by_label_or_none(self, label: str) -> str:
        return self._top(self.errors_by_label_or_none(label), label)

    def unique_errors(self) -> str:
        """Distinct error groups per job, added up over the jobs: the instances of a job share
        most groups (a shared store, the same code), so the job counts its largest instance
        (a lower bound) rather than each group once per instance."""
        return f"sum(max by (job) ({self.select('unique_errors')}))"

    def dropped_rate(self) -> str:
        """Reports lost, per second: not the drops by design (store_evicted, coalesced)."""
        return f"sum({self.rate('error_reports_dropped_total', self.DROPS_BY_DESIGN)})"

    def dropped_by_reason(self) -> str:
        return f"sum by (reason) ({self.dropped})"

    # ------------------------------------------------------------------------ patterns, plugins

    def critical_patterns(self) -> str:
        return f"count({self.pattern_severity_by_type()} >= 3) or vector(0)"

    def pattern_severity_by_type(self) -> str:
        return f"max by (error_type) ({self.pattern_severity})"

    def pattern_occurrences_by_type(self) -> str:
        return f"max by (error_type) ({self.select('error_pattern_occurrences')})"

    def pattern_severity_of_errors_seen(self) -> str:
        """Pattern severity of the error types with errors in the scope."""
        errors_seen = self.errors_by("error_type")
        return f"{self.pattern_severity_by_type()} and on (error_type) {errors_seen}"

    def plugin_health(self, *, plugin_variable: bool = False, per_instance: bool = False) -> str:
        extra = 'plugin=~"$plugin"' if plugin_variable else ""
        by = "instance, plugin" if per_instance else "plugin"
        return f"max by ({by}) ({self.select('plugin_health', extra)})"

    # ------------------------------------------------------------------------ operations

    def operation_error_ratio(self) -> str:
        """Failed share by component and operation; an operation without a component shows
        as :data:`NONE_VALUE` (the overview's link drills down into it)."""
        by = "sum by (component, operation)"
        return _none_label(
            "component", f"{by} ({self.operation_errors}) / {by} ({self.operations})"
        )

    def operations_by_outcome(self) -> str:
        return f"sum by (outcome) ({self.operations})"

    def operation_latency(self, quantile: float) -> str:
        buckets = self.scoped_rate("operation_duration_seconds_bucket")
        return f"histogram_quantile({quantile}, sum by (component, operation, le) ({buckets}))"

    # ------------------------------------------------------------------------ background jobs

    # Celery and RQ tasks (exporter.integrations): each run is an operation of component
    # "celery" or "rq" named after the task, outcome ok / error / retry / ignored; retries are
    # also counted by error type in task_retries_total{component, operation, error_type}.
    TASK_COMPONENTS = 'component=~"celery|rq"'

    def task_runs(self, outcome: str) -> str:
        """Runs per second of each task with the outcome(s) ``outcome`` (a regex)."""
        runs = self.scoped_rate(
            "operation_duration_seconds_count", f'{self.TASK_COMPONENTS}, outcome=~"{outcome}"'
        )
        return f"sum by (component, operation) ({runs})"

    def task_retries(self) -> str:
        """Retries per second of each task (task_retries_total has no plugin label)."""
        retries = self.rate(
            "task_retries_total", f'{self.TASK_COMPONENTS}, component=~"$component"'
        )
        return f"sum by (component, operation) ({retries})"

    def task_failure_ratio(self) -> str:
        """Failed share of each task's finished runs (ok or error; a retry or an ignored run is
        not finished), as ErrorExporterTaskFailureRatioHigh computes it."""
        return f"{self.task_runs('error')} / {self.task_runs('ok|error')}"

    def task_latency(self, quantile: float) -> str:
        buckets = self.scoped_rate("operation_duration_seconds_bucket", self.TASK_COMPONENTS)
        return f"histogram_quantile({quantile}, sum by (component, operation, le) ({buckets}))"

    # ------------------------------------------------------------------------ recoveries

    def recovery_success(self) -> str:
        return f"sum({self.recovered}) / sum({self.recoveries})"

    def recovery_success_by_component(self) -> str:
        return f"sum by (component) ({self.recovered}) / sum by (component) ({self.recoveries})"

    def recoveries_by_result(self) -> str:
        return f"sum by (plugin, result) ({self.recoveries})"

    def time_to_recover(self, quantile: float) -> str:
        buckets = self.scoped_rate("error_recovery_duration_seconds_bucket")
        return f"histogram_quantile({quantile}, sum by (le) ({buckets}))"

    # ------------------------------------------------------------------------ sessions, pipeline

    def sessions_by_status(self) -> str:
        return f"sum by (status) ({self.sessions_ended})"

    def per_instance(self, aggregation: str, name: str) -> str:
        """``max by (instance) (app_<name>{...})`` for a per-instance gauge."""
        return f"{aggregation} by (instance) ({self.select(name)})"

    def errors_by_instance(self) -> str:
        return self.errors_by("instance")

    def internal_errors_by_instance(self) -> str:
        return f"sum by (instance) ({self.rate('monitor_internal_errors_total')})"

    # ------------------------------------------------------------------------ release health

    # The bar width of the release panels: each bar counts what its own step added.
    BAR = "$__interval"

    def groups_by_version(self, kind: str) -> str:
        """Error groups per app (job) and version in each bar: ``new`` (first seen in that
        version) or ``regressed`` (resolved, then seen again in it). Counted as the alerts
        ErrorExporterNewErrorGroup and ErrorExporterErrorRegressed count (alerts/rules.yml).

        Each bar is what the counter added since the previous bar: its value now minus its
        value one step ago (``offset $__interval``, the panel's step), so neighbouring bars
        never count a group twice and the bars of a range add up to the groups new in it (a
        window longer than the step, as ``increase(...[$__rate_interval])``, counted a group
        in every bar whose window held it). A series born since the previous bar (a version or
        an instance that just started), or one that restarted from 0, counts whole: a counter
        born at 1 has no earlier value to subtract. Only processes whose store outlives a
        restart count (``monitor_store_info``): summed where the store is shared by the job
        (fleet), the host that counted most where each host has its own (host); a memory-only
        process (process) calls every group new after each start, and one that does not say
        is ignored too.
        """
        counter = self.select(f"error_groups_{kind}_total")
        counted = f"(({counter} - {counter} offset {self.BAR}) >= 0 or {counter})"

        def scope(aggregation: str, release_scope: str) -> str:
            info = self.select("monitor_store_info", f'release_scope="{release_scope}"')
            return f"{aggregation} by (job, app_version) ({counted} and on (job, instance) {info})"

        return f"{scope('sum', 'fleet')} or {scope('max', 'host')}"

    def instances_by_version(self) -> str:
        """Instances whose monitor reports each app version: the monitor creates the release
        counters of a version when it starts running it."""
        return f"count by (app_version) ({self.rate('error_groups_new_total')})"
