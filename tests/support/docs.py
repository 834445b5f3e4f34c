"""Where the documentation lives: the README (the five-minute tour) and the docs/ pages.

The tests that keep the docs true read them through here, so a page that moves moves once.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def page(name: str) -> str:
    """The text of ``docs/<name>``."""
    return (DOCS / name).read_text(encoding="utf-8")


def doc_files() -> list[Path]:
    """README.md and every Markdown file under docs/, README first."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def all_docs() -> str:
    """README.md and every docs/ page, one text (for "is it documented somewhere")."""
    return "\n".join(p.read_text(encoding="utf-8") for p in doc_files())


def section(text: str, heading: str) -> str:
    """From ``heading`` to the next heading of the same level or higher."""
    level = len(heading) - len(heading.lstrip("#"))
    body = text.split(heading + "\n", 1)[1]
    end = re.search(rf"^#{{1,{level}}} ", body, re.MULTILINE)
    return body[: end.start()] if end else body


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def metric_families() -> dict[str, tuple[str, frozenset[str]]]:
    """{family: (type, label names)} from the metric tables of docs/metrics.md: the one
    reference the exposition, the Prometheus scrape and the fleet rules are checked against."""
    families: dict[str, tuple[str, frozenset[str]]] = {}
    for line in page("metrics.md").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"app_[a-z_]+", cells[0]):
            continue
        labels_text = re.sub(r"\([^)]*\)", "", cells[2]).split(";")[0]
        labels = frozenset(
            m.group(0)
            for part in labels_text.split(",")
            if (m := re.match(r"[a-z_]+", part.strip())) and m.group(0) != "none"
        )
        families[cells[0]] = (cells[1].split()[0], labels)
    assert families, "no metric table in docs/metrics.md"
    return families
