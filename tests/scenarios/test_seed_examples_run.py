"""The seed examples run to completion as their users would run them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_examples_change_only_imports():
    for name, old_import in (
        ("seed_000_service.py", "services.error_monitoring_service"),
        ("seed_003_aggregator.py", "src.error_aggregator"),
    ):
        text = (EXAMPLES / name).read_text()
        assert old_import in text  # documented in the docstring
        imports = [line for line in text.splitlines() if line.startswith(("from ", "import "))]
        assert not any("services." in line or "src." in line for line in imports)
        assert any(line.startswith("from exporter import ") for line in imports)


def test_seed_000_example(tmp_path):
    done = run("seed_000_service.py", cwd=tmp_path)
    out = done.stdout
    assert "Monitor started: True" in out
    assert "Total errors: 6" in out
    assert 'By severity: {"critical": 1, "high": 1, "medium": 4, "low": 0}' in out
    assert 'By component: {"": 1, "CANInterface": 1, "DynoSession": 1, "ECUControl": 3}' in out
    assert (
        'By type: {"ConnectionError": 1, "KeyError": 1, "MemoryError": 1, "ValueError": 3}' in out
    )
    assert "Unique errors: 4" in out
    # callbacks print from the monitor's thread, so their lines may interleave with these:
    # check substrings, not whole lines
    assert re.search(r"3x ValueError \[medium/medium\] in load_ecu_config line \d+", out), out
    # Python 3.10's code objects carry no qualified name: the function's own name there
    qualified = sys.version_info >= (3, 11)
    where = "CANBus.read_frame" if qualified else "read_frame"
    assert f"1x ConnectionError [high/high] in {where}" in out
    where = "main.<locals>.poll_sensors" if qualified else "poll_sensors"
    assert f"1x KeyError [medium/medium] in {where}" in out
    assert "1x MemoryError [critical/critical] in main line" in out
    # callbacks (run on the monitor's callback thread, delivered before exit)
    assert out.count("Error detected: ValueError in ECUControl") == 3
    assert out.count("Error detected: ConnectionError in CANInterface") == 1
    assert out.count("Error detected: KeyError in unknown") == 1
    assert out.count("ALERT: critical MemoryError: dyno log buffer exhausted") == 1
    assert "Resource snapshot: " in out
    # terminal output: one line per new group on stderr (other threads write there too, so
    # lines of different writers may interleave: count, do not split)
    assert done.stderr.count(" id=") == 4, done.stderr
    # the default hooks still ran after ours
    assert "ERROR racing_tuner: lost the CAN bus" in done.stderr
    # Python's own thread hook writes a line in pieces ("Exception in thread ", the name,
    # ":"), and the monitor's thread may write between them: look for the pieces
    assert "sensor-poller" in done.stderr and "Exception in thread" in done.stderr
    assert "KeyError:" in done.stderr and "'wideband_afr'" in done.stderr


def test_seed_003_example(tmp_path):
    export_dir = tmp_path / "exports"
    done = run("seed_003_aggregator.py", str(export_dir), cwd=tmp_path)
    out = done.stdout
    assert out.count("weather.update failed: PluginError: weather API unreachable") == 4
    assert (
        "tick 2: stocks.update failed: ValueError: could not convert string to float: 'n/a'" in out
    )
    assert "Total errors: 5" in out
    assert 'By type: {"PluginError": 4, "ValueError": 1}' in out
    assert 'By plugin: {"stocks": {"ValueError": 1}, "weather": {"PluginError": 4}}' in out
    assert "Active pattern: PluginError count=4 severity=warning" in out
    assert (
        'Last error context: {"api_key": "[Filtered]", "endpoint": "/v1/forecast", "tick": 3}'
    ) in out
    assert "weather: degraded (4 errors, 4 recent)" in out
    assert "stocks: degraded (1 errors, 1 recent)" in out
    assert "clock: healthy (0 errors, 0 recent)" in out
    assert "Cleared old records: 0" in out
    assert "Exported 5 records to manual_export.json" in out
    assert out.count("Pattern detected: PluginError x3 (warning) in ['weather']") == 1
    assert "sk-do-not-log" not in out + done.stderr

    manual = json.loads((export_dir / "manual_export.json").read_text())
    assert set(manual) >= {"exported_at", "summary", "all_records"}
    assert len(manual["all_records"]) == 5
    [auto] = sorted(export_dir.glob("errors_*.json"))  # the pattern's auto-export
    assert json.loads(auto.read_text())["summary"]["active_patterns"]["PluginError"]["count"] >= 3
    assert "sk-do-not-log" not in auto.read_text() + json.dumps(manual)
