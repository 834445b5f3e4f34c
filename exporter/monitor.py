"""ErrorMonitor: the public face of the engine, its lifecycle and the capture path.

The caller's thread does only what must be exact: recognise the exception (once), sign
it, pick its severity, count it and take the occurrence's own fields (no frame, no local).
Everything else (formatting, scrubbing, grouping, patterns, callbacks, export) happens in
the pipeline on the worker, through a bounded queue; reads are answered by the backend
chosen at construction (``local_view`` or the multiprocess shared view). Nothing in here
raises into the host app: failures are counted in ``app_monitor_internal_errors_total`` and
logged once at WARNING.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter import _running_monitors
from exporter._monitor_sessions import SessionsAndRecovery
from exporter._process_events import (
    register_exit_hook,
    register_fork_handler,
    register_standard_collectors,
)
from exporter.capture.block import CaptureBlock
from exporter.capture.budget import GroupBudget
from exporter.capture.front import CaptureFront
from exporter.capture.occurrence import Occurrence
from exporter.capture.signature import Signer
from exporter.classify import SeverityRules
from exporter.config import MonitorConfig, load_config, multiproc_dir
from exporter.integrations import Integration, enabled_integrations
from exporter.metrics.capture_path import ErrorMetrics, RegistryBridge, _label_text
from exporter.metrics.resources import ResourceSampler
from exporter.model import Breadcrumb, ErrorRecord
from exporter.patterns import PatternDetector
from exporter.pipeline.background_queue import BackgroundQueue
from exporter.pipeline.ingest import ErrorCallback, PatternCallback, Pipeline
from exporter.pipeline.report_builder import ReportBuilder
from exporter.pipeline.terminal import TerminalOutput
from exporter.release import check_version
from exporter.scrub import Scrubber, safe_text
from exporter.sessions import SessionTracker
from exporter.store import json_export
from exporter.store.dsn import is_postgres
from exporter.store.local_view import LocalView
from exporter.store.memory import ErrorStore
from exporter.store.read_protocol import ErrorReader, ReadThroughView

if TYPE_CHECKING:  # imported when a feature is used: a plain start pays for none of them
    from prometheus_client import CollectorRegistry  # (when a metric object is first needed)

    from exporter.integrations.asyncio_loop import AsyncioIntegration
    from exporter.multiprocess import SharedView
    from exporter.store.durable import DurableBackend
    from exporter.store.durable.postgres_store import MultiWriterBackend

log = logging.getLogger("exporter")


class ErrorMonitor(SessionsAndRecovery, ReadThroughView):
    """Captures errors in this process and keeps them readable for Prometheus and people."""

    def __init__(
        self,
        config: MonitorConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        integrations: Iterable[Integration] = (),
        **options: Any,
    ) -> None:
        if "port" in options and "serve" not in options:
            options["serve"] = True  # asking for a port means asking for the server
        self.config = config.replace(**options) if config is not None else load_config(**options)
        cfg = self.config
        multiprocess_mode = multiproc_dir() is not None
        if cfg.store_path is not None or cfg.store_url is not None:
            from exporter.store.durable import check_config

            check_config(cfg, multiprocess_mode)  # a bad store_path / store_url: ConfigError
        json_export.check_export_path(cfg.export_path)  # and a bad export_path
        # The registry and the metric objects are made when first needed (_own_registry):
        # a process that never errs and is never scraped never imports prometheus_client.
        self._own: CollectorRegistry | None = None  # this monitor's, once made
        self._served: CollectorRegistry | None = None  # what /metrics serves, if not that
        self._user_registry = registry
        self._registry_lock = threading.RLock()
        self.metrics = ErrorMetrics(
            self._own_registry, cfg.namespace, cfg.label_value_limit, cfg.label_value_limits
        )
        self._uncounted_internal = 0
        self.signer = Signer(cfg.in_app_include, cfg.in_app_exclude)
        self.rules = SeverityRules(
            cfg.severity_by_type, cfg.severity_by_component, cfg.default_severity
        )
        self.scrubber = Scrubber(
            cfg.scrub_keys,
            enabled=cfg.scrub_enabled,
            max_string_length=cfg.max_string_length,
            max_depth=cfg.max_context_depth,
            max_items=cfg.max_context_items,
        )
        self.builder = ReportBuilder(
            self.scrubber,
            self.signer,
            cfg.max_frames,
            cfg.max_chain_depth,
            cfg.max_message_length,
            cfg.app_version,
            cfg.capture_locals,
            cfg.trace_url_template,
        )
        resources = ResourceSampler(
            cfg.resource_check_interval, on_failure=self.metrics.count_internal_error
        )
        self._budget = GroupBudget(cfg.occurrence_budget_per_second)
        self.pipeline = Pipeline(
            cfg, self.builder, self.metrics, self._budget, resources, self.note_internal_error
        )
        self.pipeline.export_writer = self
        self._reports = BackgroundQueue(
            "error-exporter-worker",
            cfg.queue_size,
            self.pipeline.process,
            on_drop=lambda: self.metrics.count_drop("queue_full"),
            on_error=self.note_internal_error,
            on_tick=self.pipeline.tick,
        )
        self._callbacks = self.pipeline.callbacks
        self._front = CaptureFront(
            cfg,
            self.signer,
            self.rules,
            self.metrics,
            self.scrubber,
            self._budget,
            self.pipeline,
            self._reports.submit,
            self._reports.backlog,
            self.note_internal_error,
        )
        self._extra_integrations = list(integrations)  # the app's own hooks, besides ours
        self._integrations: list[Integration] = []
        self._asyncio: AsyncioIntegration | None = None  # made when first wanted
        self._server: Any = None
        self._lifecycle = threading.RLock()
        self._warned_internal = False
        self._exit_registered = False
        self.running = False
        self.view: ErrorReader = LocalView(
            cfg,
            self._own_registry,
            self.pipeline,
            self.metrics,
            resources,
            self._reports,
            lambda: self.running,
            self.note_internal_error,
        )
        self.shared: SharedView | None = None  # multiprocess mode: every worker's view
        self._durable: DurableBackend | None = None
        self._shared_store: MultiWriterBackend | None = None
        register_fork_handler(self)
        backend = None
        if multiprocess_mode:
            from exporter import multiprocess

            backend = multiprocess.backend_if_enabled(cfg)  # the backend, chosen once, here
        if backend is not None:
            self.metrics.count_at_once()  # another process may scrape at any moment
            self.shared = backend.bind(self, self._count_uncounted)
            self.registry = self.shared.registry  # /metrics exposes the merged directory
            self.view = self.shared.reader  # the view, or the fleet's reader over it
        elif registry is not None:
            self._own_registry()  # the app's registry collects ours from now on
        self._make_registry_for_monitor_threads()
        if backend is not None or cfg.store_file is not None or is_postgres(cfg.store_url):
            self._attach_store(cfg, backend)

    def _attach_store(self, cfg: MonitorConfig, backend: Any) -> None:
        """A durable store (the file, the multiprocess directory's file or the fleet's
        PostgreSQL): imported only when one is set."""
        from exporter.store import durable
        from exporter.store.durable.postgres_store import FleetHooks
        from exporter.store.durable.postgres_store import attach as attach_shared
        from exporter.store.durable.tracking import SessionLedger

        # the sessions each process ended, added to the store's (a crash outlives the process)
        ledger = SessionLedger(lambda: self.pipeline.sessions.ended)
        attached = durable.attach(
            cfg, self.pipeline.store, self.metrics.count_drop, self.note_internal_error, ledger
        )
        if attached is not None:  # store_path: the store loaded from, and kept in, the file
            self._durable, self.pipeline.store = attached
            self.pipeline.tick_hooks.append(self._durable.tick)
        # a store many processes write: release health decided there, once for all of them
        hooks = FleetHooks(
            self.metrics.count_new_group, lambda group: self.pipeline.regressed(group, group.report)
        )
        shared = None
        if backend is not None:  # the multiprocess directory's file
            shared = backend.attach(
                self.pipeline.store,
                self.metrics.count_drop,
                self.note_internal_error,
                hooks,
                ledger,
            )
        elif is_postgres(cfg.store_url):  # the fleet's PostgreSQL
            shared = attach_shared(
                cfg,
                self.pipeline.store,
                self.metrics.count_drop,
                self.note_internal_error,
                hooks,
                ledger,
            )
        if shared is not None:
            self._shared_store, self.pipeline.store = shared
            self.pipeline.fleet_release = True
            self.pipeline.tick_hooks.append(self._shared_store.tick)
            if isinstance(self.view, LocalView):
                self.view.resolve_elsewhere = self._shared_store.resolve
            elif self.shared is not None:  # a group no worker of the directory holds
                self.shared.resolve_elsewhere = self._shared_store.resolve
            if backend is None:  # PostgreSQL: the group reads show the fleet's groups (any
                from exporter.store.durable.fleet_reader import (
                    FleetReader,  # instance answers the same)
                )

                self.view = FleetReader(str(cfg.store_url), cfg.store_app, cfg, base=self.view)

    @property
    def registry(self) -> CollectorRegistry:
        """What /metrics serves: this monitor's registry (made now if not yet), or the
        merged directory's in multiprocess mode."""
        served = self._served
        return served if served is not None else self._own_registry()

    @registry.setter
    def registry(self, registry: CollectorRegistry) -> None:
        self._served = registry

    def _own_registry(self) -> CollectorRegistry:
        """This monitor's registry, made once, when a metric object is first needed: a
        read or a scrape on the app's thread, the start when a thread of the monitor will
        read it (:meth:`_make_registry_for_monitor_threads`, :meth:`serve`), or the
        worker's tick once prometheus_client is fully imported by someone else. The
        capture-path families first, then the standard ``process_*`` collectors (or the
        bridge into the app's registry) and the scrape-time families, in the order /metrics
        shows them."""
        own = self._own
        if own is not None:
            return own
        with self._registry_lock:
            if self._own is None:
                # The package first, as a whole, from here where no import is under way on
                # this thread: an app thread importing the package meanwhile then waits for
                # ours (or we for theirs). Had we started with a submodule while another
                # thread was half way through the package, both would run its modules at
                # once and either could fail with "partially initialized module". (An app
                # thread whose first import of it is a submodule, during ours, still can:
                # CPython does not wait for a half-imported parent package; so this runs
                # on an app thread, the app importing a library it uses.) Every import
                # is done before anything is made: one that fails leaves nothing half made.
                # A thread of the monitor never gets here before prometheus_client is
                # fully imported (capture_path.prometheus_client_imported).
                import prometheus_client  # noqa: F401

                from exporter.metrics.collectors import StateCollector
                from exporter.metrics.registry import MonitorRegistry

                registry = MonitorRegistry(include_created=self.config.enable_created_series)
                self.metrics.bind(registry)
                registry.before_collect.append(self.metrics.apply_exemplars)
                registry.before_collect.append(self._count_uncounted)
                if self._user_registry is not None:
                    self._user_registry.register(RegistryBridge(registry))
                else:
                    register_standard_collectors(registry)
                registry.register(StateCollector(self))
                self._own = registry
            return self._own

    def _make_registry_for_monitor_threads(self) -> None:
        """Make the registry now, on this thread (the app's: a construction, a start, a
        setting), when the configuration has a thread of the monitor read the metrics: the
        auto-export (the callback thread writes an export, whose statistics read the
        families) or the app's callbacks (they run on the callback thread and may read
        anything). A thread of the monitor must never be the first to import
        prometheus_client (see ``capture_path.prometheus_client_imported``); the server
        makes it in :meth:`serve`, multiprocess mode and a registry of the app at once."""
        pipeline = self.pipeline
        if self.config.export_path or (
            pipeline.error_callbacks
            or pipeline.alert_callbacks
            or pipeline.pattern_callbacks
            or pipeline.regression_callbacks
        ):
            self._own_registry()

    @property
    def store_backend(self) -> tuple[str, str]:
        """(backend, release scope) of ``app_monitor_store_info``: how far the release
        health of this process reaches (a memory store's dies with the process)."""
        if self._shared_store is not None and is_postgres(self.config.store_url):
            return "postgresql", "fleet"  # the database decides, multiprocess mode or not
        if self._shared_store is not None:
            return "multiprocess", "host"  # the directory's file decides, for its workers
        if self._durable is not None:
            return "file", "host"
        return "memory", "process"

    @property
    def resources(self) -> ResourceSampler:
        """The resource sampler (the pipeline's: the first report may take its first
        reading); one set here is the one every part of the monitor reads."""
        return self.pipeline.resources

    @resources.setter
    def resources(self, sampler: ResourceSampler) -> None:
        self.pipeline.resources = sampler
        if isinstance(self.view, LocalView):
            self.view._resources = sampler

    # the account the pipeline keeps (replaced whole in a forked child)
    @property
    def store(self) -> ErrorStore:
        return self.pipeline.store

    @store.setter
    def store(self, store: ErrorStore) -> None:
        self.pipeline.store = store

    @property
    def patterns(self) -> PatternDetector:
        return self.pipeline.patterns

    @property
    def sessions(self) -> SessionTracker:
        return self.pipeline.sessions

    # -- ErrorMonitoringService's attribute-style options -------------------------------------
    @property
    def enable_terminal_output(self) -> bool:
        return self.config.enable_terminal_output

    @enable_terminal_output.setter
    def enable_terminal_output(self, value: bool) -> None:
        self.config.enable_terminal_output = bool(value)
        self.pipeline.terminal = TerminalOutput() if value else None

    @property
    def enable_resource_monitoring(self) -> bool:
        return self.config.enable_resource_monitoring

    @enable_resource_monitoring.setter
    def enable_resource_monitoring(self, value: bool) -> None:
        self.config.enable_resource_monitoring = bool(value)
        if self.running:
            (self.resources.start if value else self.resources.stop)()

    @property
    def enable_breadcrumbs(self) -> bool:
        return self.config.enable_breadcrumbs

    @enable_breadcrumbs.setter
    def enable_breadcrumbs(self, value: bool) -> None:
        self.config.enable_breadcrumbs = bool(value)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, serve: bool | None = None) -> ErrorMonitor:
        """Install the capture hooks and start the worker (and the HTTP server if configured)."""
        with self._lifecycle:
            if self.running:
                return self
            cfg = self.config
            if cfg.enable_terminal_output:
                self.pipeline.terminal = TerminalOutput()
            self._make_registry_for_monitor_threads()  # (settings changed since construction)
            self.start_worker()
            if self.sessions.process_session_id == "":
                self.sessions.process_session_id = self.sessions.start(None)
            self._install_integrations()
            self.running = True
            _running_monitors.started(self)
            if not self._exit_registered:
                register_exit_hook(self)
                self._exit_registered = True
            if serve if serve is not None else cfg.serve:
                try:
                    self.serve()
                except BaseException:
                    self.stop(timeout=0.5)  # leave the process as it was: no hooks, no threads
                    raise
        return self

    def start_worker(self) -> None:
        """Start the background threads only, without installing any capture hook."""
        self._reports.start()
        self._callbacks.start()
        if self.config.enable_resource_monitoring:
            self.resources.start()  # its thread takes the first reading, one interval later
        if self.shared is not None:
            self.shared.start()

    def _install_integrations(self) -> None:
        wanted = [*enabled_integrations(self.config), *self._extra_integrations]
        if self.config.capture_asyncio:
            wanted.append(self._asyncio_integration())
        for integration in wanted:
            integration.install(self)
            self._integrations.append(integration)

    def stop(self, timeout: float | None = None) -> None:
        """Uninstall every hook, drain the queue (bounded) and stop the threads."""
        with self._lifecycle:
            if not self.running and not self._reports.alive:  # start_worker() alone: stop it
                return
            if self.running:
                self.running = False
                _running_monitors.stopped(self)
            for integration in reversed(self._integrations):
                try:
                    integration.uninstall()
                except Exception:
                    self.note_internal_error()
            self._integrations.clear()
            if self._asyncio is not None:
                with contextlib.suppress(Exception):
                    self._asyncio.uninstall()  # loops instrumented by instrument_loop()
            timeout = self.config.exit_flush_timeout if timeout is None else timeout
            deadline = time.monotonic() + timeout
            if not self._reports.stop(timeout):
                log.warning(
                    "error-exporter stopped with %d error reports not yet processed "
                    "(flush timeout %.1f s)",
                    self._reports.depth,
                    timeout,
                )
            # Callbacks (and the auto-export they trigger) share the same budget: whatever
            # the report queue left of it, so a pattern's export still lands at exit.
            self._callbacks.stop(max(0.0, deadline - time.monotonic()))
            self.resources.stop()
            if self.shared is not None:
                self.shared.stop()
            if self._server is not None:
                self._server.stop()
                self._server = None
            if self._durable is not None:
                self._durable.close()  # what the worker's last tick left, then the file
            if self._shared_store is not None:
                self._shared_store.close()  # what is left, then the connection
                close_reader = getattr(self.view, "close", None)
                if close_reader is not None:  # the fleet reader's own connection
                    close_reader()

    def serve(self) -> Any:
        """Start the HTTP server for /metrics and /api/v1 (idempotent)."""
        if self._server is None:
            from exporter.http import MonitorServer

            self._own_registry()  # here: the server's thread reads it, never makes it

            server = MonitorServer(self, self.config.host, self.config.port)
            server.start()  # raises OSError naming host:port; keep no half-started server
            self._server = server
        return self._server

    @property
    def server(self) -> Any:
        return self._server

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every error captured so far is in the store. False on timeout."""
        return self._reports.flush(timeout)

    @property
    def queue_depth(self) -> int:
        return self._reports.depth

    def _asyncio_integration(self) -> AsyncioIntegration:
        """The asyncio hook, imported (with asyncio) only when an app wants it."""
        if self._asyncio is None:
            from exporter.integrations.asyncio_loop import AsyncioIntegration

            self._asyncio = AsyncioIntegration()
        return self._asyncio

    def instrument_loop(self, loop: Any = None) -> None:
        """Capture exceptions that reach this asyncio loop's handler (default: the running one)."""
        import asyncio

        integration = self._asyncio_integration()
        integration.monitor = self
        integration.instrument(loop or asyncio.get_running_loop())

    # -- capture path (caller's thread) ---------------------------------------------------------
    def record_error(
        self,
        error: BaseException,
        component: str = "",
        plugin: str = "",
        operation: str = "",
        context: Any = None,
        severity: str | None = None,
        metadata: Any = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> str | None:
        """Record one error the app handled; returns its group's ``error_id`` (None if it
        is not an error). The same exception object is counted once however many paths
        report it."""
        try:  # straight to the capture front: this is the hot path
            captured = self._front.capture(
                error,
                component,
                plugin,
                operation,
                context,
                severity,
                metadata,
                user_id,
                session_id,
                "record_error",
                True,
                None,
            )
            # _error_id(captured), inline: the hot path
            return captured if captured is None or isinstance(captured, str) else captured.error_id
        except Exception:
            self.note_internal_error()
            return None

    def capture_exception(
        self,
        error: BaseException,
        *,
        mechanism: str,
        handled: bool = True,
        level: int | None = None,
        component: str = "",
        plugin: str = "",
        operation: str = "",
        context: Any = None,
        severity: str | None = None,
        metadata: Any = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> str | None:
        """The capture entry of hooks: ``mechanism`` names the hook (``excepthook``,
        ``logging``, ``wsgi``...), ``handled=False`` an error nobody caught (it marks the
        session crashed), ``level`` a ``logging`` level that sets the severity."""
        try:
            return _error_id(
                self._front.capture(
                    error,
                    component,
                    plugin,
                    operation,
                    context,
                    severity,
                    metadata,
                    user_id,
                    session_id,
                    mechanism,
                    handled,
                    level,
                )
            )
        except Exception:
            self.note_internal_error()
            return None

    def record_error_now(
        self,
        error: BaseException,
        plugin: str = "",
        operation: str = "",
        context: Any = None,
    ) -> ErrorRecord | None:
        """``record_error``, returning the occurrence's record formatted on this thread.

        For ``ErrorAggregator.record_error``, whose callers get the record back at once.
        """
        try:
            captured = self._front.capture(
                error,
                "",
                plugin,
                operation,
                context,
                None,
                None,
                None,
                None,
                "record_error",
                True,
                None,
                detail=True,
            )
            if not isinstance(captured, Occurrence):
                return None
            builder = self.builder
            message = builder.message(captured.message)
            return builder.record(captured, message, builder.context(captured)).materialize()
        except Exception:
            self.note_internal_error()
            return None

    def capture_unhandled(
        self, error: BaseException, mechanism: str, context: dict[str, Any] | None = None
    ) -> str | None:
        """An error nobody handled (``capture_exception(..., handled=False)``)."""
        return self.capture_exception(error, mechanism=mechanism, handled=False, context=context)

    def add_breadcrumb(
        self,
        action: str,
        component: str = "",
        data: dict[str, Any] | None = None,
        level: str = "info",
        category: str = "default",
        session_id: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Remember an action; the next error in this session carries the last ones
        (``timestamp``: when it happened, if not now)."""
        if not self.config.enable_breadcrumbs:
            return
        try:
            crumb = Breadcrumb(
                time.time() if timestamp is None else timestamp,
                self.scrubber.text(safe_text(action), 1024),
                _label_text(component),
                self.scrubber.clean(data) if data else {},
                safe_text(level),
                safe_text(category),
            )
            self.sessions.add_breadcrumb(crumb, session_id)
        except Exception:
            self.note_internal_error()

    def observe_operation(
        self, component: str, plugin: str, operation: str, ok: bool | str, seconds: float
    ) -> None:
        """Time one operation; ``ok`` is True / False (``ok`` / ``error``) or the outcome
        itself (a task's ``retry`` or ``ignored``)."""
        try:
            outcome = ok if isinstance(ok, str) else "ok" if ok else "error"
            self.metrics.observe_operation(component, plugin, operation, outcome, seconds)
        except Exception:
            self.note_internal_error()

    def count_task_retry(self, component: str, operation: str, error_type: str) -> None:
        """A task or job that will run again: ``app_task_retries_total`` (not an error)."""
        try:
            self.metrics.count_task_retry(component, operation, error_type)
        except Exception:
            self.note_internal_error()

    def capture(
        self,
        component: str = "",
        plugin: str = "",
        operation: str = "",
        reraise: bool = True,
        severity: str | None = None,
        context: Any = None,
    ) -> CaptureBlock:
        """Time a block into app_operation_duration_seconds and record what escapes it.

        Works as ``with monitor.capture(...)`` and ``async with monitor.capture(...)``.
        """
        return CaptureBlock(self, component, plugin, operation, reraise, severity, context)

    # -- callbacks ---------------------------------------------------------------------------
    def register_error_callback(self, callback: ErrorCallback) -> None:
        """Called (on the callback thread) with each ErrorReport."""
        self.pipeline.error_callbacks.append(callback)
        self._make_registry_for_monitor_threads()

    def register_alert_callback(self, callback: ErrorCallback) -> None:
        """Called with reports whose priority is high or critical."""
        self.pipeline.alert_callbacks.append(callback)
        self._make_registry_for_monitor_threads()

    def register_pattern_callback(self, callback: PatternCallback) -> None:
        """Called with each ErrorPattern when it is first detected."""
        self.pipeline.pattern_callbacks.append(callback)
        self._make_registry_for_monitor_threads()

    on_pattern_detected = register_pattern_callback

    def register_regression_callback(self, callback: ErrorCallback) -> None:
        """Called with the ErrorReport that brought a resolved group back (a coalesced
        repeat has none of its own: the group's latest report)."""
        self.pipeline.regression_callbacks.append(callback)
        self._make_registry_for_monitor_threads()

    # -- release health ------------------------------------------------------------------------
    def set_app_version(self, version: str) -> None:
        """A deploy without a restart: errors captured from now on belong to ``version``
        (new groups, last seen version, the release counters' label, reports' environment).
        Raises ValueError naming ``app_version`` when it is not a non-empty string."""
        version = check_version(version)
        self.builder.set_app_version(version)
        self.config.app_version = version
        self.metrics.release_started(version)

    # -- failures inside the monitor ----------------------------------------------------------
    def note_internal_error(self, exc: BaseException | None = None) -> None:
        """Count a failure inside the monitor; log the first one. Never raises."""
        try:
            self.metrics.count_internal_error()
        except Exception:  # e.g. no stack left (RecursionError): a plain add always works
            self._uncounted_internal += 1  # moved into the counter at the next read
            return
        try:
            if not self._warned_internal:
                self._warned_internal = True
                log.warning(
                    "error-exporter internal failure (counted, not re-captured): %r",
                    exc,
                    exc_info=exc is None,
                )
        except Exception:
            pass

    def _count_uncounted(self) -> None:
        pending = self._uncounted_internal
        if pending:
            self._uncounted_internal -= pending
            self.metrics.families().internal_errors.inc(pending)

    def export_to_file(self, filepath: str | Path, **filters: Any) -> Path:
        """Write the export atomically (0600). Raises OSError if the file cannot be written."""
        return json_export.write_atomic(
            filepath, json_export.document_text(self.export_data(**filters))
        )

    def __repr__(self) -> str:
        return f"<ErrorMonitor running={self.running} groups={len(self.store.groups)}>"

    # -- process events ------------------------------------------------------------------------
    def _before_fork(self) -> None:
        """A fork waits while another thread makes the registry: it may be importing
        prometheus_client (an app thread's read), and a child forked meanwhile would find
        the module half imported and its import lock held by a thread the child does not
        have (it would hang at its first metric). The lock is held only while the registry
        is made (once per process): any other fork takes it at once."""
        self._registry_lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._registry_lock.release()

    def _after_fork_in_child(self) -> None:
        """The child starts its own account: threads, locks and (single-process mode)
        counts, groups, patterns and sessions are the child's alone."""
        self._lifecycle = threading.RLock()
        self._registry_lock = threading.RLock()  # the forking thread's, held (_before_fork)
        self._reports.after_fork_in_child()
        self.resources.after_fork()
        self._budget.reset()
        self.pipeline.after_fork(fresh_account=self.shared is None)
        if self._shared_store is not None:  # the child writes the fleet's store too
            self.pipeline.store = self._shared_store.after_fork_in_child(self.pipeline.store)
        self._server = None
        if self.running:
            self._reports.start()
            self._callbacks.start()
            if self.config.enable_resource_monitoring:
                self.resources.start()
        if self.shared is not None:
            self.shared.after_fork_in_child(self.running)

    def _at_exit(self) -> None:
        """Flush for at most ``exit_flush_timeout`` seconds; never hang shutdown."""
        if not self.running:
            return
        self.sessions.end_all()
        self.stop(self.config.exit_flush_timeout)


def _error_id(captured: Occurrence | str | None) -> str | None:
    """The group id of what the capture front returned (an occurrence, or the id alone)."""
    return captured if captured is None or isinstance(captured, str) else captured.error_id
