"""Code run in a fresh interpreter, as a process that adopts the monitor would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str) -> Any:
    """Run ``code`` in a fresh interpreter (no monitor setting from the environment);
    returns the JSON of its last line of output."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
