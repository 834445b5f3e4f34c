"""A racing-tuner session, written against the old ErrorMonitoringService.

Only the imports changed: they used to be

    from core.error_handler import handle_errors
    from services.error_monitoring_service import ErrorPriority, ErrorReport, get_error_monitor

Run it with ``python examples/seed_000_service.py``: it captures a handful of errors
(handled, logged, decorated and one in a background thread), prints the service's
statistics and analysis, and exits.
"""

from __future__ import annotations

import json
import logging
import threading

from exporter import ErrorPriority, ErrorReport, get_error_monitor, handle_errors

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logger = logging.getLogger("racing_tuner")

critical_alerts: list[str] = []


def on_error_detected(report: ErrorReport) -> None:
    print(f"Error detected: {report.error_type} in {report.component or 'unknown'}", flush=True)


def on_critical_error(report: ErrorReport) -> None:
    if report.priority == ErrorPriority.CRITICAL:
        critical_alerts.append(report.error_id)
        print(f"ALERT: critical {report.error_type}: {report.error_message}", flush=True)


# Get the global error monitor instance and configure it
monitor = get_error_monitor()
monitor.enable_terminal_output = True
monitor.enable_resource_monitoring = True
monitor.enable_breadcrumbs = True
monitor.register_error_callback(on_error_detected)
monitor.register_alert_callback(on_critical_error)

if not monitor.running:
    monitor.start()
    print(f"Monitor started: {monitor.running}")


class CANBus:
    def __init__(self) -> None:
        self.frames = 0

    @handle_errors(component="CANInterface")
    def read_frame(self) -> bytes:
        self.frames += 1
        raise ConnectionError(f"CAN bus timeout after {self.frames} frames")


def load_ecu_config(text: str) -> dict[str, float]:
    key, _, value = text.partition("=")
    return {key.strip(): float(value)}


def main() -> None:
    monitor.add_breadcrumb(
        action="start_tuning_session", component="MainWindow", data={"session_type": "dyno"}
    )

    # 1. a decorated call that fails, then logged by the caller: one error, not two
    bus = CANBus()
    try:
        bus.read_frame()
    except ConnectionError:
        logger.exception("lost the CAN bus")

    # 2. the same bad config three times: one group, three occurrences
    for line in ("boost = 12,5", "boost = 13,0", "boost = eleven"):
        monitor.add_breadcrumb(
            action="load_ecu_config",
            component="ECUControl",
            data={"config_file": "tune.json", "ecu_type": "Holley"},
        )
        try:
            load_ecu_config(line)
        except ValueError as exc:
            monitor.record_error(exc, component="ECUControl")

    # 3. a background thread that dies: captured without any code of ours
    def poll_sensors() -> None:
        sensors = {"rpm": 6500}
        print(sensors["wideband_afr"])

    worker = threading.Thread(target=poll_sensors, name="sensor-poller")
    worker.start()
    worker.join()

    # 4. something critical
    try:
        raise MemoryError("dyno log buffer exhausted")
    except MemoryError as exc:
        monitor.record_error(exc, component="DynoSession")

    stats = monitor.get_statistics()
    print("=== Error statistics ===")
    print(f"Total errors: {stats['total_errors']}")
    print(f"By severity: {json.dumps(stats['errors_by_severity'])}")
    print(f"By component: {json.dumps(stats['errors_by_component'], sort_keys=True)}")
    print(f"By type: {json.dumps(stats['errors_by_type'], sort_keys=True)}")
    rate = stats["recovery_success_rate"]  # None until a recovery was attempted
    print(f"Recovery success rate: {'n/a' if rate is None else f'{rate:.2f}'}")

    analysis = monitor.get_error_analysis()
    print("=== Error analysis ===")
    print(f"Unique errors: {analysis['total_unique_errors']}")
    print(f"Sessions: {analysis['session_count']}")
    for entry in analysis["top_errors"]:
        report = entry["report"]
        where = f"{report['function_name']} line {report['line_number']}"
        print(
            f"  {entry['occurrence_count']}x {report['error_type']} "
            f"[{report['severity']}/{report['priority']}] in {where}"
        )
    top = analysis["top_errors"][0]["report"]
    print(f"Breadcrumbs before the top error: {len(top['breadcrumbs'])}")
    snapshot = top["resource_snapshot"]
    if snapshot is not None:
        print(
            f"Resource snapshot: {snapshot['thread_count']} threads, "
            f"{snapshot['memory_percent']:.0f}% memory"
        )


if __name__ == "__main__":
    main()
