"""A static stand-in for the exporter's /metrics, shaped exactly like docs/metrics.md.

It lets the rules and dashboards run on a real Prometheus before (or without) the real demo:
every family, with its documented labels, a few series each. It is a fake *target*, never a
fake Prometheus or Alertmanager.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _histogram(name: str, labels: str, buckets: dict[str, int], total: float) -> list[str]:
    lines = [f'{name}_bucket{{{labels},le="{le}"}} {count}' for le, count in buckets.items()]
    lines.append(f"{name}_sum{{{labels}}} {total}")
    lines.append(f"{name}_count{{{labels}}} {buckets['+Inf']}")
    return lines


def _sample() -> str:
    lines: list[str] = []

    def family(name: str, kind: str, *samples: str) -> None:
        lines.append(f"# HELP {name} {name.replace('_', ' ')}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)

    family(
        "app_errors_total",
        "counter",
        'app_errors_total{error_type="ValueError",component="checkout",plugin="",'
        'severity="low"} 12',
        'app_errors_total{error_type="TimeoutError",component="checkout",plugin="stripe",'
        'severity="high"} 5',
        'app_errors_total{error_type="DatabaseError",component="db",plugin="",'
        'severity="critical"} 2',
        'app_errors_total{error_type="KeyError",component="",plugin="cache",severity="medium"} 7',
        'app_errors_total{error_type="SMTPServerDisconnected",component="celery",plugin="celery",'
        'severity="high"} 4',
    )
    family(
        "app_error_recoveries_total",
        "counter",
        'app_error_recoveries_total{component="checkout",plugin="stripe",result="success"} 4',
        'app_error_recoveries_total{component="checkout",plugin="stripe",result="failure"} 1',
    )
    buckets = {"0.1": 1, "1.0": 3, "10.0": 4, "+Inf": 5}
    family(
        "app_error_recovery_duration_seconds",
        "histogram",
        *_histogram(
            "app_error_recovery_duration_seconds",
            'component="checkout",plugin="stripe"',
            buckets,
            9.5,
        ),
    )
    family(
        "app_operation_duration_seconds",
        "histogram",
        *_histogram(
            "app_operation_duration_seconds",
            'component="checkout",plugin="stripe",operation="pay",outcome="ok"',
            {"0.1": 50, "1.0": 90, "+Inf": 95},
            30.0,
        ),
        *_histogram(
            "app_operation_duration_seconds",
            'component="checkout",plugin="stripe",operation="pay",outcome="error"',
            {"0.1": 1, "1.0": 4, "+Inf": 5},
            3.0,
        ),
        # Background jobs (the Celery / RQ integrations; not in docs/metrics.md yet): each
        # task run is an operation of component celery or rq named after the task. The
        # drill-down's "Background jobs" row is proven on these series and, end to end, on
        # the demo's background jobs (tests/scenarios/test_demo_stack_end_to_end.py).
        *[
            line
            for outcome, buckets, total in (
                ("ok", {"0.1": 10, "1.0": 38, "10.0": 40, "+Inf": 40}, 22.0),
                ("error", {"0.1": 0, "1.0": 3, "10.0": 4, "+Inf": 4}, 5.5),
                ("retry", {"0.1": 1, "1.0": 6, "10.0": 6, "+Inf": 6}, 3.1),
            )
            for line in _histogram(
                "app_operation_duration_seconds",
                f'component="celery",plugin="celery",operation="send_email",outcome="{outcome}"',
                buckets,
                total,
            )
        ],
        *_histogram(
            "app_operation_duration_seconds",
            'component="rq",plugin="rq",operation="nightly_report",outcome="ok"',
            {"0.1": 0, "1.0": 0, "10.0": 2, "+Inf": 2},
            9.0,
        ),
    )
    family(
        "app_task_retries_total",
        "counter",
        'app_task_retries_total{component="celery",operation="send_email",'
        'error_type="SMTPServerDisconnected"} 6',
    )
    family(
        "app_error_reports_dropped_total",
        "counter",
        *[
            f'app_error_reports_dropped_total{{reason="{reason}"}} 0'
            for reason in ("queue_full", "callback_queue_full", "store_evicted", "export_failed")
        ],
    )
    family("app_monitor_internal_errors_total", "counter", "app_monitor_internal_errors_total 0")
    family(
        "app_label_values_overflow_total",
        "counter",
        'app_label_values_overflow_total{label="error_type"} 0',
    )
    family(
        "app_error_pattern_severity",
        "gauge",
        'app_error_pattern_severity{error_type="TimeoutError"} 2',
        'app_error_pattern_severity{error_type="ValueError"} 1',
    )
    family(
        "app_error_pattern_occurrences",
        "gauge",
        'app_error_pattern_occurrences{error_type="TimeoutError"} 5',
        'app_error_pattern_occurrences{error_type="ValueError"} 12',
    )
    family(
        "app_plugin_health",
        "gauge",
        'app_plugin_health{plugin="stripe"} 1',
        'app_plugin_health{plugin="cache"} 0',
    )
    family(
        "app_error_groups_new_total",
        "counter",
        'app_error_groups_new_total{app_version="1.0.0"} 3',
        'app_error_groups_new_total{app_version="1.1.0"} 1',
    )
    family(
        "app_error_groups_regressed_total",
        "counter",
        'app_error_groups_regressed_total{app_version="1.0.0"} 0',
        'app_error_groups_regressed_total{app_version="1.1.0"} 1',
    )
    # Not in docs/metrics.md yet (the store backends publish it): the release-health rules and
    # panels count only processes that say their store outlives a restart.
    family(
        "app_monitor_store_info",
        "gauge",
        'app_monitor_store_info{backend="file",release_scope="host"} 1',
    )
    family("app_unique_errors", "gauge", "app_unique_errors 4")
    family("app_sessions_active", "gauge", "app_sessions_active 3")
    family(
        "app_sessions_total",
        "counter",
        *[
            f'app_sessions_total{{status="{status}"}} {count}'
            for status, count in (("exited", 40), ("errored", 5), ("crashed", 1), ("abnormal", 0))
        ],
    )
    family("app_error_queue_depth", "gauge", "app_error_queue_depth 0")
    family(
        "app_monitor_info", "gauge", 'app_monitor_info{version="0.1.0",python_version="3.11.2"} 1'
    )
    for name, value in (
        ("app_system_cpu_utilization_ratio", "0.25"),
        ("app_system_memory_utilization_ratio", "0.5"),
        ("app_system_memory_used_bytes", "4.0e9"),
        ("app_system_memory_available_bytes", "4.0e9"),
        ("app_system_processes", "120"),
        ("app_process_threads", "8"),
        ("app_process_cpu_utilization_ratio", "0.05"),
        ("app_process_open_files", "12"),
    ):
        family(name, "gauge", f"{name} {value}")
    for name in (
        "app_system_disk_read_bytes_total",
        "app_system_disk_written_bytes_total",
        "app_system_network_sent_bytes_total",
        "app_system_network_received_bytes_total",
    ):
        family(name, "counter", f"{name} 1024")
    return "\n".join(lines) + "\n"


CONTRACT_SAMPLE = _sample()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b'{"status": "ok", "running": true, "queue_depth": 0}'
            content_type = "application/json"
        elif self.path.startswith("/metrics"):
            body = CONTRACT_SAMPLE.encode()
            content_type = "text/plain; version=0.0.4; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def static_exporter() -> Iterator[int]:
    """Serve CONTRACT_SAMPLE on 127.0.0.1 (free port); yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="static-exporter", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
