"""The fleet recording rules (alerts/fleet-rules.yml): promtool, naming, aggregation, coverage."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest
import yaml
from support.docs import metric_families
from support.promql import aggregations_dropping, counters_outside_rate, output_labels, selectors
from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "alerts"
FLEET_RULES = ALERTS / "fleet-rules.yml"
FLEET_TESTS = ALERTS / "fleet-tests.yml"
INSTANCE_RULES = ALERTS / "rules.yml"
SCALING = ROOT / "docs" / "scaling.md"

RULES: dict[str, Any] = yaml.safe_load(FLEET_RULES.read_text())
RECORDS: list[dict[str, Any]] = [r for g in RULES["groups"] for r in g["rules"]]
NAME = re.compile(r"^job(_[a-z]+)*:app_[a-z0-9_]+:[a-z0-9_]+$")
PER_PROCESS_LABELS = {"instance", "pid"}


def record_id(rule: dict[str, Any]) -> str:
    return str(rule["record"])


@pytest.mark.tools
def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run(
        [promtool, "check", "rules", str(FLEET_RULES)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(RECORDS)} rules found" in proc.stdout
    assert "duplicate" not in (proc.stdout + proc.stderr).lower()


@pytest.mark.tools
def test_promtool_test_rules() -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run(
        [promtool, "test", "rules", str(FLEET_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ALERTS,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_only_recording_rules_in_one_group() -> None:
    assert [g["name"] for g in RULES["groups"]] == ["error-exporter.fleet"]
    assert all(set(rule) == {"record", "expr"} for rule in RECORDS)


@pytest.mark.parametrize("rule", RECORDS, ids=record_id)
def test_name_follows_level_metric_operations(rule: dict[str, Any]) -> None:
    name = rule["record"]
    assert NAME.match(name), name
    labels = output_labels(pp.parse(rule["expr"]))
    assert labels is not None, "output labels must be bounded"
    # the level names the labels the rule keeps (le of a bucket rate is implied by the metric)
    others = sorted(labels - {"job", "le"})
    levels = {"_".join(["job", *order]) for order in itertools.permutations(others)}
    assert name.split(":")[0] in levels, (name, sorted(labels))


@pytest.mark.parametrize("rule", RECORDS, ids=record_id)
def test_aggregates_instances_and_processes_away_but_keeps_job(rule: dict[str, Any]) -> None:
    expr = pp.parse(rule["expr"])
    labels = output_labels(expr)
    assert labels is not None and "job" in labels
    assert not labels & PER_PROCESS_LABELS
    assert aggregations_dropping(expr, "job") == []
    assert counters_outside_rate(expr) == []


@pytest.mark.parametrize("rule", RECORDS, ids=record_id)
def test_reads_only_families_of_the_contract(rule: dict[str, Any]) -> None:
    families = set(metric_families())
    for selector in selectors(pp.parse(rule["expr"])):
        name = str(selector.name)
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in families or base in families or name + "_total" in families, name


def test_no_name_clashes_with_the_instance_rules() -> None:
    instance = yaml.safe_load(INSTANCE_RULES.read_text())
    theirs = {r.get("record") for g in instance["groups"] for r in g["rules"]}
    ours = [r["record"] for r in RECORDS]
    assert len(ours) == len(set(ours))
    assert not set(ours) & theirs


def test_every_rule_is_unit_tested() -> None:
    tests = yaml.safe_load(FLEET_TESTS.read_text())
    assert tests["rule_files"] == [FLEET_RULES.name]
    checked = {
        case["expr"]
        for test in tests["tests"]
        for case in test.get("promql_expr_test", [])
        if case.get("exp_samples")
    }
    assert {r["record"] for r in RECORDS} <= checked


def test_scaling_doc_federates_what_the_rules_record() -> None:
    text = SCALING.read_text()
    assert "alerts/fleet-rules.yml" in text
    match = re.search(r"'match\[\]':\s*\n\s*- '(\{__name__=~\"[^']+\"\})'", text)
    assert match, "the federation snippet is missing"
    pattern = re.search(r'__name__=~"([^"]+)"', match.group(1))
    assert pattern is not None
    regex = re.compile(pattern.group(1))
    assert all(regex.fullmatch(r["record"]) for r in RECORDS)
