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

from exporter.metrics.collectors import Published
from exporter.metrics.families import FAMILIES
from exporter.multiprocess.sqlite_store import FORK_GUARD, SharedStore
from exporter.sessions import STATUSES

log = logging.getLogger("exporter.multiprocess")
PUBLISH_INTERVAL = 1.0
# System-wide byte counters are published as livemax gauges (each worker reads the same host
# counter; summing would multiply it) and turned back into counters by the serving side.
SYSTEM_COUNTERS = tuple(f.name for f in FAMILIES if f.resource and f.kind == "counter")


class Publisher:
    """A daemon thread writing one worker's gauges and state every ``interval`` seconds."""

    def __init__(
        self, monitor: Published, shared: SharedStore, interval: float = PUBLISH_INTERVAL
    ) -> None:
        self.monitor = monitor
        self.shared = shared
        self.interval = interval
        ns = monitor.config.namespace

        self.gauges: dict[str, Gauge] = {}
        for family in FAMILIES:
            if not family.published or family.name == "sessions":
                continue
            name = family.name + ("_total" if family.kind == "counter" else "")
            self.gauges[family.name] = Gauge(
                name,
                family.help,
                family.labels,
                namespace=ns,
                registry=None,
                multiprocess_mode=family.mode,  # type: ignore[arg-type]
            )
        self.sessions_total = Counter(
            "sessions",
            "Ended sessions by status (exited, errored, crashed, abnormal).",
            ["status"],
            namespace=ns,
            registry=None,
        )
        for status in STATUSES:
            self.sessions_total.labels(status)
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
        self._thread = threading.Thread(
            target=self._run, name="error-exporter-publisher", daemon=True
        )
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
        resources = (
            monitor.config.enable_resource_monitoring and monitor.resources.latest is not None
        )
        for family in FAMILIES:
            gauge = self.gauges.get(family.name)
            if gauge is None or (family.resource and not resources):
                continue
            for labels, value in family.read(monitor):
                (gauge.labels(*labels) if labels else gauge).set(value)
        sessions = monitor.sessions
        ended = dict(sessions.ended)
        for status in STATUSES:
            delta = ended.get(status, 0) - self._published_ended.get(status, 0)
            if delta > 0:
                self.sessions_total.labels(status).inc(delta)
        self._published_ended = ended
        plugins = {}
        for plugin in monitor.store.plugins():
            status, recent = monitor.store.plugin_status(plugin)
            plugins[plugin] = {"status": status, "recent": recent}
        snapshot = monitor.resources.latest if resources else None
        depth = monitor.queue_depth
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
