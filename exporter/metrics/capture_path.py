"""Metric families updated on the capture path, with bounded label values.

The caller's thread increments these directly so counts are exact even when detailed
reports are dropped. Children are cached per raw label tuple (a dict lookup instead of
``.labels()``), and each label keeps at most ``label_value_limit`` distinct values:
later ones become ``other`` and are counted in ``app_label_values_overflow_total``.

The prometheus_client objects (:mod:`.registry`) are made when first needed, not at the
start: importing prometheus_client is a large share of a monitor's start-up, and a process
that never errs and is never scraped never needs them. They are made on the thread that
needs them (an app's read), never by a thread of the monitor unless prometheus_client is
already fully imported (see :func:`prometheus_client_imported`). Until then nothing is lost:
errors are counted without them (``itertools.count``), operations queued (then folded into
pure-Python tallies), the rare counts (drops, internal errors, groups, recoveries, retries,
overflows) kept in a small pending table applied once when the families are made, and what
the start decides (the drop reasons, the running release) remembered, so every series
still exists at 0 from the first read on.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from exporter.capture.tally import count_value
from exporter.metrics.histogram_batch import BulkObserver, TimingTally
from exporter.release import version_label
from exporter.scrub import fix_surrogates, safe_text

if TYPE_CHECKING:  # imported when a metric object is first needed (see above)
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from exporter.metrics.registry import Families

OVERFLOW_VALUE = "other"
_OVERFLOW_MEMORY = 10000  # overflowing values remembered per label (counted once each)
MAX_LABEL_LENGTH = 100
# The labels of app_errors_total, in order: the one place they are named.
ERROR_LABELS = ("error_type", "component", "plugin", "severity")
DROP_REASONS = (
    "queue_full",
    "callback_queue_full",
    "store_evicted",
    "export_failed",
    "coalesced",
    "capture_failed",
)
OPERATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RECOVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_CHILD_CACHE_LIMIT = 10000
# operations timed but not yet in their histogram: past this many the caller folds them in
_PENDING_OBSERVATIONS_LIMIT = 50000
# OpenMetrics: an exemplar's label names and values together are at most 128 characters
MAX_EXEMPLAR_LABEL_CHARS = 128


Latest = tuple[str, "tuple[int, int] | None", float]  # error id, trace ids, time
# (family attribute of Families, label values): an amount counted before the families existed
PendingKey = tuple[str, tuple[str, ...]]


def prometheus_client_imported() -> bool:
    """Whether prometheus_client is fully imported, by whichever thread: only then may a
    thread of the monitor (the report worker's tick) make the families.

    Making them imports prometheus_client when nobody has yet, and CPython does not make a
    thread importing one of its submodules (``from prometheus_client.core import ...``, as
    an app's custom collector does) wait for another thread's half-done import of the
    package: the app's import would fail with ImportError while our thread is at it. An app
    thread may import it (that is the app importing a library); the monitor's threads only
    once it is complete, when making the families imports nothing but our own
    :mod:`.registry`, whose imports of prometheus_client are then all loaded.
    """
    module = sys.modules.get("prometheus_client")
    if module is None:
        return False
    return not getattr(getattr(module, "__spec__", None), "_initializing", False)


class _ErrorCount:
    """One app_errors_total series and the errors counted for it on the callers' threads.

    The capture path counts with ``next(calls)`` (capture/tally.py), several times cheaper than
    the child's locked ``inc()``; :meth:`ErrorMetrics.apply_counts` moves the difference
    into the child before any read. ``labels`` are the series' (limited) label values;
    ``child`` is None until the families exist (apply_counts looks it up then).
    """

    __slots__ = ("applied", "calls", "child", "delivered", "labels", "latest", "retired_applies")

    def __init__(self, labels: tuple[str, str, str, str], child: Any = None) -> None:
        self.labels = labels
        self.child = child
        self.calls = itertools.count()
        self.delivered = 0
        # the latest error (its id, trace and time; one tuple, so a reader on another
        # thread never mixes two errors): the next scrape's exemplar
        self.latest: Latest | None = None
        self.applied: Latest | None = None
        self.retired_applies = 0

    def count(
        self, error_id: str, trace: tuple[int, int] | None, at_once: bool, when: float
    ) -> None:
        """One error at ``when``; ``at_once``: straight into the child (multiprocess value
        files)."""
        if at_once:
            self.child.inc()
        else:
            next(self.calls)
        self.latest = (error_id, trace, when)  # the exemplar at the next scrape

    def fresh_after_retire(self) -> bool:
        """Out of the cache, applied twice more (a caller may have held it meanwhile)."""
        self.retired_applies += 1
        return self.retired_applies < 2


class RegistryBridge:
    """Exposes the monitor's registry through a registry the user supplied."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


class LabelLimiter:
    """Caps the distinct values of each label; the rest become ``other``.

    ``on_overflow(label)`` counts a value that became ``other`` (called without the lock
    held: counting may make the metric families, see the module's docstring)."""

    def __init__(
        self, default_limit: int, limits: dict[str, int], on_overflow: Callable[[str], None]
    ) -> None:
        self.default_limit = default_limit
        self.limits = limits
        self._on_overflow = on_overflow
        self._seen: dict[str, set[str]] = {}
        # values already counted as overflowing: each is counted once, not at every
        # lookup (scrapes look plugin and error_type values up again each time)
        self._overflowed: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def reset(self) -> None:
        self._seen = {}
        self._overflowed = {}
        self._lock = threading.Lock()

    def value(self, label: str, raw: Any) -> str:
        text = _label_text(raw)
        seen = self._seen.get(label)
        if seen is not None and text in seen:
            return text
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if text in seen or text == "":
                return text
            if len(seen) < self.limits.get(label, self.default_limit):
                seen.add(text)
                return text
            overflowed = self._overflowed.setdefault(label, set())
            if text in overflowed:
                return OVERFLOW_VALUE
            if len(overflowed) < _OVERFLOW_MEMORY:
                overflowed.add(text)
        self._on_overflow(label)
        return OVERFLOW_VALUE


def exemplar_labels(error_id: str, trace_id: str | None) -> dict[str, str]:
    """``{error_id, trace_id}`` within OpenMetrics' 128 characters for an exemplar's labels:
    the error id always (cut if it alone were too long), the trace id when it fits."""
    error_id = error_id[: MAX_EXEMPLAR_LABEL_CHARS - len("error_id")]
    labels = {"error_id": error_id}
    if trace_id and (
        len("error_id") + len(error_id) + len("trace_id") + len(trace_id)
        <= MAX_EXEMPLAR_LABEL_CHARS
    ):
        labels["trace_id"] = trace_id
    return labels


def _label_text(raw: Any) -> str:
    if raw is None:
        return ""
    text = fix_surrogates(raw) if isinstance(raw, str) else safe_text(raw)
    if len(text) > MAX_LABEL_LENGTH:
        text = text[:MAX_LABEL_LENGTH]
    return text


class ErrorMetrics:
    """The capture-path families of one monitor.

    ``registry`` is called when a metric object is first needed and returns the registry
    the families belong in; its owner may :meth:`bind` them into it meanwhile (the monitor
    does, to register its other collectors after them). Every read makes them (on the
    reader's thread: the app's, or a thread of the monitor whose configuration made them at
    the start); the worker's tick (:meth:`apply_counts_if_made`) only once prometheus_client
    is fully imported. The hot paths (:meth:`count_error`, :meth:`observe_operation`) and
    the rare counts (:meth:`_count`) never make them: they wait in pending structures
    applied exactly once, in :meth:`bind`.
    """

    def __init__(
        self,
        registry: Callable[[], CollectorRegistry],
        namespace: str = "app",
        label_value_limit: int = 100,
        label_value_limits: dict[str, int] | None = None,
    ) -> None:
        self._registry_source = registry
        self.namespace = namespace
        self._built: Families | None = None
        self._build_lock = threading.Lock()
        # the release label of every version started so far: both release counters get
        # their series at 0 when the families are made (see release_started)
        self._release_labels: list[str] = []
        self.limiter = LabelLimiter(
            label_value_limit, dict(label_value_limits or {}), self._count_overflow
        )
        self._error_children: dict[tuple[Any, ...], _ErrorCount] = {}
        self._retired: list[_ErrorCount] = []  # dropped from the cache, counts to apply
        # bumped when the cache is emptied: entries held elsewhere must be looked up again
        self.generation = 0
        # multiprocess mode: other processes read the child's value file whenever they
        # scrape (set by count_at_once, once the families exist)
        self.counts_at_once = False
        self._apply_lock = threading.Lock()
        self._op_children: dict[tuple[Any, ...], Any] = {}
        # ((component, plugin, operation, outcome), seconds) of operations timed since the
        # last apply_counts(): appending is atomic and lock-free, the histogram's two locked
        # increments are paid off the request (see observe_operation)
        self._pending_observations: deque[tuple[tuple[Any, ...], float]] = deque()
        # Before the families exist (applied and emptied by bind, under _pending_lock):
        # the rare counts, and the timings folded out of the queue past its limit and the
        # recovery durations, per (limited) label set
        self._pending_lock = threading.Lock()
        self._pending_counts: dict[PendingKey, float] = {}
        self._operation_tallies: dict[tuple[str, ...], TimingTally] = {}
        self._recovery_tallies: dict[tuple[str, ...], TimingTally] = {}

    # -- the prometheus_client families, made when first needed ---------------------------
    @property
    def materialized(self) -> bool:
        """Whether the families exist (prometheus_client is imported)."""
        return self._built is not None

    def bind(self, registry: CollectorRegistry) -> Families:
        """Make the families in ``registry`` (once: later calls return the first ones),
        with the series the start decided at 0 (each drop reason, each release started) and
        what was counted meanwhile (the pending table and tallies, applied here once)."""
        with self._build_lock:
            built = self._built
            if built is None:
                from exporter.metrics.registry import Families

                built = Families(
                    registry, self.namespace, ERROR_LABELS, OPERATION_BUCKETS, RECOVERY_BUCKETS
                )
                for reason in DROP_REASONS:
                    built.dropped.labels(reason)
                for label in self._release_labels:
                    built.groups_new.labels(label)
                    built.groups_regressed.labels(label)
                # A count either lands in the table before this empties it, or sees the
                # families (published only once the table is in them: a read never misses it)
                with self._pending_lock:
                    self._apply_pending(built)
                    self._built = built
            return built

    def _apply_pending(self, built: Families) -> None:
        """The pending table and tallies into ``built`` (``_pending_lock`` held)."""
        for (family, labels), amount in self._pending_counts.items():
            metric = getattr(built, family)
            (metric.labels(*labels) if labels else metric).inc(amount)
        for labels, tally in self._operation_tallies.items():
            BulkObserver(built.operation_duration.labels(*labels)).add(tally)
        for labels, tally in self._recovery_tallies.items():
            BulkObserver(built.recovery_duration.labels(*labels)).add(tally)
        self._pending_counts = {}
        self._operation_tallies = {}
        self._recovery_tallies = {}

    def _count(self, family: str, labels: tuple[str, ...] = (), amount: float = 1) -> None:
        """A rare count (``family``: an attribute of :class:`Families`): into its child, or
        into the pending table until the families exist (never making them: the caller may
        be a thread of the monitor, see :func:`prometheus_client_imported`)."""
        built = self._built
        if built is None:
            with self._pending_lock:
                built = self._built
                if built is None:
                    key = (family, labels)
                    self._pending_counts[key] = self._pending_counts.get(key, 0) + amount
                    return
        metric = getattr(built, family)
        (metric.labels(*labels) if labels else metric).inc(amount)

    def families(self) -> Families:
        """The prometheus_client families (``families().errors``...), made now if not yet,
        in the owner's registry (never call it from a thread of the monitor before
        prometheus_client is imported: see :func:`prometheus_client_imported`)."""
        built = self._built
        if built is None:
            # the owner's registry, made now; it may have bound us in it already
            built = self.bind(self._registry_source())
        return built

    def count_at_once(self) -> None:
        """Count straight into the children from now on (multiprocess mode: another
        process may read their value files at any moment); makes the families now."""
        self.families()
        self.counts_at_once = True

    # -- the capture path ----------------------------------------------------------------
    def count_error(
        self,
        error_type: str,
        component: Any,
        plugin: Any,
        severity: str,
        error_id: str,
        trace: tuple[int, int] | None = None,
        when: float | None = None,
    ) -> _ErrorCount:
        """One captured error, counted without a lock (see :class:`_ErrorCount`); the
        exemplar is kept to the latest id (and the latest error's trace: ``(trace_id,
        span_id)`` as ints, or None). Returns the entry: a caller may count into it
        directly while :attr:`generation` stays the same."""
        key = (error_type, component, plugin, severity)
        try:
            entry = self._error_children.get(key)
        except TypeError:  # unhashable label value
            key = (error_type, _label_text(component), _label_text(plugin), severity)
            entry = self._error_children.get(key)
        if entry is None:
            entry = self._error_child(key)
        entry.count(error_id, trace, self.counts_at_once, time.time() if when is None else when)
        return entry

    def apply_counts(self) -> None:
        """Move the errors counted and the operations timed since the last call into their
        children (app_errors_total, app_operation_duration_seconds).

        Runs before every read of the families (scrape, statistics); the worker's tick
        calls :meth:`apply_counts_if_made` instead. With nothing counted yet it returns at
        once, without making the families.
        """
        built = self._built
        if built is None:
            if not (
                self._error_children
                or self._retired
                or self._pending_observations
                or self._pending_counts
                or self._operation_tallies
                or self._recovery_tallies
            ):
                return
            built = self.families()  # before the lock: making them takes the owner's
        with self._apply_lock:
            retired, self._retired = self._retired, []
            for entry in [*retired, *self._error_children.values()]:
                total = count_value(entry.calls)
                if total != entry.delivered:
                    child = entry.child
                    if child is None:  # counted before the families existed
                        child = entry.child = built.errors.labels(*entry.labels)
                    child.inc(total - entry.delivered)
                    entry.delivered = total
            self._retired = [entry for entry in retired if entry.fresh_after_retire()]
        self._apply_observations()

    def apply_counts_if_made(self) -> None:
        """The worker's tick (every 0.25 s: what a multiprocess scrape or a forked child
        sees): :meth:`apply_counts`, making the families first only if prometheus_client is
        fully imported already (:func:`prometheus_client_imported`); else everything waits,
        exact, for the first read."""
        if self._built is not None or prometheus_client_imported():
            self.apply_counts()

    def _apply_observations(self) -> None:
        """The pending timings into their histogram children, a batch per child: each
        touched bucket and the sum incremented once per batch, not once per request; folded
        into tallies instead while the families do not exist (this runs on a request's
        thread then, past the queue's limit: no 40 ms import in the middle of a request).
        ``popleft`` is atomic: two threads applying at once (a scrape and the worker's tick)
        take different ones, and a request appending meanwhile is taken by this round or
        the next, never lost."""
        pending = self._pending_observations
        take = pending.popleft
        batches: dict[tuple[Any, ...], list[float]] = {}
        for _ in range(len(pending)):  # what is there now; later ones wait for the next round
            try:
                key, seconds = take()
            except IndexError:  # the other applier took the last ones
                break
            try:
                batch = batches.get(key)
            except TypeError:  # an unhashable label value: made text, as a label would be
                key = tuple(_label_text(v) for v in key)
                batch = batches.get(key)
            if batch is None:
                batches[key] = [seconds]
            else:
                batch.append(seconds)
        for key, values in batches.items():
            try:
                if self._built is None:
                    self._fold(key, values)
                else:
                    self._observe_many(key, values)
            except Exception:  # a label value that cannot be one: these timings only are lost
                self.count_internal_error()

    def _fold(self, key: tuple[Any, ...], values: Sequence[float]) -> None:
        """Timings of one label set into its tally (the families do not exist yet): as many
        tallies as label sets, each label's values limited as a child's would be."""
        limit = self.limiter.value
        labels = (
            limit("component", key[0]),
            limit("plugin", key[1]),
            limit("operation", key[2]),
            key[3],  # the outcome, as _observe_many labels it
        )
        with self._pending_lock:
            if self._built is None:
                tally = self._operation_tallies.get(labels)
                if tally is None:
                    tally = self._operation_tallies[labels] = TimingTally(OPERATION_BUCKETS)
                tally.add(values)
                return
        self._observe_many(key, values)  # made meanwhile

    def apply_exemplars(self) -> None:
        """Counts into the children, then each child's exemplar set to its latest error:
        its id, trace id and time, so the exemplar follows the latest occurrence.

        Done at scrape time, not per error: building an exemplar costs more than the
        increment itself, and only the latest one is ever exposed.
        """
        from prometheus_client.samples import Exemplar  # made by now: this is a scrape

        self.apply_counts()
        for entry in list(self._error_children.values()):
            latest = entry.latest
            if latest is None or latest == entry.applied or entry.child is None:
                continue  # (no child: counted after apply_counts, the next scrape's)
            entry.applied = latest
            error_id, trace, when = latest
            value = getattr(entry.child, "_value", None)
            if value is not None and hasattr(value, "set_exemplar"):
                trace_id = f"{trace[0]:032x}" if trace is not None else None
                value.set_exemplar(Exemplar(exemplar_labels(error_id, trace_id), 1.0, when))

    def _error_child(self, key: tuple[Any, ...]) -> _ErrorCount:
        limit = self.limiter.value
        labels = (
            limit("error_type", key[0]),
            limit("component", key[1]),
            limit("plugin", key[2]),
            key[3],
        )
        built = self._built  # none yet: apply_counts looks the child up once they exist
        entry = _ErrorCount(labels, None if built is None else built.errors.labels(*labels))
        if len(self._error_children) > _CHILD_CACHE_LIMIT:
            with self._apply_lock:  # their counts are still applied (twice more, see above)
                self._retired.extend(self._error_children.values())
                self._error_children = {}
                self.generation += 1
        self._error_children[key] = entry
        return entry

    def observe_operation(
        self, component: Any, plugin: Any, operation: Any, outcome: str, seconds: float
    ) -> None:
        """Time one operation: queued (one atomic append, no lock: this runs for every
        request) and put into its histogram child before the next read
        (:meth:`apply_counts`); at once where another process reads the value files at any
        moment (multiprocess mode)."""
        key: tuple[Any, ...] = (component, plugin, operation, outcome)
        if self.counts_at_once:
            try:
                hash(key)
            except TypeError:
                key = tuple(_label_text(v) for v in key)
            self._observe_many(key, (seconds,))
            return
        pending = self._pending_observations
        pending.append((key, seconds))
        if len(pending) > _PENDING_OBSERVATIONS_LIMIT:  # no tick for a while: bounded
            self._apply_observations()

    def _observe_many(self, key: tuple[Any, ...], values: Sequence[float]) -> None:
        """Timings of one label set (hashable) into its child, created on first use."""
        observe = self._op_children.get(key)  # (made by now: see the callers)
        if observe is None:
            limit = self.limiter.value
            child = self.families().operation_duration.labels(
                limit("component", key[0]),
                limit("plugin", key[1]),
                limit("operation", key[2]),
                key[3],
            )
            observe = BulkObserver(child)
            if len(self._op_children) > _CHILD_CACHE_LIMIT:
                self._op_children.clear()
            self._op_children[key] = observe
        observe(values)

    def count_task_retry(self, component: Any, operation: Any, error_type: Any) -> None:
        limit = self.limiter.value
        labels = (
            limit("component", component),
            limit("operation", operation),
            limit("error_type", error_type),
        )
        self._count("task_retries", labels)

    def count_recovery(
        self, component: Any, plugin: Any, success: bool, seconds: float | None
    ) -> None:
        """One recovery attempt, and its duration when known (the duration into a tally
        while the families do not exist, as :meth:`_count` does for the count)."""
        limit = self.limiter.value
        labels = (limit("component", component), limit("plugin", plugin))
        self._count("recoveries", (*labels, "success" if success else "failure"))
        if seconds is None:
            return
        if self._built is None:
            with self._pending_lock:
                if self._built is None:
                    tally = self._recovery_tallies.get(labels)
                    if tally is None:
                        tally = self._recovery_tallies[labels] = TimingTally(RECOVERY_BUCKETS)
                    tally.add((seconds,))
                    return
        self.families().recovery_duration.labels(*labels).observe(max(seconds, 0.0))

    def after_fork(self) -> None:
        """Another thread of the parent may have held a lock at the fork."""
        self.limiter.after_fork()
        self._apply_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._pending_lock = threading.Lock()

    def reset(self) -> None:
        """Start every family from zero (a forked child counts its own errors only).

        Its locks are made anew first: another thread of the parent may have held one at
        the fork."""
        self._apply_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending_counts = {}  # the parent's
        self._operation_tallies = {}
        self._recovery_tallies = {}
        built = self._built
        self._release_labels = []  # the child's pipeline starts its release again
        if built is not None:
            built.clear()
            for reason in DROP_REASONS:
                built.dropped.labels(reason)
        self._error_children.clear()
        self._retired.clear()
        self.generation += 1
        self._op_children.clear()
        self._pending_observations.clear()  # the parent's, not this child's
        self.limiter.reset()

    def release_started(self, version: str | None) -> None:
        """Both release counters exist at 0 for a version as soon as it runs, so a rate or
        an increase sees its first group (a series born at 1 shows no increase). Before
        the families exist the version is remembered: :meth:`bind` makes its series."""
        label = self.limiter.value("app_version", version_label(version))
        with self._build_lock:  # either bind sees the label, or we see its families
            if label not in self._release_labels:
                self._release_labels.append(label)
            built = self._built
        if built is not None:
            built.groups_new.labels(label)
            built.groups_regressed.labels(label)

    def count_new_group(self, version: str | None) -> None:
        self._count("groups_new", (self.limiter.value("app_version", version_label(version)),))

    def count_regressed_group(self, version: str | None) -> None:
        label = self.limiter.value("app_version", version_label(version))
        self._count("groups_regressed", (label,))

    def count_drop(self, reason: str, amount: int = 1) -> None:
        self._count("dropped", (reason,), amount)

    def count_internal_error(self) -> None:
        self._count("internal_errors")

    def _count_overflow(self, label: str) -> None:
        self._count("label_overflow", (label,))

    def error_totals(self) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of every app_errors_total series: the exact counts."""
        self.apply_counts()
        out = []
        for metric in self.families().errors.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    out.append((sample.labels, sample.value))
        return out

    def recovery_totals(self) -> dict[str, float]:
        totals = {"success": 0.0, "failure": 0.0}
        for metric in self.families().recoveries.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    totals[sample.labels["result"]] += sample.value
        return totals

    def dropped_total(self) -> float:
        return sum(
            s.value
            for m in self.families().dropped.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )
