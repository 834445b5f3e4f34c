"""alerts/build.py: the shipped rules and their promtool tests are the `app` rendering of
alerts/templates/*.tmpl, and any other metric namespace renders rules that promtool accepts and
whose unit tests pass."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "alerts"
SCRIPT = ALERTS / "build.py"
RULE_FILES = ("rules.yml", "fleet-rules.yml")
TEST_FILES = ("tests.yml", "fleet-tests.yml")
OTHER_NAMESPACES = ["shop", ""]
# The default metric prefix `app_`; `app_version` is a label (release health), not a metric.
APP_PREFIX = re.compile(r"app_(?!version\b)")


def load_alerts_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("alerts_build", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_alerts_build()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def prefix(namespace: str) -> str:
    return f"{namespace}_" if namespace else ""


def alert_rules(text: str) -> list[dict[str, Any]]:
    data = yaml.safe_load(text)
    return [r for g in data["groups"] for r in g["rules"] if "alert" in r]


# ---------------------------------------------------------------------------- the app rendering


def test_committed_files_equal_the_rendering() -> None:
    rendered = BUILD.build_all()
    assert set(rendered) == {*RULE_FILES, *TEST_FILES}
    for name, text in rendered.items():
        assert (ALERTS / name).read_text() == text, (
            f"alerts/{name} is stale: edit alerts/templates/{name}.tmpl, then run "
            "python alerts/build.py"
        )


def test_check_mode_exit_code(tmp_path: Path) -> None:
    ok = run("--check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stale = run("--check", "--out", str(tmp_path))
    assert stale.returncode == 1
    assert "stale: rules.yml, tests.yml, fleet-rules.yml, fleet-tests.yml" in stale.stderr


def test_the_prefix_is_one_value() -> None:
    """The templates write no metric prefix; the default is the exporter's namespace."""
    from exporter.config import MonitorConfig

    assert BUILD.DEFAULT_NAMESPACE == MonitorConfig().namespace == "app"
    for name in BUILD.FILES:
        template = BUILD.template_path(name).read_text()
        assert not APP_PREFIX.search(template), name
        assert set(re.findall(r"\$\{(\w+)\}", template)) <= {"PREFIX", "NAMESPACE"}, name
        assert "${PREFIX}" in template, name


def test_invalid_namespace_is_refused(tmp_path: Path) -> None:
    proc = run("--namespace", "bad-ns", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "invalid metric namespace" in proc.stderr
    assert not list(tmp_path.iterdir())
    with pytest.raises(KeyError):
        BUILD.render("${PREFIXX}errors_total")


# ---------------------------------------------------------------------------- other namespaces


@pytest.mark.parametrize("namespace", OTHER_NAMESPACES)
def test_another_namespace_changes_only_the_metric_prefix(namespace: str) -> None:
    """Same rules and tests, each metric and recorded name with the other prefix; no `app_`."""
    default = BUILD.build_all()
    renamed = BUILD.build_all(namespace)
    for name, text in renamed.items():
        assert not APP_PREFIX.search(text), name
        expected = yaml.safe_load(APP_PREFIX.sub(prefix(namespace), default[name]))
        assert yaml.safe_load(text) == expected, name


@pytest.mark.parametrize("namespace", OTHER_NAMESPACES)
def test_every_alert_keeps_severity_and_annotations(namespace: str) -> None:
    rules = alert_rules(BUILD.build_all(namespace)["rules.yml"])
    assert rules
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert str(rule["annotations"].get(key, "")).strip(), (rule["alert"], key)


@pytest.mark.tools
@pytest.mark.parametrize("namespace", OTHER_NAMESPACES)
def test_promtool_checks_and_tests_another_namespace(namespace: str, tmp_path: Path) -> None:
    """Rendered with --namespace (tests renamed too): promtool check rules and test rules pass."""
    promtool = require_tool("promtool")
    written = run("--namespace", namespace, "--out", str(tmp_path))
    assert written.returncode == 0, written.stdout + written.stderr
    for name in RULE_FILES:
        text = (tmp_path / name).read_text()
        assert not APP_PREFIX.search(text)
        if namespace:
            assert f"{namespace}_errors_total" in text
        check = subprocess.run(
            [promtool, "check", "rules", name],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        count = sum(len(g["rules"]) for g in yaml.safe_load(text)["groups"])
        assert f"SUCCESS: {count} rules found" in check.stdout
        assert "duplicate" not in (check.stdout + check.stderr).lower()
    for name in TEST_FILES:
        assert not APP_PREFIX.search((tmp_path / name).read_text())
        proc = subprocess.run(
            [promtool, "test", "rules", name],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS" in proc.stdout
