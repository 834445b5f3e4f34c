"""The README and the docs stay true: every option, metric family, route and command they must
list, each in its reference page (docs/), and the README's five-minute path."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from support.docs import README, ROOT, all_docs, metric_families, page, python_blocks

from exporter.config import ENV_PREFIX, OPTION_NAMES

CONFIGURATION = page("configuration.md")
CONTRACT_FAMILIES = list(metric_families())


def test_every_configuration_option_is_documented_with_its_environment_variable() -> None:
    table = [line for line in CONFIGURATION.splitlines() if line.startswith("| `")]
    rows = {line.split("`")[1]: line for line in table}
    missing = [n for n in OPTION_NAMES if n not in rows]
    missing_env = [n for n in OPTION_NAMES if f"{ENV_PREFIX}{n.upper()}" not in rows.get(n, "")]
    assert not missing and not missing_env, (missing, missing_env)


def test_every_metric_family_is_in_the_metric_reference() -> None:
    assert len(CONTRACT_FAMILIES) >= 25
    reference = page("metrics.md")
    assert reference.startswith("# Metric reference\n")
    missing = [family for family in CONTRACT_FAMILIES if f"`{family}`" not in reference]
    assert not missing, missing


def test_every_route_is_in_the_api_reference() -> None:
    reference = page("api.md")
    assert reference.startswith("# HTTP API reference\n")
    for route in (
        "/metrics",
        "/healthz",
        "`GET /api/v1/`",
        "/api/v1/statistics",
        "/api/v1/analysis",
        "/api/v1/errors",
        "/api/v1/errors/{error_id}",
        "/api/v1/patterns",
        "/api/v1/plugins/{plugin}/health",
        "/api/v1/export",
        "/api/v1/openapi.json",
    ):
        assert route in reference, route


def test_the_two_commands_exist_as_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test", "stack", "bench", "docs", "lint", "unit", "compat"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert "make test" in ci and "set -euo pipefail" in ci


def test_make_test_builds_the_docs_strictly() -> None:
    """CI's make test fails on a broken link or anchor of the docs site."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    [test] = re.findall(r"^test:(.*)$", makefile, re.MULTILINE)
    assert " docs" in test
    [recipe] = re.findall(r"^docs:.*\n\t(.*)$", makefile, re.MULTILINE)
    assert "mkdocs build --strict" in recipe


def test_sections_come_in_the_documented_order() -> None:
    order = [
        "## The two commands",
        "## The first minute",
        "## Integrating it",
        "## What you get",
        "## Where to go next",
    ]
    positions = [README.index(heading) for heading in order]
    assert positions == sorted(positions)


# What left the README (issue 22): each part is a page of docs/, in the site's nav, and the
# README's "Where to go next" links to it.
REFERENCE_PAGES = {
    "configuration.md": "# Configuration reference",
    "metrics.md": "# Metric reference",
    "api.md": "# HTTP API reference",
    "cli.md": "# CLI reference",
    "reference.md": "# Python API reference",
    "dashboards-and-alerts.md": "# Dashboards and alerts",
    "release-health.md": "# Release health",
    "deployment.md": "# Deploying",
    "scaling.md": "# Scaling: worker processes, web frameworks, fleets",
    "migration.md": "# Migrating from the two in-house systems",
    "performance.md": "# Performance",
    "guarantees.md": "# Guarantees",
    "libraries.md": "# Libraries and what they do",
}


def nav_pages(nav: list) -> list[str]:
    found: list[str] = []
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            found += nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_every_reference_page_is_in_the_nav_and_linked_from_the_readme() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = nav_pages(config["nav"])
    next_steps = section("## Where to go next")
    for name, title in REFERENCE_PAGES.items():
        assert page(name).startswith(title + "\n"), name
        assert name in nav, name
        assert f"](docs/{name})" in next_steps, name
    assert config["strict"] is True


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readmes_own_links_lead_somewhere() -> None:
    """README, CONTRIBUTING and CHANGELOG are not built by MkDocs: their relative links and
    anchors are checked here."""
    for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#]*)(?:#[^)]*)?\)", text):
            if target and not target.startswith(("http://", "https://")):
                assert (ROOT / target).exists(), (name, target)
        for target, anchor in re.findall(r"\]\(([^)#]*)#([^)]*)\)", text):
            linked = (ROOT / target).read_text(encoding="utf-8") if target else text
            anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", linked, re.MULTILINE)}
            assert anchor in anchors, (name, target, anchor)
    assert len(README.encode("utf-8")) < 15_000  # read in five minutes


# -- the newcomer's path through the README (issue 15) ---------------------------------------


def section(heading: str) -> str:
    return README.split(heading, 1)[1].split("\n## ", 1)[0]


def test_the_first_minute_comes_right_after_the_two_commands() -> None:
    headings = re.findall(r"^## .+$", README, re.MULTILINE)
    start = headings.index("## The two commands")
    assert headings[start + 1 : start + 3] == ["## The first minute", "## Integrating it"]
    minute = section("## The first minute")
    for seen in (
        "/metrics",
        "/api/v1/",
        "live view",
        "pattern",
        "unhealthy",
        ".venv/bin/error-exporter watch",
        ".venv/bin/error-exporter analyze",
        ".venv/bin/error-exporter export -o errors.json",
        "Ctrl-C",
    ):
        assert seen in minute, seen
    assert "A first session" not in all_docs()  # moved here from the CLI reference


