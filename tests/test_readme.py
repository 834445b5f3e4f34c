"""The README stays true: every option, metric family, route and command it must list."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.config import ENV_PREFIX, OPTION_NAMES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONTRACT_FAMILIES = re.findall(r"^\| (app_[a-z_]+) \|", (ROOT / "docs/contracts.md").read_text(),
                               re.MULTILINE)


def test_every_configuration_option_is_documented_with_its_environment_variable() -> None:
    missing = [n for n in OPTION_NAMES if f"`{n}`" not in README]
    missing_env = [n for n in OPTION_NAMES if f"{ENV_PREFIX}{n.upper()}" not in README]
    assert not missing and not missing_env, (missing, missing_env)


def test_every_metric_family_is_in_the_metric_reference() -> None:
    assert len(CONTRACT_FAMILIES) >= 25
    section = README.split("## Metric reference", 1)[1].split("\n## ", 1)[0]
    missing = [family for family in CONTRACT_FAMILIES if f"`{family}`" not in section]
    assert not missing, missing


def test_every_route_is_in_the_api_reference() -> None:
    section = README.split("## API reference", 1)[1].split("\n## ", 1)[0]
    for route in ("/metrics", "/healthz", "/api/v1/statistics", "/api/v1/analysis",
                  "/api/v1/errors", "/api/v1/errors/{error_id}", "/api/v1/patterns",
                  "/api/v1/plugins/{plugin}/health", "/api/v1/export", "/api/v1/openapi.json"):
        assert route in section, route


def test_the_two_commands_exist_as_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test", "stack", "bench"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert "make test" in ci and "set -euo pipefail" in ci


def test_sections_come_in_the_documented_order() -> None:
    order = ["## The two commands", "## Integrating it", "## What you get",
             "## Configuration reference", "## Metric reference", "## API reference",
             "## CLI reference", "## Deploying", "## Migrating", "## Architecture",
             "## Performance", "## Guarantees"]
    positions = [README.index(heading) for heading in order]
    assert positions == sorted(positions)
