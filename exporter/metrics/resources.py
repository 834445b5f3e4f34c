"""psutil sampled in the background, so neither a report nor a scrape waits for it.

CPU percentages need two readings apart in time; sampling every
``resource_check_interval`` seconds on a daemon thread keeps the last values ready. If
psutil is missing or raises, the sampler keeps going with what it has and counts the
failure; the rest of the monitor never notices.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.model import ResourceSnapshot

log = logging.getLogger("exporter.metrics.resources")
MB = 1024 * 1024

_NOT_YET = object()  # psutil is imported by the sampler's thread, off the start path


def _import_psutil() -> Any:
    try:  # psutil is a dependency, but the monitor must run where it cannot be imported
        import psutil

        return psutil
    except Exception:  # pragma: no cover - exercised by passing None in tests
        return None


@dataclass
class RawTotals:
    """Cumulative system counters in bytes (exposed as ``_total`` counters)."""

    disk_read_bytes: float = 0.0
    disk_written_bytes: float = 0.0
    network_sent_bytes: float = 0.0
    network_received_bytes: float = 0.0
    memory_used_bytes: float = 0.0
    memory_available_bytes: float = 0.0


class ResourceSampler:
    """Keeps the latest ResourceSnapshot and raw totals fresh."""

    def __init__(
        self,
        interval: float,
        psutil_module: Any = _NOT_YET,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.interval = interval
        self._psutil = psutil_module
        self.on_failure = on_failure
        self.latest: ResourceSnapshot | None = None
        self.totals = RawTotals()
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._warned = False

    @property
    def psutil(self) -> Any:
        """The psutil module (imported on first use), or None where it cannot be."""
        if self._psutil is _NOT_YET:
            self._psutil = _import_psutil()
        return self._psutil

    @property
    def available(self) -> bool:
        return self.psutil is not None

    def start(self) -> None:
        """Sample in the background; the first import and reading of psutil happen there,
        one interval after the start."""
        if self._psutil is None:
            self._warn_missing()
            return
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="error-exporter-resources", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._thread = None

    def _warn_missing(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("psutil is not available: resource metrics are off")

    def _run(self) -> None:
        # the first reading one interval after the start: a short-lived process (a script, a
        # cron job, a test run) never imports psutil, and the first CPU figures need two
        # readings apart anyway
        if self._stop.wait(self.interval):
            return
        if self.psutil is None:
            self._warn_missing()
            return
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> ResourceSnapshot | None:
        """Take one reading now; never raises."""
        if self.psutil is None:
            return None
        try:
            snapshot = self._read()
        except Exception as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                log.warning("resource sampling failed, keeping last values: %r", exc)
            if self.on_failure is not None:
                self.on_failure()
            return self.latest
        self.latest = snapshot
        return snapshot

    def _read(self) -> ResourceSnapshot:
        ps = self.psutil
        if self._process is None:
            self._process = ps.Process()
            self._process.cpu_percent(None)
            ps.cpu_percent(None)
        memory = ps.virtual_memory()
        disk = _safe(ps.disk_io_counters)
        net = _safe(ps.net_io_counters)
        proc = self._process
        with proc.oneshot():
            threads = proc.num_threads()
            proc_cpu = proc.cpu_percent(None)
            open_files = len(_safe(proc.open_files) or ())
        totals = RawTotals(
            disk_read_bytes=float(getattr(disk, "read_bytes", 0) or 0),
            disk_written_bytes=float(getattr(disk, "write_bytes", 0) or 0),
            network_sent_bytes=float(getattr(net, "bytes_sent", 0) or 0),
            network_received_bytes=float(getattr(net, "bytes_recv", 0) or 0),
            memory_used_bytes=float(memory.used),
            memory_available_bytes=float(memory.available),
        )
        self.totals = totals
        return ResourceSnapshot(
            timestamp=time.time(),
            cpu_percent=float(ps.cpu_percent(None)),
            memory_percent=float(memory.percent),
            memory_used_mb=round(memory.used / MB, 2),
            memory_available_mb=round(memory.available / MB, 2),
            disk_io_read_mb=round(totals.disk_read_bytes / MB, 2),
            disk_io_write_mb=round(totals.disk_written_bytes / MB, 2),
            network_sent_mb=round(totals.network_sent_bytes / MB, 2),
            network_recv_mb=round(totals.network_received_bytes / MB, 2),
            process_count=len(ps.pids()),
            thread_count=int(threads),
            process_cpu_percent=float(proc_cpu),
            process_open_files=open_files,
        )

    def after_fork(self) -> None:
        """The child has its own process handle and no sampler thread."""
        self._process = None
        self._thread = None


def _safe(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception:
        return None
