"""Other projects' own test suites give the same outcomes with the monitor started.

The defect this guards against (issue 19, item 1): with the monitor started, 27 of
structlog's own tests failed, because the logging hook left a monitor frame between the
app's logging call and its handlers and structlog's ``CallsiteParameterAdder`` reported
that frame as the call site. Logging libraries test exactly the contract the monitor must
keep (records, call sites, handlers, formatters), so their suites are run twice, in fresh
interpreters: without the monitor, and with a monitor started (default capture hooks, no
HTTP server) in every interpreter by a ``sitecustomize`` module on ``PYTHONPATH`` (so no
conftest of theirs is touched and their subprocesses start one as well). Each test's
outcome must be the same in both runs.

* structlog: its whole suite, from the sdist of the installed version (``pip download
  --no-binary :all:``), cached under pytest's cache directory.
* loguru ships no tests in its sdist, and no other project's code is kept in this
  repository: its documented ``InterceptHandler`` recipe is run as an app in
  ``tests/scenarios/test_logging_call_sites_stay_the_apps.py`` instead.

A suite that cannot be fetched is a failure in CI (``CI=true``) and a skip elsewhere.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from support.tools import in_ci

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

# Started in every interpreter of the "with the monitor" runs. It writes one line per
# interpreter, so the test knows the monitor did start and its hook is the installed one.
SITECUSTOMIZE = '''
"""Start an error monitor in every interpreter (tests/scenarios/test_third_party_suites.py)."""
import logging
import os

from exporter import ErrorMonitor

_MONITOR = ErrorMonitor(enable_resource_monitoring=False).start(serve=False)
# its logging hook is installed (whichever method of Logger it wraps)
_ours = any(hasattr(f, "_error_exporter_integration") for f in vars(logging.Logger).values())
with open(os.environ["THIRD_PARTY_MONITOR_LOG"], "a", encoding="utf-8") as _log:
    _log.write(f"{os.getpid()} {_ours}\\n")
'''


def unavailable(message: str) -> None:
    """Fail in CI, where a suite that cannot be fetched is a broken image; skip elsewhere."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Under pytest's cache directory (kept between runs) if it is on, else a temp dir."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("third-party-suites"))
    return tmp_path_factory.mktemp("third-party-suites")


def structlog_sources(cache_dir: Path) -> Path:
    """The unpacked sdist of the installed structlog (it ships its tests)."""
    version = importlib.metadata.version("structlog")
    unpacked = cache_dir / f"structlog-{version}"
    if (unpacked / "tests").is_dir() and (unpacked / "pyproject.toml").is_file():
        return unpacked
    downloads = cache_dir / "downloads"
    downloads.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--no-binary", ":all:", f"structlog=={version}", "--dest", str(downloads),
            ],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"could not download structlog {version}'s sdist: {exc}")
    sdist = downloads / f"structlog-{version}.tar.gz"
    if done.returncode != 0 or not sdist.is_file():
        unavailable(f"could not download structlog {version}'s sdist: {done.stderr[-2000:]}")
    partial = cache_dir / f"structlog-{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # 3.12, and the 3.10/3.11 security releases
            archive.extractall(partial, filter="data")
        else:  # pragma: no cover - an old patch release
            archive.extractall(partial)  # the sdist pip just fetched
    (top,) = partial.iterdir()
    if not (top / "tests").is_dir():
        unavailable(f"structlog {version}'s sdist has no tests/")
    shutil.rmtree(unpacked, ignore_errors=True)
    top.rename(unpacked)
    shutil.rmtree(partial, ignore_errors=True)
    return unpacked


def run_suite(
    root: Path, work: Path, label: str, *, with_monitor: bool, extra_path: list[Path],
    pytest_args: list[str],
) -> dict[str, str]:  # fmt: skip
    """Run ``pytest`` in ``root`` in a fresh interpreter; each test id -> its outcome."""
    report = work / f"{label}.xml"
    monitor_log = work / f"{label}-monitors.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ERROR_EXPORTER_", "PYTEST_", "PYTHON"))
    }
    path = [*extra_path, REPO]
    if with_monitor:
        site = work / "monitor-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE), encoding="utf-8")
        path.insert(0, site)
        env["THIRD_PARTY_MONITOR_LOG"] = str(monitor_log)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        f"--junitxml={report}", "-o", "junit_family=xunit2", *pytest_args,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert report.is_file(), f"{label}: pytest wrote no report\n{done.stdout[-3000:]}"
    assert done.returncode in (0, 1), f"{label}: pytest exited {done.returncode}\n{done.stdout}"
    if with_monitor:
        started = monitor_log.read_text(encoding="utf-8").splitlines()
        assert started, f"{label}: no interpreter started a monitor"
        assert all(line.endswith(" True") for line in started), started
    outcomes = outcomes_of(report)
    print(f"{label}: {dict(Counter(outcomes.values()))}")
    return outcomes


def outcomes_of(report: Path) -> dict[str, str]:
    """passed / failed / error / skipped of each test case in a JUnit XML report."""
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcome = "failed" if "failure" in kinds else "error" if "error" in kinds else (
            "skipped" if "skipped" in kinds else "passed"
        )  # fmt: skip
        # a failing teardown adds a second testcase element with the same id
        if outcomes.get(test_id, "passed") == "passed":
            outcomes[test_id] = outcome
    return outcomes


def assert_same_outcomes(without: dict[str, str], with_monitor: dict[str, str]) -> None:
    assert Counter(without.values())["passed"] > 0, without
    changed = {
        test_id: (without.get(test_id), outcome)
        for test_id, outcome in with_monitor.items()
        if without.get(test_id) != outcome
    }
    assert changed == {}, "outcome without the monitor -> with it"
    assert Counter(with_monitor.values()) == Counter(without.values())


def test_structlog_suite_has_the_same_outcomes_with_the_monitor(cache_dir, tmp_path):
    """structlog's stdlib integration and ``CallsiteParameterAdder`` tests are the ones
    that failed when a monitor frame stood between the logging call and the handlers."""
    root = structlog_sources(cache_dir)
    args = ["tests"]
    without = run_suite(
        root, tmp_path, "structlog-without", with_monitor=False, extra_path=[], pytest_args=args
    )
    with_monitor = run_suite(
        root, tmp_path, "structlog-with", with_monitor=True, extra_path=[], pytest_args=args
    )
    assert_same_outcomes(without, with_monitor)
    callsite = [t for t in with_monitor if "TestCallsiteParameterAdder" in t]
    assert callsite and all(with_monitor[t] == "passed" for t in callsite)
