"""Each worker publishes its scrape-time state once a second.

In one process those values are computed when Prometheus scrapes; with several workers the
scrape lands in one of them (or in the sidecar), so each worker writes its values where every
process can read them:

- prometheus_client multiprocess gauges (mmap files), merged at scrape time with the
  ``multiprocess_mode`` of each family:

  ============================================  =========  ==========================
  family                                        mode       fleet value
  ============================================  =========  ==========================
  app_error_pattern_severity{error_type}        livemax    worst live worker
  app_error_pattern_occurrences{error_type}     livesum    summed over live workers
  app_plugin_health{plugin}                     livemax    worst live worker
  app_sessions_active                           livesum    summed
  app_error_queue_depth                         livesum    summed
  app_system_* (gauges and byte counters)       livemax    one host-wide value
  app_process_*{pid}                            liveall    one series per live worker
  ============================================  =========  ==========================

  ``app_sessions_total{status}`` is a real multiprocess counter (increments survive the
  worker); ``app_unique_errors`` and ``app_monitor_info`` are computed by the serving side.

- one JSON row per worker in the shared database (patterns with their samples, plugin health,
  sessions, queue depth, latest resources) for the JSON API.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Any

from prometheus_client import Counter, Gauge

from ..collectors import HEALTH_VALUE, Published
from ..sessions import STATUSES
from .sqlite_store import FORK_GUARD, SharedStore

log = logging.getLogger("exporter.multiprocess")
PUBLISH_INTERVAL = 1.0
# System-wide byte counters are published as livemax gauges (each worker reads the same host
# counter; summing would multiply it) and turned back into counters by the serving side.
SYSTEM_COUNTERS = (
    ("system_disk_read_bytes", "Bytes read from disks (system-wide).", "disk_read_bytes"),
    ("system_disk_written_bytes", "Bytes written to disks (system-wide).", "disk_written_bytes"),
    ("system_network_sent_bytes", "Bytes sent on all interfaces.", "network_sent_bytes"),
    ("system_network_received_bytes", "Bytes received on all interfaces.",
     "network_received_bytes"),
)
SYSTEM_GAUGES = (
    ("system_cpu_utilization_ratio", "System-wide CPU utilization (0..1)."),
    ("system_memory_utilization_ratio", "System memory in use (0..1)."),
    ("system_memory_used_bytes", "System memory used."),
    ("system_memory_available_bytes", "System memory available."),
    ("system_processes", "Processes running on the system."),
)
PROCESS_GAUGES = (
    ("process_threads", "Threads in this process."),
    ("process_cpu_utilization_ratio", "CPU used by this process, as a ratio of one core."),
    ("process_open_files", "Regular files this process has open."),
)


class Publisher:
    """A daemon thread writing one worker's gauges and state every ``interval`` seconds."""

    def __init__(self, monitor: Published, shared: SharedStore,
                 interval: float = PUBLISH_INTERVAL) -> None:
        self.monitor = monitor
        self.shared = shared
        self.interval = interval
        ns = monitor.config.namespace

        def gauge(name: str, doc: str, labels: tuple[str, ...] = (), mode: str = "livemax"
                  ) -> Gauge:
            return Gauge(name, doc, labels, namespace=ns, registry=None,
                         multiprocess_mode=mode)  # type: ignore[arg-type]

        self.pattern_severity = gauge(
            "error_pattern_severity", "Pattern severity per error type in the sliding window "
            "(0 none, 1 warning, 2 error, 3 critical).", ("error_type",))
        self.pattern_occurrences = gauge(
            "error_pattern_occurrences",
            "Occurrences of each error type in the current pattern window.", ("error_type",),
            "livesum")
        self.plugin_health = gauge(
            "plugin_health",
            "Plugin health from its recent errors (0 healthy, 1 degraded, 2 unhealthy).",
            ("plugin",))
        self.sessions_active = gauge("sessions_active", "Sessions currently open.", (),
                                     "livesum")
        self.queue_depth = gauge("error_queue_depth", "Error reports waiting for the worker.",
                                 (), "livesum")
        self.sessions_total = Counter(
            "sessions", "Ended sessions by status (exited, errored, crashed, abnormal).",
            ["status"], namespace=ns, registry=None)
        for status in STATUSES:
            self.sessions_total.labels(status)
        self.system = {name: gauge(name, doc) for name, doc in SYSTEM_GAUGES}
        self.system_counters = {
            attr: gauge(name + "_total", doc) for name, doc, attr in SYSTEM_COUNTERS
        }
        self.process = {name: gauge(name, doc, (), "liveall") for name, doc in PROCESS_GAUGES}
        self._published_ended = dict.fromkeys(STATUSES, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hostname = _hostname()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="error-exporter-publisher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Publish a last time (sessions ended at exit count) and stop the thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._thread = None
        self.publish()

    def after_fork_in_child(self) -> None:
        """A forked child has no publisher thread; its sessions counter starts from zero."""
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._published_ended = dict(self.monitor.sessions.ended)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.publish()
            self._stop.wait(self.interval)

    # -- one round -------------------------------------------------------------------------
    def publish(self) -> None:
        """Write this worker's gauges and state now; never raises."""
        try:
            with FORK_GUARD, self._lock:  # a fork waits: no child inherits a held metric lock
                state = self._publish_metrics()
                self.shared.put_worker_state(os.getpid(), state)
        except Exception as exc:
            self.monitor.note_internal_error(exc)

    def _publish_metrics(self) -> dict[str, Any]:
        monitor = self.monitor
        count_uncounted = getattr(monitor, "_count_uncounted", None)
        if count_uncounted is not None:  # internal errors that could not be counted at once
            count_uncounted()
        limit = monitor.metrics.limiter.value
        merged: dict[str, tuple[int, int]] = {}
        for error_type, (count, level) in monitor.patterns.type_levels().items():
            name = limit("error_type", error_type)
            old_count, old_level = merged.get(name, (0, 0))
            merged[name] = (old_count + count, max(old_level, level))
        for name, (count, level) in merged.items():
            self.pattern_severity.labels(name).set(level)
            self.pattern_occurrences.labels(name).set(count)

        plugins: dict[str, dict[str, Any]] = {}
        worst: dict[str, int] = {}
        for plugin in monitor.store.plugins():
            status, recent = monitor.store.plugin_status(plugin)
            plugins[plugin] = {"status": status, "recent": recent}
            name = limit("plugin", plugin)
            worst[name] = max(worst.get(name, 0), HEALTH_VALUE[status])
        for name, value in worst.items():
            self.plugin_health.labels(name).set(value)

        sessions = monitor.sessions
        sessions.expire()
        self.sessions_active.set(sessions.active_count)
        ended = dict(sessions.ended)
        for status in STATUSES:
            delta = ended.get(status, 0) - self._published_ended.get(status, 0)
            if delta > 0:
                self.sessions_total.labels(status).inc(delta)
        self._published_ended = ended
        depth = monitor.queue_depth
        self.queue_depth.set(depth)

        snapshot = None
        if monitor.config.enable_resource_monitoring and monitor.resources.latest is not None:
            snapshot = monitor.resources.latest
            totals = monitor.resources.totals
            values: dict[str, float] = {
                "system_cpu_utilization_ratio": snapshot.cpu_percent / 100.0,
                "system_memory_utilization_ratio": snapshot.memory_percent / 100.0,
                "system_memory_used_bytes": totals.memory_used_bytes,
                "system_memory_available_bytes": totals.memory_available_bytes,
                "system_processes": snapshot.process_count,
            }
            for name, reading in values.items():
                self.system[name].set(reading)
            for attr, counter_gauge in self.system_counters.items():
                counter_gauge.set(getattr(totals, attr))
            self.process["process_threads"].set(snapshot.thread_count)
            self.process["process_cpu_utilization_ratio"].set(
                snapshot.process_cpu_percent / 100.0)
            self.process["process_open_files"].set(snapshot.process_open_files)
        return {
            "hostname": self._hostname,
            "queue_depth": depth,
            "patterns": [p.to_dict() for p in monitor.patterns.active()],
            "plugins": plugins,
            "sessions": {"active": sessions.active_count, "users": len(sessions.users)},
            "resources": snapshot.to_dict() if snapshot is not None else None,
            "running": bool(monitor.running),
            "published_at": time.time(),
        }


def _hostname() -> str:
    with contextlib.suppress(Exception):
        return socket.gethostname()
    return "unknown"
