"""The worker side: each queued occurrence becomes its record and its report, and joins its
group; then patterns, callbacks and the auto-export.

Runs only on the report worker (``process`` for each item, ``tick`` for upkeep); callbacks
run on their own thread through a second bounded queue, so a slow or blocking callback never
holds up the reports. The occurrence stays itself; the group aggregates (``store/memory.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from exporter.capture import headroom
from exporter.capture.budget import GroupBudget
from exporter.capture.occurrence import Occurrence
from exporter.config import MonitorConfig
from exporter.metrics.capture_path import ErrorMetrics, prometheus_client_imported
from exporter.metrics.resources import ResourceSampler
from exporter.model import ErrorPattern, ErrorPriority, ErrorReport
from exporter.patterns import PatternDetector
from exporter.pipeline.background_queue import BackgroundQueue
from exporter.pipeline.report_builder import ReportBuilder
from exporter.pipeline.terminal import TerminalOutput
from exporter.scrub import fix_surrogates
from exporter.sessions import SessionTracker
from exporter.store import json_export
from exporter.store.memory import ErrorGroup, ErrorStore

log = logging.getLogger("exporter")
ErrorCallback = Callable[[ErrorReport], Any]
PatternCallback = Callable[[ErrorPattern], Any]
ALERT_PRIORITIES = (ErrorPriority.HIGH, ErrorPriority.CRITICAL)
SESSION_CHECK_SECONDS = 1.0  # idle sessions are ended this often, scrape or not
EARLY_COUNTS_SECONDS = 60.0  # how long coalesced counts wait for their group's first report
MAX_EARLY_GROUPS = 10000


class Recovery:
    """A recovery of ``error_id`` to mark on its group (queued after the error itself)."""

    __slots__ = ("error_id", "success")

    def __init__(self, error_id: str, success: bool) -> None:
        self.error_id = error_id
        self.success = success


class ExportWriter(Protocol):
    """What the auto-export needs: a way to write the export document to a file."""

    def export_to_file(self, filepath: Any, **filters: Any) -> Any: ...


class Pipeline:
    """Turns occurrences into records, reports and group counts; runs the callbacks."""

    def __init__(
        self,
        config: MonitorConfig,
        builder: ReportBuilder,
        metrics: ErrorMetrics,
        budget: GroupBudget,
        resources: ResourceSampler,
        note_internal_error: Callable[[BaseException], None],
    ) -> None:
        self.config = config
        self.builder = builder
        self.metrics = metrics
        self.budget = budget
        self.resources = resources
        self.note_internal_error = note_internal_error
        self._store: ErrorStore
        self.patterns: PatternDetector
        self.sessions: SessionTracker
        self.export_writer: ExportWriter | None = None
        self.terminal: TerminalOutput | None = None
        self.error_callbacks: list[ErrorCallback] = []
        self.alert_callbacks: list[ErrorCallback] = []
        self.pattern_callbacks: list[PatternCallback] = []
        self.tick_hooks: list[Callable[[], None]] = []  # a backend's upkeep (durable writes)
        self.regression_callbacks: list[ErrorCallback] = []
        # a shared store decides what is new and what regressed, for every process at
        # once: the backend calls count_new_group / regressed after its write
        self.fleet_release = False
        self.callbacks = BackgroundQueue(
            "error-exporter-callbacks",
            config.callback_queue_size,
            self._run_callback,
            on_drop=lambda: metrics.count_drop("callback_queue_full"),
            on_error=note_internal_error,
        )
        self.reset()

    def reset(self) -> None:
        """An empty account: store, patterns, sessions (at construction, in a forked child)."""
        cfg = self.config
        self.store = ErrorStore(
            cfg.error_buffer_size,
            cfg.max_records,
            cfg.occurrences_per_group,
            cfg.max_users_per_group,
            cfg.plugin_health_window,
            cfg.plugin_degraded_threshold,
            cfg.plugin_unhealthy_threshold,
            on_evict=lambda n: self.metrics.count_drop("store_evicted", n),
        )
        self.patterns = PatternDetector(
            cfg.pattern_threshold,
            cfg.pattern_window_seconds,
            cfg.max_patterns,
            on_new_pattern=self._on_new_pattern,
        )
        self.sessions = SessionTracker(cfg.session_timeout, cfg.max_breadcrumbs)
        self._early_counts: dict[str, list[tuple[str, str, int, float]]] = {}
        self._early_expiry = 0.0
        self._next_session_check = 0.0
        self.metrics.release_started(self.builder.app_version)

    @property
    def store(self) -> ErrorStore:
        return self._store

    @store.setter
    def store(self, store: ErrorStore) -> None:
        """Whichever store is in use (a backend's may replace the first) tells us of
        regressions and dates coalesced counts by release."""
        store.version_at = self.builder.releases.version_at
        store.on_regress = self._on_regress
        self._store = store

    def after_fork(self, fresh_account: bool) -> None:
        """In a forked child: the callback thread is gone; the account starts empty or
        (multiprocess mode, where each process writes its own files) keeps going."""
        self.callbacks.after_fork_in_child()
        self.builder.releases.after_fork()
        if fresh_account:
            self.metrics.reset()
            self.reset()
        else:
            self.metrics.after_fork()
            self.store.after_fork()
            self.patterns.after_fork()
            self.sessions.after_fork()

    # -- the report worker -------------------------------------------------------------------
    def process(self, item: Any) -> None:
        if isinstance(item, Recovery):
            self.store.mark_recovery(item.error_id, item.success)
            return
        occurrence: Occurrence = item
        _fix_text_fields(occurrence)
        builder = self.builder
        message = builder.message(occurrence.message)
        context = builder.context(occurrence)  # now: it may hold the app's objects
        record = builder.record(occurrence, message, context)
        snapshot = None
        if self.config.enable_resource_monitoring:  # an error before the sampler's first
            snapshot = self.resources.latest or self.resources.sample()  # reading: one here
        report = builder.report(occurrence, message, context, snapshot)
        # The stored report and record keep the occurrence until read: from here on it holds
        # the scrubbed copies, not the app's objects (scrubbing them again gives the same).
        occurrence.context = context
        occurrence.metadata = report.metadata
        group, is_new = self._store.add(report, record)  # (the property's call, saved)
        if is_new and not self.fleet_release:  # else: the shared store says (once a fleet)
            self.metrics.count_new_group(group.first_seen_version)
        if is_new and self._early_counts:
            for entry in self._early_counts.pop(occurrence.error_id, ()):
                self.store.add_to_group(*entry)
        self.patterns.observe(
            report.error_type, report.error_id, message, occurrence.plugin, occurrence.timestamp
        )
        if is_new and self.terminal is not None:
            self.terminal.new_group(report)
        # A new group's and an alert's callbacks do not wait behind a storm's backlog.
        alert = report.priority in ALERT_PRIORITIES
        for callback in self.error_callbacks:
            self.callbacks.submit((callback, report), urgent=is_new or alert)
        if alert:
            for callback in self.alert_callbacks:
                self.callbacks.submit((callback, report), urgent=True)

    def tick(self) -> None:
        """Upkeep: error counts into their metric children, coalesced counts into their
        groups, idle sessions ended, stack lent to a capture given back."""
        self.metrics.apply_counts_if_made()  # never imports prometheus_client here
        headroom.give_back()
        for entry in self.budget.drain():
            self._add_coalesced(*entry)
        now = time.monotonic()
        if self._early_counts and now >= self._early_expiry:
            self._early_counts.clear()  # groups never made (their first report dropped)
        if now >= self._next_session_check:
            self._next_session_check = now + SESSION_CHECK_SECONDS
            self.sessions.expire()
        for hook in self.tick_hooks:  # last: they see this tick's counts
            hook()

    def _add_coalesced(
        self, error_id: str, error_type: str, plugin: str, count: int, last_seen: float
    ) -> None:
        """Counts a storm coalesced: their detail is dropped (counted now, whatever happens
        to the group), the pattern and plugin counts take them now, and the group's counts
        wait while its first occurrence is still queued (it may wait behind a backlog)."""
        self.metrics.count_drop("coalesced", count)
        self.patterns.observe(error_type, error_id, "", plugin, last_seen, amount=count)
        if self.store.add_coalesced(error_id, plugin, error_type, count, last_seen):
            return
        if not self._early_counts:
            self._early_expiry = time.monotonic() + EARLY_COUNTS_SECONDS
        if error_id in self._early_counts or len(self._early_counts) < MAX_EARLY_GROUPS:
            self._early_counts.setdefault(error_id, []).append((error_id, plugin, count, last_seen))

    def _on_regress(self, group: ErrorGroup, report: ErrorReport) -> None:
        """A resolved group seen again (worker thread, store lock held: nothing slow)."""
        if not self.fleet_release:
            self.regressed(group, report)

    def regressed(self, group: ErrorGroup, report: ErrorReport) -> None:
        """Count a regression and call the regression callbacks (they run on the callback
        thread). With a shared store, only the process whose write brought it back."""
        try:
            version = group.last_seen_version
            self.metrics.count_regressed_group(version)
            log.info(
                "error group %s (%s) regressed: seen again in app version %s",
                report.error_id,
                report.error_type,
                version,
            )
            for callback in self.regression_callbacks:
                self.callbacks.submit((callback, report), urgent=True)
        except Exception as exc:  # the occurrence itself is stored whatever happens here
            self.note_internal_error(exc)

    def _on_new_pattern(self, pattern: ErrorPattern) -> None:
        log.log(
            logging.WARNING if pattern.kind == "type" else logging.INFO,
            "error pattern detected: %s %s occurred %d times in %.0f s (severity %s)",
            pattern.kind,
            pattern.error_type,
            pattern.count,
            self.patterns.window_seconds,
            pattern.severity,
        )
        for callback in self.pattern_callbacks:
            self.callbacks.submit((callback, pattern))
        if self.config.export_path and pattern.kind == "type":
            self.callbacks.submit((self._auto_export, None))

    # -- the callback thread -------------------------------------------------------------------
    def _run_callback(self, item: tuple[Callable[[Any], Any], Any]) -> None:
        callback, payload = item
        try:
            callback(payload)
        except Exception as exc:
            self.note_internal_error(exc)

    def _auto_export(self, _: Any = None) -> None:
        """A pattern began: write the export file (on the callback thread)."""
        directory = self.config.export_path
        if directory is None or self.export_writer is None:
            return
        if not (self.metrics.materialized or prometheus_client_imported()):
            # export_path set on the config behind the monitor's back, after its start:
            # writing the export would import prometheus_client on this thread (see
            # prometheus_client_imported); the monitor makes it when it sets export_path
            self.metrics.count_drop("export_failed")
            log.warning("auto-export to %s skipped: the metrics are not made yet", directory)
            return
        try:
            path = self.export_writer.export_to_file(json_export.auto_export_path(directory))
            json_export.prune(directory, self.config.max_export_files)
            log.info("auto-exported error data to %s", path)
        except Exception as exc:
            self.metrics.count_drop("export_failed")
            shown = exc if isinstance(exc, json_export.ExportWriteError) else repr(exc)
            log.warning("auto-export to %s failed: %s", directory, shown)  # file and cause


def _fix_text_fields(occurrence: Occurrence) -> None:
    """Lone surrogates in the caller's strings would make every export and API read fail."""
    try:  # the common case, checked at once
        if (
            occurrence.component
            + occurrence.plugin
            + occurrence.operation
            + (occurrence.user_id or "")
            + (occurrence.session_id or "")
        ).isascii():
            return
    except TypeError:
        pass  # not all strings: one by one
    for name in ("component", "plugin", "operation", "user_id", "session_id"):
        value = getattr(occurrence, name)
        if type(value) is str and not value.isascii():
            setattr(occurrence, name, fix_surrogates(value))