def integration_snippet() -> str:
    [code] = re.findall(r"```python\n(.*?)```", section("## Integrating it"), re.DOTALL)[:1]
    return code


def test_the_integration_snippet_runs_as_pasted(tmp_path: Path) -> None:
    """Pasted into a file and run: it serves, records both errors, and ends on Enter."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    script = tmp_path / "app.py"
    script.write_text(integration_snippet())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERROR_EXPORTER_")}
    env.update(ERROR_EXPORTER_PORT=str(port), PYTHONPATH=str(ROOT))
    app = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        groups: list[dict] = []
        deadline = time.monotonic() + 30
        while len(groups) < 2 and time.monotonic() < deadline:
            assert app.poll() is None, app.communicate()
            try:
                with urllib.request.urlopen(f"{base}/errors", timeout=5) as answer:
                    groups = json.loads(answer.read())["errors"]
            except OSError:
                time.sleep(0.2)
        by_type = {g["error_type"]: g for g in groups}
        assert set(by_type) == {"TimeoutError", "ValueError"}, groups
        assert (by_type["TimeoutError"]["component"], by_type["TimeoutError"]["plugin"]) == (
            "CANInterface",
            "weather",
        )
        assert by_type["ValueError"]["plugin"] is None
        with urllib.request.urlopen(
            f"{base}/errors/{by_type['TimeoutError']['error_id']}", timeout=5
        ) as answer:
            report = json.loads(answer.read())["report"]
        # what the README says @handle_errors leaves after re-raising
        assert (report["handled"], report["mechanism"]) == (True, "record_error")
        assert report["breadcrumbs"][-1]["action"] == "load_ecu_config"
        out, err = app.communicate("\n", timeout=30)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
    assert app.returncode == 0, err
    assert "http://127.0.0.1:9718/api/v1/errors" in out and "Traceback" not in err


def test_the_readme_says_what_to_look_at_and_how_long_the_server_lives() -> None:
    text = " ".join(section("## Integrating it").split())
    assert "http://127.0.0.1:9718/api/v1/errors" in text and "error-exporter watch" in text
    assert "as long as the process runs" in text
    for claim in (
        "**re-raise**",
        '"handled": true',
        '"mechanism": "record_error"',
        '"handled": false',
    ):
        assert claim in text, claim


def test_the_readme_points_to_both_seed_examples() -> None:
    text = section("## Integrating it")
    assert "](examples/)" in text
    for example in ("seed_000_service.py", "seed_003_aggregator.py"):
        assert f"](examples/{example})" in text and (ROOT / "examples" / example).is_file()


def test_the_introduction_says_what_the_metric_labels_are() -> None:
    kind, labels = metric_families()["app_operation_duration_seconds"]
    assert (kind, labels) == ("histogram", {"component", "plugin", "operation", "outcome"})
    bullet = " ".join(section("## What you get").split("- **A JSON API**")[0].split())
    assert "counters labelled by type, component, plugin and severity" in bullet
    assert "histograms of the calls you wrap (by component, plugin, operation and outcome" in bullet
    assert "histograms labelled by type" not in all_docs()


# -- issue 19: the smaller examples (now in docs/) run as pasted -----------------------------


def python_block(containing: str) -> str:
    """The one python block of the README or the docs that contains ``containing``."""
    [code] = [c for c in python_blocks(all_docs()) if containing in c]
    return code


def run_snippet(code: str, tmp_path: Path) -> str:
    """Run as a user would, from a file in a fresh directory, with no ERROR_EXPORTER_* set."""
    import os
    import subprocess
    import sys

    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_the_capture_context_and_background_job_example_runs(tmp_path: Path) -> None:
    out = run_snippet(python_block("WorkScope("), tmp_path)
    assert sorted(out.splitlines()) == [
        "OSError record_error {'file': 'run-12.csv', 'rows': 5000}",
        "ValueError tasks {'image_id': 'img-7'}",
    ], out


def test_the_port_0_example_prints_the_real_port(tmp_path: Path) -> None:
    port, url = run_snippet(python_block("port=0"), tmp_path).split()
    assert int(port) > 0 and url == f"http://127.0.0.1:{port}"


def test_the_durable_store_example_has_its_import(tmp_path: Path) -> None:
    code = python_block("store_path=")
    assert code.startswith("from exporter import ErrorMonitor\n")
    store = tmp_path / "errors.sqlite"
    run_snippet(
        code.replace("/var/lib/myapp/errors.sqlite", str(store)) + "monitor.stop()\n", tmp_path
    )
    assert store.is_file()


def test_what_you_get_names_every_cli_command() -> None:
    import argparse

    from exporter.cli.main import build_parser

    [commands] = [
        a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ]
    line = " ".join(section("## What you get").split("- **A CLI**")[1].split())
    assert set(commands) >= {"resolve", "serve"}
    missing = [c for c in commands if f" {c} " not in line.replace("`", " ").replace(":", " ")]
    assert not missing, missing
