"""The newcomer's hour (issue 15): what a new user meets first, each checked the way they meet
it: the command line in a subprocess (a terminal through pexpect), the Makefile through make,
the packaging through a real build."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pexpect
import pytest

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from exporter.model import json_text

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CLI = BIN / "error-exporter"
QUIET = HOOKS_OFF
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
BARE_PATH = "/usr/local/bin:/usr/bin:/bin"  # a fresh shell: no venv activated


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k not in ("COLUMNS", "LINES")
    }
    env["PATH"] = BARE_PATH
    env.update(extra)
    return env


def cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=clean_env(**env),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shown(path: Path) -> str:
    """How the demo shows a path run from the repository: relative when inside it."""
    relative = os.path.relpath(path, REPO)
    return str(path) if relative.startswith("..") else relative


# -- two groups raised by the same line, called from two places -----------------------------


def parse_setting(text: str) -> int:
    return int(text)


def load_ecu_settings() -> int:
    return parse_setting("ecu")


def load_can_settings() -> int:
    return parse_setting("can")


def record_twins(monitor: ErrorMonitor) -> None:
    for load, component in ((load_ecu_settings, "ECUControl"), (load_can_settings, "CANBus")):
        for i in range(3):
            try:
                load()
            except ValueError as exc:
                monitor.record_error(
                    exc,
                    component=component,
                    plugin="weather",
                    operation="load_settings",
                    user_id=f"u{i}",
                )
    try:
        raise ConnectionError("the dyno did not answer " * 6)
    except ConnectionError as exc:
        monitor.record_error(exc, component="MainWindowWithAVeryLongComponentName", plugin="stocks")
    assert monitor.flush(5.0)


@pytest.fixture
def twins() -> Iterator[ErrorMonitor]:
    monitor = ErrorMonitor(**QUIET, serve=True, port=0, pattern_threshold=2)
    monitor.start()
    record_twins(monitor)
    yield monitor
    monitor.stop(timeout=2.0)


# -- error-exporter --version ----------------------------------------------------------------


def test_version_from_the_console_script_and_python_m() -> None:
    expected = version("error-exporter")
    for command in ([str(CLI), "--version"], [sys.executable, "-m", "exporter", "--version"]):
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, cwd=REPO, env=clean_env()
        )
        assert done.returncode == 0, done.stderr
        assert re.fullmatch(
            rf"error-exporter {re.escape(expected)} \(Python 3\.\d+\.\d+\)\n", done.stdout
        ), done.stdout


# -- make demo on a busy port ----------------------------------------------------------------


def test_a_busy_port_is_said_once_with_how_to_pick_another() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("demo", "--port", str(port), "--no-live", "--duration", "2")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0] == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert done.stderr.count(f"127.0.0.1:{port}") == 1  # said once
    for advice in (
        "make demo PORT=9800",
        f"{shown(CLI)} demo --port 9800",
        "ERROR_EXPORTER_PORT=9800",
    ):
        assert advice in lines[1], lines[1]


def test_the_advice_works_variable_and_make() -> None:
    port = free_port()
    done = cli("demo", "--no-live", "--duration", "1", ERROR_EXPORTER_PORT=str(port))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].endswith(f"http://127.0.0.1:{port}/metrics")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        ["make", "-n", "demo", "PORT=9800"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "/error-exporter demo --port 9800" in dry.stdout
    plain = subprocess.run(
        ["make", "-n", "demo"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "PORT": ""},
    )
    assert re.search(r"/error-exporter demo\s*$", plain.stdout, re.MULTILINE), plain.stdout


# -- the demo banner's commands work as printed ----------------------------------------------


@pytest.mark.parametrize("launcher", ["console script", "python -m"])
def test_the_demo_banner_commands_work_as_printed(tmp_path: Path, launcher: str) -> None:
    port = free_port()
    start = (
        [shown(CLI)]
        if launcher == "console script"
        else [shown(Path(sys.executable)), "-m", "exporter"]
    )
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [*start, "demo", "--port", str(port), "--no-live", "--rate", "20", "--duration", "60"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=clean_env(),
        )
    try:
        deadline = time.monotonic() + 30
        while "Press Ctrl-C" not in log.read_text() and time.monotonic() < deadline:
            assert demo.poll() is None, log.read_text()
            time.sleep(0.1)
        banner = log.read_text().split("Press Ctrl-C")[0]
        commands = [
            line.split(": ", 1)[-1].strip() for line in banner.splitlines() if " --url " in line
        ]
        assert [c.split(" --url")[0].rsplit(" ", 1)[1] for c in commands] == [
            "watch",
            "analyze",
            "export",
        ], banner
        assert all(c.startswith(" ".join(start) + " ") for c in commands), banner
        time.sleep(1.5)  # some errors to look at
        extra = {"watch": " --no-rich --iterations 1", "analyze": "", "export": ""}
        for command in commands:
            name = command.split(" --url")[0].rsplit(" ", 1)[1]
            line = command.replace("-o errors.json", f"-o {tmp_path / 'errors.json'}")
            done = subprocess.run(
                line + extra[name],
                shell=True,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
                env=clean_env(),
            )
            assert done.returncode == 0, (line, done.stdout[-500:], done.stderr[-2000:])
        assert json.loads((tmp_path / "errors.json").read_text())["all_records"]
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=20)


def test_the_banner_uses_the_bare_command_when_it_is_on_path() -> None:
    from exporter.cli.demo import cli_command

    assert cli_command(str(CLI), cwd=str(REPO)) in ("error-exporter", shown(CLI))
    if shutil.which("error-exporter") == str(CLI):
        assert cli_command(str(CLI), cwd=str(REPO)) == "error-exporter"
    assert cli_command("/somewhere/exporter/__main__.py", cwd="/").endswith(" -m exporter")


# -- watch and analyze at 80 columns ---------------------------------------------------------


def header_cells(text: str) -> list[str]:
    """The words of every table header row (rich's heavy header and the plain panels')."""
    return [
        line
        for line in text.splitlines()
        if "┃" in line or re.search(r"\b(count|pattern|plugin|age)\s{2,}\S", line)
    ]


def test_analyze_fits_80_columns_when_piped(twins: ErrorMonitor, tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text(json_text(twins.export_data(), indent=2, ascii_only=False))
    done = cli("analyze", "--file", str(export))  # stdout is a pipe: rich's width is 80
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    headers = " ".join(header_cells(done.stdout))
    for name in (
        "count",
        "bar / trend",
        "error",
        "severity",
        "users",
        "pattern",
        "kind",
        "last seen",
        "sample",
    ):
        assert f" {name} " in headers, (name, headers)
    assert "…" not in headers  # no cut header like "co…"
    # the two ValueErrors raised by parse_setting are told apart by their callers
    error_column = " ".join(
        line.split("│")[4].strip() for line in lines if line.count("│") == 7
    )  # the top errors table's "error" cells
    assert re.search(r"load_ecu_settings \(test_new_user.py:\d+\) → ", error_column), lines
    assert re.search(r"load_can_settings \(test_new_user.py:\d+\) → ", error_column), lines
    wide = cli("analyze", "--file", str(export), COLUMNS="160")
    assert max(len(line) for line in wide.stdout.splitlines()) > 80  # it follows the width


def test_watch_fits_80_columns_in_a_terminal(twins: ErrorMonitor) -> None:
    child = pexpect.spawn(
        str(CLI),
        ["watch", "--url", twins.server.url, "--iterations", "1"],
        cwd=str(REPO),
        env=clean_env(TERM="xterm-256color"),
        dimensions=(60, 80),
        encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    screen = ANSI.sub("", child.before or "").replace("\r", "")
    final = screen[screen.rfind("error-exporter watch") :]
    lines = final.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, final
    for header in (
        r"count\s+type\s+severity\s+where\s+location",
        r"plugin\s+status\s+recent\s+total",
        r"pattern\s+count\s+severity",
    ):
        assert re.search(header, final), (header, final)
    assert not re.search(r"(?<![\w.])\w{1,4}…", " ".join(header_cells(final))), final
    # the two ValueErrors raised by parse_setting: their callers come first, so they show
    assert re.search(r"│\s+3\s+ValueError .* load_ecu_settings", final), final
    assert re.search(r"│\s+3\s+ValueError .* load_can_settings", final), final


def test_watch_tells_apart_groups_raised_by_the_same_line(twins: ErrorMonitor) -> None:
    from exporter.cli import told_apart

    groups = [g for g in twins.list_groups() if g["error_type"] == "ValueError"]
    assert len(groups) == 2 and groups[0]["file_path"] == groups[1]["file_path"]
    assert groups[0]["line_number"] == groups[1]["line_number"]
    places = told_apart(groups)
    callers = {g["frames"][1]["function_name"] for g in groups}
    assert callers == {"load_ecu_settings", "load_can_settings"}
    for group, place in zip(groups, places, strict=True):
        caller = group["frames"][1]["function_name"]
        assert place.startswith(f"{caller} (test_new_user.py:")
        assert place.endswith(f"scenarios/test_new_user.py:{group['line_number']} parse_setting")


# -- export --since --------------------------------------------------------------------------


def test_export_since_is_checked_before_asking_the_server(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: asking would fail with 1
    out = str(tmp_path / "x.json")
    refused = cli("export", "--url", closed, "-o", out, "--since", "yesterday")
    assert refused.returncode == 2
    for form in (
        "30s",
        "15m",
        "2h",
        "1d",
        "epoch seconds",
        "1700000000",
        "ISO-8601",
        "2024-05-01T12:00:00+00:00",
    ):
        assert form in refused.stderr, form
    for good in (
        "15m",
        "2h",
        "1d",
        "1700000000",
        "2024-05-01T12:00:00+00:00",
        "2024-05-01T12:00:00",
    ):
        asked = cli("export", "--url", closed, "-o", out, "--since", good, "--until", good)
        assert asked.returncode == 1 and "cannot reach" in asked.stderr, (good, asked.stderr)
    assert not Path(out).exists()


# -- check-config ----------------------------------------------------------------------------


def test_check_config_lists_severities_and_names_the_yaml_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yml"
    bad.write_text("default_severity: urgent\nseverity_by_type:\n  KeyError: huge\n")
    done = cli("check-config", str(bad))
    assert done.returncode == 2
    problems = [line.strip() for line in done.stdout.splitlines()[1:]]
    assert len(problems) == 2
    for problem in problems:
        assert "low, medium, high, critical" in problem, problem
    broken = tmp_path / "broken.yml"
    broken.write_text("port: 9718\nscrub_keys: [password, token\nnamespace: app\n")
    done = cli("check-config", str(broken))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {broken}, line 3, column ")
    assert "not valid YAML" in done.stderr and "from line 2" in done.stderr
    assert "\n" not in done.stderr.strip()  # one line, not PyYAML's multi-line dump


# -- packaging -------------------------------------------------------------------------------


def test_pyproject_license_is_an_spdx_expression() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    [setuptools] = [r for r in requires if r.startswith("setuptools")]
    assert int(setuptools.split(">=")[1].split(".")[0]) >= 77  # PEP 639 license strings
    classifiers = project["project"].get("classifiers", [])
    assert not any(c.startswith("License ::") for c in classifiers)


@pytest.mark.slow
def test_the_package_builds_without_a_license_warning(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-v", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert not re.search(r"(?i)warning.*licen[cs]e|licen[cs]e.*deprecat", output), output
    import zipfile

    [wheel] = tmp_path.glob("error_exporter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        assert "License-Expression: MIT" in archive.read(metadata).decode()


def make_dry(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["make", "-n", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=directory,
        env={**os.environ, "PORT": ""},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_demo_installs_the_app_and_make_test_adds_the_dev_tools(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    fresh = make_dry(tmp_path, "demo")
    assert "pip install --quiet -e .\n" in fresh and "[dev]" not in fresh
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / ".installed").touch()
    later = (tmp_path / "pyproject.toml").stat().st_mtime + 10
    os.utime(venv / ".installed", (later, later))
    assert "pip install" not in make_dry(tmp_path, "demo")  # installed: straight to the demo
    after_demo = make_dry(tmp_path, "test")
    assert "pip install --quiet -e '.[dev]'" in after_demo  # make demo, then make test
    assert "pip install --quiet -e .\n" not in after_demo
    (venv / ".installed-dev").touch()
    os.utime(venv / ".installed-dev", (later + 1, later + 1))
    assert "pip install" not in make_dry(tmp_path, "lint")
    os.utime(tmp_path / "pyproject.toml", (later + 5, later + 5))  # dependencies changed
    changed = make_dry(tmp_path, "test")
    assert "pip install --quiet -e .\n" in changed and "'.[dev]'" in changed
    assert "make test" in (REPO / ".ci/run").read_text()
