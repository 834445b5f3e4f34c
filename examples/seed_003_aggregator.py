"""An LEDMatrix-style plugin loop, written against the old ErrorAggregator.

Only the imports changed: they used to be

    from src.error_aggregator import ErrorPattern, get_error_aggregator, record_error

Run it with ``python examples/seed_003_aggregator.py [export-directory]``: a few display
plugins fail while the loop runs, a recurring failure becomes a pattern (which auto-exports),
and the script prints the summary, each plugin's health and an export, then exits.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from exporter import ErrorPattern, get_error_aggregator, record_error


class LEDMatrixError(Exception):
    """The app's base exception (src/exceptions.py): it carries its own context."""

    def __init__(self, message: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.context = context or {}


class PluginError(LEDMatrixError):
    pass


class WeatherPlugin:
    plugin_id = "weather"

    def update(self, tick: int) -> None:
        raise PluginError(
            "weather API unreachable", {"endpoint": "/v1/forecast", "api_key": "sk-do-not-log"}
        )


class StocksPlugin:
    plugin_id = "stocks"

    def update(self, tick: int) -> None:
        if tick == 2:
            price = "n/a"
            float(price)


class ClockPlugin:
    plugin_id = "clock"

    def update(self, tick: int) -> None:
        pass


def on_pattern(pattern: ErrorPattern) -> None:
    print(
        f"Pattern detected: {pattern.error_type} x{pattern.count} "
        f"({pattern.severity}) in {sorted(set(pattern.affected_plugins))}",
        flush=True,
    )


def main(export_dir: Path) -> None:
    aggregator = get_error_aggregator(
        max_records=500, pattern_threshold=3, pattern_window_minutes=10, export_path=export_dir
    )
    aggregator.on_pattern_detected(on_pattern)

    plugins = [WeatherPlugin(), StocksPlugin(), ClockPlugin()]
    for tick in range(4):
        for plugin in plugins:
            try:
                plugin.update(tick)
            except Exception as exc:
                record = record_error(
                    exc, context={"tick": tick}, plugin_id=plugin.plugin_id, operation="update"
                )
                print(
                    f"tick {tick}: {record.plugin_id}.{record.operation} failed: "
                    f"{record.error_type}: {record.message}"
                )

    summary = aggregator.get_error_summary()
    print("=== Error summary ===")
    print(f"Total errors: {summary['total_errors']}")
    print(f"By type: {json.dumps(summary['error_counts_by_type'], sort_keys=True)}")
    print(f"By plugin: {json.dumps(summary['plugin_error_counts'], sort_keys=True)}")
    for name, pattern in summary["active_patterns"].items():
        print(f"Active pattern: {name} count={pattern['count']} severity={pattern['severity']}")
    last = summary["recent_errors"][-1]
    print(f"Last error context: {json.dumps(last['context'], sort_keys=True)}")

    print("=== Plugin health ===")
    for plugin in plugins:
        health = aggregator.get_plugin_health(plugin.plugin_id)
        print(
            f"{health['plugin_id']}: {health['status']} "
            f"({health['total_errors']} errors, {health['recent_error_count']} recent)"
        )

    print(f"Cleared old records: {aggregator.clear_old_records(max_age_hours=24)}")
    export_file = export_dir / "manual_export.json"
    aggregator.export_to_file(export_file)
    data = json.loads(export_file.read_text())
    print(f"Exported {len(data['all_records'])} records to {export_file.name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
