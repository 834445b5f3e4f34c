"""Render the shipped Prometheus rules and their promtool unit tests for a metric namespace.

    python alerts/build.py                              # (re)write alerts/*.yml (namespace app)
    python alerts/build.py --check                      # exit 1 if a committed file is stale
    python alerts/build.py --namespace shop --out DIR   # for an exporter with namespace="shop"

The sources are alerts/templates/*.yml.tmpl; each metric name is written there as
``${PREFIX}errors_total`` (recorded series as ``job:${PREFIX}errors:rate5m``) and ``${NAMESPACE}``
is the namespace itself (comments). The prefix is ``<namespace>_``, or nothing for the empty
namespace, as in the exporter. The committed alerts/*.yml are the rendering for ``app``, the
exporter's default. Only the standard library is needed.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
DEFAULT_NAMESPACE = "app"  # the exporter's default `namespace` (exporter/config.py)
# Rules first: each tests file names its rules file (rule_files:) relative to itself.
FILES = ("rules.yml", "tests.yml", "fleet-rules.yml", "fleet-tests.yml")
NAMESPACE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def metric_prefix(namespace: str = DEFAULT_NAMESPACE) -> str:
    """``app`` -> ``app_``; the empty namespace gives unprefixed names, as in the exporter."""
    if namespace and not NAMESPACE_PATTERN.fullmatch(namespace):
        raise ValueError(f"invalid metric namespace {namespace!r}: letters, digits and _")
    return f"{namespace}_" if namespace else ""


def render(template: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Substitute ``${PREFIX}`` and ``${NAMESPACE}``; any other ``${NAME}`` is an error."""
    values = {"PREFIX": metric_prefix(namespace), "NAMESPACE": namespace}

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise KeyError(f"unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    return PLACEHOLDER.sub(substitute, template)


def template_path(name: str) -> Path:
    return TEMPLATES / f"{name}.tmpl"


def build_all(namespace: str = DEFAULT_NAMESPACE) -> dict[str, str]:
    """File name -> rendered text of every rules and tests file."""
    return {name: render(template_path(name).read_text(), namespace) for name in FILES}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the YAML files are stale")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    parser.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"the exporter's metric namespace (default {DEFAULT_NAMESPACE!r}; '' for none)",
    )
    args = parser.parse_args(argv)
    try:
        rendered = build_all(args.namespace)
    except ValueError as exc:
        parser.error(str(exc))
    return write_or_check(
        rendered,
        args.out,
        args.check,
        "edit alerts/templates/*.tmpl, then run python alerts/build.py",
    )


def write_or_check(rendered: dict[str, str], out: Path, check: bool, how_to_fix: str) -> int:
    """Write each file, or (``check``) print how the committed ones differ; 1 when stale.

    Shared with dashboards/build.py, which renders its JSON the same way.
    """
    stale = []
    for name, text in rendered.items():
        path = out / name
        if check:
            current = path.read_text() if path.exists() else ""
            if current != text:
                stale.append(name)
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"{name} (committed)",
                        f"{name} (rendered)",
                        n=2,
                    )
                )
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; {how_to_fix}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
