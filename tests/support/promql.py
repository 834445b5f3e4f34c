"""Static analysis of PromQL expressions with ``promql_parser`` (used by the rule and dashboard
lint tests).

``output_labels`` proves which labels a query can return: a finite set when every path through
the expression ends in an aggregation with ``by (...)``, a recorded series of known labels,
``absent()``, ``vector()`` or a literal; ``None`` when raw series labels can leak through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import promql_parser as pp

COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
RATE_FUNCTIONS = frozenset({"rate", "increase", "irate"})
# Aggregations whose output keeps the input series' labels (they select, not combine).
SELECTING_AGGREGATIONS = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})
SCALAR_FUNCTIONS = frozenset(
    {
        "vector",
        "time",
        "scalar",
        "pi",
        "minute",
        "hour",
        "day_of_week",
        "day_of_month",
        "day_of_year",
        "days_in_month",
        "month",
        "year",
    }
)

Labels = frozenset[str]


def children(node: pp.Expr) -> list[pp.Expr]:
    """Direct sub-expressions of ``node``."""
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.AggregateExpr):
        param = [node.param] if isinstance(node.param, pp.Expr) else []
        return [*param, node.expr]
    if isinstance(node, pp.Call):
        return list(node.args)
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return [node.expr]
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    return []


@dataclass(frozen=True)
class Visit:
    node: pp.Expr
    parents: tuple[pp.Expr, ...]  # outermost first


def walk(node: pp.Expr, parents: tuple[pp.Expr, ...] = ()) -> Iterator[Visit]:
    """Every node of the tree with its chain of parents."""
    yield Visit(node, parents)
    for child in children(node):
        yield from walk(child, (*parents, node))


def aggregation_name(node: pp.AggregateExpr) -> str:
    return str(node.op).lower()


def function_name(node: pp.Call) -> str:
    return str(node.func.name)


def selectors(expr: pp.Expr) -> list[pp.VectorSelector]:
    return [v.node for v in walk(expr) if isinstance(v.node, pp.VectorSelector)]


def matchers(selector: pp.VectorSelector) -> list[pp.Matcher]:
    found = list(selector.matchers.matchers)
    for group in selector.matchers.or_matchers or []:
        found.extend(group)
    return found


def is_counter(name: str | None) -> bool:
    return bool(name) and str(name).endswith(COUNTER_SUFFIXES)


def counters_outside_rate(expr: pp.Expr) -> list[str]:
    """Counter selectors that are not the range argument of rate()/increase()/irate()."""
    bad: list[str] = []
    for visit in walk(expr):
        node = visit.node
        if not isinstance(node, pp.VectorSelector) or not is_counter(node.name):
            continue
        parents = visit.parents
        ok = (
            len(parents) >= 2
            and isinstance(parents[-1], pp.MatrixSelector)
            and isinstance(parents[-2], pp.Call)
            and function_name(parents[-2]) in RATE_FUNCTIONS
        )
        if not ok:
            bad.append(str(node.name))
    return bad


def _latest_sample(node: pp.Expr) -> pp.VectorSelector | None:
    """The selector of ``x`` or ``last_over_time(x[w])``: the latest value of each series of x
    (at one instant, or within w)."""
    if isinstance(node, pp.VectorSelector):
        return node
    if (
        isinstance(node, pp.Call)
        and function_name(node) == "last_over_time"
        and len(node.args) == 1
        and isinstance(node.args[0], pp.MatrixSelector)
    ):
        return node.args[0].vector_selector
    return None


def new_series_check(node: pp.Expr) -> str | None:
    """The metric of a new-series check, or None for any other node: ``x unless x offset d``
    (the series of x that did not exist d ago), or ``last_over_time(x[w]) unless
    last_over_time(x[w] offset d)`` (the series of x with a sample within w, but none within the
    w before d ago: a scrape gap d ago does not make an old series new). Both sides read the
    same way, the left one without an offset, the right one with it, matched on every label.

    The one place a counter may be read outside rate(): the release-health alerts and panels
    count a series born within the window whole, because increase() cannot see what a counter
    counted before its first scrape (a series born at 1 shows no increase).
    """
    if not isinstance(node, pp.BinaryExpr) or str(node.op).lower() != "unless":
        return None
    lhs, rhs = _latest_sample(node.lhs), _latest_sample(node.rhs)
    if lhs is None or rhs is None or type(node.lhs) is not type(node.rhs):
        return None
    if (
        lhs.name != rhs.name
        or lhs.offset is not None
        or rhs.offset is None
        or (node.modifier is not None and node.modifier.matching is not None)
    ):
        return None
    return str(lhs.name)


def counters_read_raw(expr: pp.Expr) -> list[str]:
    """``counters_outside_rate`` except the two operands of a new-series check."""
    found = counters_outside_rate(expr)
    for visit in walk(expr):
        name = new_series_check(visit.node)
        if name is not None:
            found.remove(name)
            found.remove(name)
    return found


def aggregations_dropping(expr: pp.Expr, label: str) -> list[str]:
    """Aggregations that do not keep ``label`` (``sum(x)``, ``sum by (a) (x)``, ``without``)."""
    bad: list[str] = []
    for visit in walk(expr):
        node = visit.node
        if not isinstance(node, pp.AggregateExpr):
            continue
        if aggregation_name(node) in SELECTING_AGGREGATIONS:
            continue
        modifier = node.modifier
        if modifier is None:
            bad.append(f"{aggregation_name(node)} without by()")
        elif modifier.type == pp.AggModifierType.By and label not in modifier.labels:
            bad.append(f"{aggregation_name(node)} by ({', '.join(modifier.labels)})")
        elif modifier.type == pp.AggModifierType.Without and label in modifier.labels:
            bad.append(f"{aggregation_name(node)} without ({', '.join(modifier.labels)})")
    return bad


def _union(a: Labels | None, b: Labels | None) -> Labels | None:
    return None if a is None or b is None else a | b


def output_labels(expr: pp.Expr, recorded: Mapping[str, Labels] | None = None) -> Labels | None:
    """The labels ``expr`` can return (without ``__name__``), or None if unbounded.

    ``recorded`` maps recording-rule names to the labels they are known to carry.
    """
    recorded = recorded or {}
    if isinstance(expr, (pp.NumberLiteral, pp.StringLiteral)):
        return frozenset()
    if isinstance(expr, pp.VectorSelector):
        return recorded.get(str(expr.name)) if expr.name else None
    if isinstance(expr, pp.MatrixSelector):
        return output_labels(expr.vector_selector, recorded)
    if isinstance(expr, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return output_labels(expr.expr, recorded)
    if isinstance(expr, pp.AggregateExpr):
        name = aggregation_name(expr)
        inner = output_labels(expr.expr, recorded)
        if name in SELECTING_AGGREGATIONS:
            return inner
        modifier = expr.modifier
        if modifier is None:
            result: Labels | None = frozenset()
        elif modifier.type == pp.AggModifierType.By:
            result = frozenset(modifier.labels)
        else:
            result = None if inner is None else inner - frozenset(modifier.labels)
        if name == "count_values" and result is not None:
            param = expr.param
            label = getattr(param, "val", None) or str(param).strip('"')
            result = result | {str(label)}
        return result
    if isinstance(expr, pp.Call):
        name = function_name(expr)
        args = list(expr.args)
        if name in ("absent", "absent_over_time"):
            sel = next(iter(selectors(args[0])), None)
            if sel is None:
                return frozenset()
            return frozenset(
                m.name for m in matchers(sel) if m.op == pp.MatchOp.Equal and m.name != "__name__"
            )
        if name in SCALAR_FUNCTIONS:
            return frozenset()
        if name in ("label_replace", "label_join"):
            dst = str(getattr(args[1], "val", None) or str(args[1]).strip('"'))
            return _union(output_labels(args[0], recorded), frozenset({dst}))
        if name == "histogram_quantile":
            inner = output_labels(args[1], recorded)
            return None if inner is None else inner - {"le"}
        vector_args = [a for a in args if not isinstance(a, (pp.NumberLiteral, pp.StringLiteral))]
        return output_labels(vector_args[0], recorded) if vector_args else frozenset()
    if isinstance(expr, pp.BinaryExpr):
        lhs = output_labels(expr.lhs, recorded)
        rhs = output_labels(expr.rhs, recorded)
        op = str(expr.op).lower()
        lhs_scalar = _is_scalar(expr.lhs)
        rhs_scalar = _is_scalar(expr.rhs)
        if lhs_scalar and rhs_scalar:
            return frozenset()
        if lhs_scalar:
            return rhs
        if rhs_scalar:
            return lhs
        if op == "or":
            return _union(lhs, rhs)
        if op in ("and", "unless"):
            return lhs
        bin_modifier = expr.modifier
        matching = bin_modifier.matching if bin_modifier is not None else None
        card = bin_modifier.card if bin_modifier is not None else None
        extra = (
            frozenset(bin_modifier.group_labels or []) if bin_modifier is not None else frozenset()
        )
        if card == pp.VectorMatchCardinality.ManyToOne:
            return _union(lhs, extra)
        if card == pp.VectorMatchCardinality.OneToMany:
            return _union(rhs, extra)
        if matching is None:
            return lhs
        # One-to-one matching: `on (l)` keeps only l, `ignoring (l)` drops l (also for filters).
        if matching.type == pp.LabelModifierType.Include:
            return frozenset(matching.labels)
        return None if lhs is None else lhs - frozenset(matching.labels)
    raise TypeError(f"unsupported PromQL node {type(expr).__name__}: {expr}")


def _is_scalar(expr: pp.Expr) -> bool:
    if isinstance(expr, pp.NumberLiteral):
        return True
    if isinstance(expr, (pp.ParenExpr, pp.UnaryExpr)):
        return _is_scalar(expr.expr)
    if isinstance(expr, pp.Call):
        return function_name(expr) in ("scalar", "time", "pi")
    if isinstance(expr, pp.BinaryExpr):
        return _is_scalar(expr.lhs) and _is_scalar(expr.rhs)
    return False


TEMPLATE_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")


def template_labels(text: str) -> set[str]:
    """Labels referenced as ``$labels.NAME`` in an alert annotation template."""
    return set(TEMPLATE_LABEL.findall(text))
