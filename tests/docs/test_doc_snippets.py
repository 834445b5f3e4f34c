"""Every python block of the README and the docs runs as pasted (issue 22).

Each fenced ``python`` block of README.md and docs/**/*.md runs from a file in a fresh
directory, in a fresh interpreter with the repository on PYTHONPATH and no ERROR_EXPORTER_*
variable set except ``ERROR_EXPORTER_PORT=0`` (a block that serves takes a free port, as
``port=0`` would, so two runs never fight over 9718), with Enter on its stdin (a block that
waits for it ends). A block that is not meant to run says so on the line before its fence,
with the reason a reader sees: ``<!-- not run: needs a Celery broker -->``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.docs import ROOT, doc_files

FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"<!--\s*not run\b(.*?)-->")


def blocks() -> list[tuple[str, str, str | None]]:
    """(where, code, the not-run marker's text or None) for every python block."""
    found = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.search(before)
            where = f"{path.relative_to(ROOT)}:{line}"
            found.append((where, match.group(1), marker.group(1) if marker else None))
    return found


BLOCKS = blocks()
RUNNABLE = [(where, code) for where, code, marker in BLOCKS if marker is None]


def test_the_docs_have_blocks_to_run() -> None:
    where = {w.split(":")[0] for w, _ in RUNNABLE}
    assert "README.md" in where and len(RUNNABLE) >= 6, where


def test_every_block_that_is_not_run_says_why() -> None:
    unexplained = [
        where
        for where, _, marker in BLOCKS
        if marker is not None and len(marker.removeprefix(":").strip()) < 10
    ]
    assert not unexplained, unexplained  # "<!-- not run: <the reason> -->"
    for where, _, marker in BLOCKS:
        assert marker is None or marker.startswith(":"), where


@pytest.mark.parametrize(("where", "code"), RUNNABLE, ids=[w for w, _ in RUNNABLE])
def test_the_block_runs_as_pasted(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(PYTHONPATH=str(ROOT), ERROR_EXPORTER_PORT="0")
    done = subprocess.run(
        [sys.executable, str(script)],
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, f"{where}\n{done.stderr}"
    assert "Traceback" not in done.stderr, f"{where}\n{done.stderr}"
