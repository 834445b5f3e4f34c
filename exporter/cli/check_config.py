"""``error-exporter check-config FILE``: explain every problem of a YAML configuration.

The monitor refuses a bad configuration at start-up with the first problems joined in one
message; this lists each one on its own line before deploying, with the same rules
(``exporter.config.validate_mapping``) so the two can never disagree.
"""

from __future__ import annotations

import sys
from typing import TextIO

from exporter.config import ConfigError, read_yaml, validate_mapping


def check_config(path: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """0 and "OK" when valid; 2 with one line per problem (or why the file is unreadable)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    problems = validate_mapping(data)
    if not problems and data.get("web_config_file"):
        from exporter.http.web_config import load_web_config

        try:  # the web config file it names: the server would refuse it at start
            load_web_config(data["web_config_file"])
        except ConfigError as exc:
            problems.append(f"web_config_file: {exc}")
    if problems:
        print(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", file=out)
        for problem in problems:
            print(f"  {problem}", file=out)
        return 2
    print(f"OK: {path} ({len(data)} option{'s' if len(data) != 1 else ''} set)", file=out)
    return 0
