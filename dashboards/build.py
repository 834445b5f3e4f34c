"""Build the error-exporter Grafana dashboards (Grafana 11.6) with grafana-foundation-sdk.

    python dashboards/build.py                   # (re)write dashboards/*.json
    python dashboards/build.py --check           # exit 1 if the committed JSON differs
    python dashboards/build.py --namespace shop  # for an exporter run with namespace="shop"
    python dashboards/build.py --api-base https://grafana.example/error-exporter-api/
                                                 # API links through a token-adding proxy

The boards themselves live in the `dashboards` package (queries.py, panels.py, overview.py,
drilldown.py). Conventions every panel follows (enforced by
tests/unit/dashboards/test_dashboards.py):
- the data source is the `datasource` variable (no `${DS_...}` inputs: provisioning-friendly);
- every query filters `job=~"$job", instance=~"$instance"`, every rate/increase uses
  `$__rate_interval`;
- every panel has a title and a unit.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script, only dashboards/ itself is on the path
    sys.path.insert(0, str(HERE.parent))

from alerts.build import write_or_check  # noqa: E402
from dashboards import DASHBOARDS, build_all  # noqa: E402
from dashboards.drilldown import drilldown  # noqa: E402
from dashboards.overview import overview  # noqa: E402
from dashboards.panels import DEFAULT_API_BASE, render  # noqa: E402
from dashboards.queries import DEFAULT_NAMESPACE, metric_prefix  # noqa: E402

# http:// or https:// alone, or an http(s) URL of a proxy ending in / (no user:password@).
API_BASE_PATTERN = re.compile(r"https?://(?:[^/@\s?#]+/(?:[^@\s?#]*/)?)?")

__all__ = [
    "DASHBOARDS",
    "DEFAULT_NAMESPACE",
    "build_all",
    "drilldown",
    "main",
    "overview",
    "render",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON files are stale")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    parser.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"the exporter's metric namespace (default {DEFAULT_NAMESPACE!r}; '' for none)",
    )
    parser.add_argument(
        "--api-base",
        default=DEFAULT_API_BASE,
        help=f"default of the links' JSON API base variable (default {DEFAULT_API_BASE!r}): "
        "http://, https://, or a token-adding reverse proxy's base URL ending in /",
    )
    args = parser.parse_args(argv)
    try:
        metric_prefix(args.namespace)
    except ValueError as exc:
        parser.error(str(exc))
    if not API_BASE_PATTERN.fullmatch(args.api_base):
        parser.error(
            f"invalid --api-base {args.api_base!r}: http:// or https://, or an http(s) URL "
            "ending in / (never a token: the dashboards are readable by every viewer)"
        )
    return write_or_check(
        build_all(args.namespace, args.api_base),
        args.out,
        args.check,
        "run python dashboards/build.py",
    )


if __name__ == "__main__":
    raise SystemExit(main())
