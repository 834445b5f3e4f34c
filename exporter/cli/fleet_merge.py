"""The fleet view of reports: every instance Prometheus scrapes, merged into one export.

Metrics already scale through Prometheus (federation, remote_write); reports live in each
process. Prometheus knows every instance, so it serves as the directory:

1. ``discover`` asks ``/api/v1/targets?state=active`` for the targets of one job; the API
   of a target is at the same scheme, host and port as its scrape URL (a path prefix in
   front of ``/metrics`` is kept, for apps that mount the monitor under a prefix).
2. ``fetch_all`` fetches each instance's ``/api/v1/export`` (every page, following
   ``next_cursor``) and its group list (``/api/v1/errors``) concurrently, each within a
   per-target time budget. A target that is down, too slow, refuses the token or answers
   something that is not an export is a failed ``InstanceResult`` with its reason; the
   others still merge.
3. ``merge`` folds the exports into one document with the export's top-level shape
   (exported_at, summary, statistics, analysis, all_records, next_cursor) plus ``fleet``:
   the targets with their status and the merged groups with a per-instance breakdown.

Groups merge by ``error_id``: counts summed, first seen the earliest and last seen the latest
across hosts (epoch numbers and ISO 8601 strings both compare by the instant they name),
the most severe severity, the newest message and location. ``affected_users`` is summed, so
it is an upper bound when the same user hits several hosts. Export filters (``--since``
...) and ``--limit`` apply to each instance's records; summaries and groups are, as for a
single instance, not filtered.
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.cli import to_epoch
from exporter.cli.client import (
    ApiClient,
    ApiError,
    AuthRequired,
    ClientAccess,
    ConnectionFailed,
    HttpStatusError,
    NotJson,
)
from exporter.model import PATTERN_SEVERITY_VALUE, SEVERITY_RANK, iso_time

DEFAULT_JOB = "error-exporter"  # the job name of the README's and deploy/'s scrape config
DEFAULT_TARGET_TIMEOUT = 10.0
MAX_WORKERS = 16
GROUP_LIMIT = 10000  # the API's largest ?limit= for /api/v1/errors
TOP_N = 10  # top errors in the merged analysis, as one instance's analysis has
RECENT_N = 20  # recent errors in the merged summary, as one instance's summary has

EXIT_OK = 0  # every target merged
EXIT_FAILED = 1  # Prometheus unreachable, no target in the job, or no target answered
EXIT_PARTIAL = 3  # some targets merged, some failed: the view is partial

STATUSES = ("ok", "down", "timeout", "unauthorized", "invalid")
_FIRST_KEYS = ("first_occurrence", "first_seen")
_LAST_KEYS = ("last_occurrence", "last_seen")


class FleetError(ApiError):
    """Prometheus cannot serve as the directory (unreachable, not Prometheus, no targets)."""


@dataclass(frozen=True)
class Target:
    """One active target of the job: its ``instance`` label and the API's base URL."""

    instance: str
    url: str
    scrape_url: str = ""
    health: str = ""  # Prometheus's view at its last scrape: up, down or unknown
    last_error: str = ""


@dataclass
class InstanceResult:
    """What one target gave: its export and groups when ``status`` is ok, else the reason."""

    target: Target
    status: str = "ok"
    reason: str = ""
    document: dict[str, Any] | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def record_count(self) -> int:
        return len((self.document or {}).get("all_records") or [])

    def entry(self) -> dict[str, Any]:
        """This instance in the document's ``fleet.instances``."""
        stats = (self.document or {}).get("statistics")
        return {
            "instance": self.target.instance,
            "url": self.target.url,
            "status": self.status,
            "reason": self.reason or None,
            "records": self.record_count if self.ok else None,
            "groups": len(self.groups) if self.ok else None,
            "scrape_health": self.target.health or None,
            "last_scrape_error": self.target.last_error or None,
            "exported_at": (self.document or {}).get("exported_at"),
            "seconds": round(self.seconds, 3),
            "resources": stats.get("resources") if isinstance(stats, dict) else None,
        }


class _Invalid(ApiError):
    """The instance answered JSON, but not an export."""


class _Abandoned(Exception):
    """The per-target budget ran out while the fetch was still paging."""


# -- discovery ------------------------------------------------------------------------


def api_base(scrape_url: str) -> str:
    """The API's base URL from a scrape URL: same scheme, host and port; a path prefix in
    front of ``/metrics`` is kept, the query is dropped."""
    parts = urllib.parse.urlsplit(scrape_url)
    path = parts.path.rstrip("/")
    path = path[: -len("/metrics")] if path.endswith("/metrics") else ""
    return urllib.parse.urlunsplit((parts.scheme or "http", parts.netloc, path, "", ""))


def discover(prometheus: str, job: str, timeout: float = DEFAULT_TARGET_TIMEOUT) -> list[Target]:
    """The active targets of ``job`` according to Prometheus (raises FleetError)."""
    client = ApiClient(prometheus, token="", timeout=timeout)
    where = client.url_for("/api/v1/targets")
    try:
        payload = client.get_object("/api/v1/targets", {"state": "active"})
    except ApiError as exc:
        raise FleetError(f"Prometheus at {client.base_url}: {exc.reason}", exc.reason) from None
    data = payload.get("data")
    active = data.get("activeTargets") if isinstance(data, dict) else None
    if payload.get("status") != "success" or not isinstance(active, list):
        raise FleetError(
            f"{where} is not Prometheus's targets API (no data.activeTargets)",
            "not a Prometheus targets answer",
        )
    targets: list[Target] = []
    seen_urls: set[str] = set()
    names: dict[str, int] = {}
    jobs: set[str] = set()
    for item in active:
        if not isinstance(item, dict):
            continue
        found = item.get("labels")
        labels: dict[str, Any] = found if isinstance(found, dict) else {}
        item_job = str(labels.get("job") or item.get("scrapePool") or "")
        jobs.add(item_job)
        scrape_url = str(item.get("scrapeUrl") or "")
        if item_job != job or not scrape_url:
            continue
        url = api_base(scrape_url)
        if url in seen_urls:
            continue
        seen_urls.add(url)
        name = str(labels.get("instance") or urllib.parse.urlsplit(scrape_url).netloc)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # relabelling gave two targets one instance label
            name = f"{name}#{names[name]}"
        targets.append(
            Target(
                name,
                url,
                scrape_url,
                str(item.get("health") or ""),
                str(item.get("lastError") or ""),
            )
        )
    if not targets:
        known = ", ".join(sorted(j for j in jobs if j)) or "none"
        raise FleetError(
            f"Prometheus at {client.base_url} has no active target in job "
            f"{job!r} (jobs it scrapes: {known}); pass --job",
            f"no active target in job {job!r}",
        )
    return sorted(targets, key=lambda t: t.instance)


def refuse_shared_store(prometheus: str, job: str, timeout: float = DEFAULT_TARGET_TIMEOUT) -> None:
    """Raise FleetError when ``job`` writes a shared store (``store_url``): each of its
    instances already answers for the whole fleet, so summing them would count every
    error once per instance. Any one instance (``--url``) or the store (``--store``) is
    the fleet's picture then."""
    client = ApiClient(prometheus, token="", timeout=timeout)
    quoted = job.replace("\\", "\\\\").replace('"', '\\"')
    query = f'{{__name__=~".+_monitor_store_info", release_scope="fleet", job="{quoted}"}}'
    try:
        payload = client.get_object("/api/v1/query", {"query": query})
    except ApiError:
        return  # an older Prometheus or a failed query: the targets say the rest
    data = payload.get("data")
    found = data.get("result") if isinstance(data, dict) else None
    if isinstance(found, list) and found:
        raise FleetError(
            f"job {job!r} writes a shared store (store_url): any one of its instances "
            "already shows the whole fleet; read one with --url, or the store with --store "
            "URL (summing the instances would count each error once per instance)",
            "a shared store: read one instance",
        )


# -- fetching -------------------------------------------------------------------------


def _check_export(client: ApiClient, doc: dict[str, Any]) -> None:
    for key in ("summary", "statistics", "analysis"):
        if key in doc and doc[key] is not None and not isinstance(doc[key], dict):
            raise _Invalid(
                f"{client.base_url}: {key} is not an object",
                f"the export's {key} is not a JSON object",
            )
    if not all(isinstance(r, dict) for r in doc.get("all_records") or []):
        raise _Invalid(
            f"{client.base_url}: records are not objects",
            "the export's records are not JSON objects",
        )
    if "exported_at" not in doc:
        raise _Invalid(
            f"{client.base_url}: no exported_at", "the answer is not an export (no exported_at)"
        )


def _groups_from_analysis(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Group summaries from an export's top errors (instances without /api/v1/errors)."""
    analysis = doc.get("analysis") or {}
    groups = []
    for item in analysis.get("top_errors") or []:
        if isinstance(item, dict) and item.get("error_id"):
            found = item.get("report")
            report: dict[str, Any] = found if isinstance(found, dict) else {}
            groups.append(
                {
                    **report,
                    "error_id": item["error_id"],
                    "occurrence_count": item.get(
                        "occurrence_count", report.get("occurrence_count")
                    ),
                }
            )
    return groups


def _group_list(client: ApiClient, doc: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        data = client.get_object("/api/v1/errors", {"sort": "count", "limit": GROUP_LIMIT})
    except HttpStatusError as exc:
        if exc.status in (404, 405):  # an older API: the export's top errors will do
            return _groups_from_analysis(doc)
        raise
    found = data.get("errors")
    if not isinstance(found, list) or not all(
        isinstance(g, dict) and g.get("error_id") for g in found
    ):
        raise _Invalid(
            f"{client.url_for('/api/v1/errors')}: no list of groups",
            "/api/v1/errors did not return a list of groups",
        )
    return found


def fetch_instance(
    target: Target,
    token: str | None,
    timeout: float,
    filters: dict[str, Any] | None = None,
    limit: int | None = None,
    page_size: int = 1000,
    on_page: Callable[[int, int | None], None] | None = None,
    access: ClientAccess | None = None,
) -> InstanceResult:
    """Export and groups of one target; every failure becomes a status with its reason.
    ``access``: the TLS files and basic auth credentials the targets want."""
    from exporter.cli.export import collect

    client = ApiClient(target.url, token=token, timeout=timeout, access=access)
    result = InstanceResult(target)
    started = time.monotonic()
    try:
        doc = collect(client, dict(filters or {}), limit, on_page, page_size)
        _check_export(client, doc)
        result.groups = _group_list(client, doc)
        result.document = doc
    except AuthRequired as exc:
        result.status, result.reason, result.http_status = "unauthorized", exc.reason, 401
    except ConnectionFailed as exc:
        result.status = "timeout" if exc.reason == "timed out" else "down"
        result.reason = exc.reason
    except HttpStatusError as exc:
        result.http_status = exc.status
        result.status = (
            "unauthorized" if exc.status == 403 else "down" if exc.status >= 500 else "invalid"
        )
        result.reason = exc.reason
    except (NotJson, _Invalid) as exc:
        result.status, result.reason = "invalid", exc.reason
    except ApiError as exc:  # pages(): no all_records list, endless cursor
        result.status = "invalid"
        result.reason = str(exc).replace(client.url_for("/api/v1/export"), "/api/v1/export")
    except _Abandoned:
        result.status, result.reason = "timeout", f"no complete answer within {timeout:g} s"
    except Exception as exc:  # not HTTP at all (http.client.BadStatusLine, ...)
        result.status = "invalid"
        result.reason = f"not an HTTP answer ({type(exc).__name__}: {exc})".replace(" ()", "")
    result.seconds = time.monotonic() - started
    if not result.ok:
        result.document, result.groups = None, []
    return result


def fetch_all(
    targets: list[Target],
    token: str | None,
    timeout: float = DEFAULT_TARGET_TIMEOUT,
    filters: dict[str, Any] | None = None,
    limit: int | None = None,
    page_size: int = 1000,
    on_start: Callable[[Target], None] | None = None,
    on_done: Callable[[InstanceResult], None] | None = None,
    workers: int = MAX_WORKERS,
    access: ClientAccess | None = None,
) -> list[InstanceResult]:
    """Every target, at most ``workers`` at a time, each within ``timeout`` seconds in all.

    Fetches run in daemon threads: one still paging past its budget is abandoned (it stops
    at its next page or socket timeout) and reported as a timeout, so a slow host never
    holds up the view or the exit. The callbacks run in the calling thread.
    """
    done_q: queue.Queue[tuple[int, InstanceResult]] = queue.Queue()
    pending = list(enumerate(targets))
    running: dict[int, tuple[float, threading.Event]] = {}
    results: dict[int, InstanceResult] = {}

    def work(index: int, target: Target, abandoned: threading.Event) -> None:
        def check(done: int, total: int | None) -> None:
            if abandoned.is_set():
                raise _Abandoned

        done_q.put(
            (
                index,
                fetch_instance(target, token, timeout, filters, limit, page_size, check, access),
            )
        )

    def finish(index: int, result: InstanceResult) -> None:
        running.pop(index, None)
        results[index] = result
        if on_done is not None:
            on_done(result)

    while pending or running:
        while pending and len(running) < max(1, workers):
            index, target = pending.pop(0)
            abandoned = threading.Event()
            running[index] = (time.monotonic() + timeout, abandoned)
            if on_start is not None:
                on_start(target)
            threading.Thread(
                target=work,
                args=(index, target, abandoned),
                daemon=True,
                name=f"fleet-{target.instance}",
            ).start()
        soonest = min(deadline for deadline, _ in running.values())
        try:
            index, result = done_q.get(timeout=max(0.0, soonest - time.monotonic()) + 0.01)
        except queue.Empty:
            now = time.monotonic()
            for index, (deadline, abandoned) in list(running.items()):
                if deadline <= now:
                    abandoned.set()
                    finish(
                        index,
                        InstanceResult(
                            targets[index],
                            "timeout",
                            f"no complete answer within {timeout:g} s",
                            seconds=timeout,
                        ),
                    )
            continue
        if index in running:  # else: already reported as a timeout
            finish(index, result)
    return [results[i] for i in range(len(targets))]


# -- merging --------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _instant(entry: dict[str, Any], key: str) -> float | None:
    """The instant of ``entry[key]``: its ``key_epoch`` twin, else the value (epoch seconds
    or an ISO 8601 string, with or without a UTC offset)."""
    twin = entry.get(key + "_epoch")
    if isinstance(twin, (int, float)) and not isinstance(twin, bool):
        return float(twin)
    return to_epoch(entry.get(key))


def _pick_time(entries: list[dict[str, Any]], key: str, latest: bool) -> dict[str, Any]:
    """``key`` (and ``key_epoch``) of the entry with the earliest or latest instant, in the
    form that entry gave it."""
    best: tuple[float, dict[str, Any]] | None = None
    for entry in entries:
        stamp = _instant(entry, key)
        if stamp is None:
            continue
        if best is None or (stamp > best[0] if latest else stamp < best[0]):
            best = (stamp, entry)
    if best is None:
        first = next((e for e in entries if key in e), None)
        return {key: first.get(key)} if first is not None else {}
    out = {key: best[1].get(key)}
    if any(key + "_epoch" in e for e in entries):
        out[key + "_epoch"] = best[0]
    return out


def _sort_instant(entry: dict[str, Any], key: str) -> float:
    stamp = _instant(entry, key)
    return stamp if stamp is not None else float("-inf")


def _rank(value: Any, ranks: dict[str, int]) -> int:
    """A severity's rank in ``ranks``; anything unknown ranks below every known value."""
    return ranks.get(str(value or "").lower(), -1)


def _sum_tree(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers summed, objects merged key by key, lists concatenated, anything else the
    first instance's value."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for item in items for k in item):
        present = [item[key] for item in items if item.get(key) is not None]
        if not present:
            out[key] = None
        elif all(isinstance(v, bool) for v in present):
            out[key] = any(present)
        elif all(_is_number(v) for v in present):
            total = sum(present)
            out[key] = round(total, 6) if isinstance(total, float) else total
        elif all(isinstance(v, dict) for v in present):
            out[key] = _sum_tree(present)
        elif all(isinstance(v, list) for v in present):
            out[key] = [x for v in present for x in v]
        else:
            out[key] = present[0]
    return out


def merge_group_summaries(
    per_instance: Iterable[tuple[str, list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """Groups of every instance merged by error_id, most frequent first, each with
    ``instances: {instance: count}``."""
    by_id: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for instance, groups in per_instance:
        for group in groups:
            by_id.setdefault(str(group["error_id"]), []).append((instance, group))
    merged = [_merge_group(error_id, parts) for error_id, parts in by_id.items()]
    merged.sort(key=lambda g: (-int(g.get("occurrence_count") or 0), g["error_id"]))
    return merged


def _merge_group(error_id: str, parts: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    entries = [g for _, g in parts]
    newest = max(entries, key=lambda g: max(_sort_instant(g, k) for k in _LAST_KEYS))
    out: dict[str, Any] = dict(newest)  # message, location, last_severity: the newest
    instances: dict[str, int] = {}
    for instance, group in parts:
        instances[instance] = instances.get(instance, 0) + int(group.get("occurrence_count") or 0)
    out["error_id"] = error_id
    out["occurrence_count"] = sum(instances.values())
    for key in ("coalesced_occurrences", "affected_users", "frequency_per_hour"):
        values = [g[key] for g in entries if _is_number(g.get(key))]
        if values:
            total = sum(values)
            out[key] = round(total, 6) if isinstance(total, float) else total
    for key in ("severity", "priority"):
        values = [g.get(key) for g in entries if g.get(key)]
        if values:
            out[key] = max(values, key=lambda v: _rank(v, SEVERITY_RANK))
    for key in ("components", "plugins"):
        if any(isinstance(g.get(key), list) for g in entries):
            out[key] = list(dict.fromkeys(x for g in entries for x in g.get(key) or []))
    for key in ("recovery_attempted", "recovery_successful"):
        if any(key in g for g in entries):
            out[key] = any(bool(g.get(key)) for g in entries)
    for key in _FIRST_KEYS:
        if any(key in g for g in entries):
            out.update(_pick_time(entries, key, latest=False))
    for key in _LAST_KEYS:
        if any(key in g for g in entries):
            out.update(_pick_time(entries, key, latest=True))
    out["instances"] = instances
    return out


def merge_patterns(
    per_instance: Iterable[tuple[str, list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """Active patterns by (kind, key): counts summed, first/last seen across hosts, the
    worst severity, plugins and samples united."""
    by_key: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for instance, patterns in per_instance:
        for p in patterns:
            if isinstance(p, dict):
                key = (str(p.get("kind") or ""), str(p.get("key") or p.get("error_type") or ""))
                by_key.setdefault(key, []).append((instance, p))
    merged = []
    for parts in by_key.values():
        entries = [p for _, p in parts]
        out = dict(entries[0])
        out["count"] = sum(int(p.get("count") or 0) for p in entries)
        out.update(_pick_time(entries, "first_seen", latest=False))
        out.update(_pick_time(entries, "last_seen", latest=True))
        out["severity"] = max(
            (p.get("severity") for p in entries), key=lambda v: _rank(v, PATTERN_SEVERITY_VALUE)
        )
        out["affected_plugins"] = sorted(
            {str(x) for p in entries for x in p.get("affected_plugins") or []}
        )
        out["sample_messages"] = list(
            dict.fromkeys(m for p in entries for m in p.get("sample_messages") or [])
        )[:3]
        out["instances"] = {i: int(p.get("count") or 0) for i, p in parts}
        merged.append(out)
    merged.sort(key=lambda p: (-_rank(p.get("severity"), PATTERN_SEVERITY_VALUE), -p["count"]))
    return merged


def merge_statistics(items: list[dict[str, Any]], unique_errors: int) -> dict[str, Any]:
    """Counters summed; rates and ratios recomputed; host resources left to each instance."""
    stats = _sum_tree([{k: v for k, v in s.items() if k != "resources"} for s in items])
    if "unique_errors" in stats:
        stats["unique_errors"] = unique_errors
    attempts = [(s.get("recovery_attempts"), s.get("recovery_success_rate")) for s in items]
    weighted = [(a, r) for a, r in attempts if _is_number(a) and _is_number(r) and a]
    if "recovery_success_rate" in stats:
        total = sum(a for a, _ in weighted)
        stats["recovery_success_rate"] = (
            round(sum(a * r for a, r in weighted) / total, 6) if total else None
        )
    sessions = stats.get("sessions")
    if isinstance(sessions, dict):
        _fix_sessions(sessions)
    return stats


def _fix_sessions(sessions: dict[str, Any]) -> None:
    found = sessions.get("ended")
    ended: dict[str, Any] = found if isinstance(found, dict) else {}
    total = sessions.get("total_ended")
    if _is_number(total) and "crash_free_ratio" in sessions:
        crashed = ended.get("crashed") or 0
        sessions["crash_free_ratio"] = (1 - crashed / total) if total else 1.0


def _tagged(records: Iterable[Any], instance: str) -> list[dict[str, Any]]:
    return [{**r, "instance": instance} for r in records if isinstance(r, dict)]


def _by_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: _sort_instant(r, "timestamp"))


def _merge_summary(parts: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    summaries = [s for _, s in parts]
    plain = [
        {
            k: v
            for k, v in s.items()
            if k not in ("recent_errors", "active_patterns", "session_start")
        }
        for s in summaries
    ]
    out = _sum_tree(plain)
    out.update(_pick_time(summaries, "session_start", latest=False))
    patterns = merge_patterns(
        (i, list(s["active_patterns"].values()))
        for i, s in parts
        if isinstance(s.get("active_patterns"), dict)
    )
    out["active_patterns"] = {str(p.get("error_type") or p.get("key")): p for p in patterns}
    recent = _by_time([r for i, s in parts for r in _tagged(s.get("recent_errors") or [], i)])
    out["recent_errors"] = recent[-RECENT_N:]
    return {"session_start": out.pop("session_start", None), **out}


def _top_errors(
    groups: list[dict[str, Any]], parts: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The analysis's top errors: each group's newest full report, with fleet-wide counts."""
    reports: dict[str, dict[str, Any]] = {}
    for _, analysis in parts:
        for item in analysis.get("top_errors") or []:
            report = item.get("report") if isinstance(item, dict) else None
            if not isinstance(report, dict) or not item.get("error_id"):
                continue
            known = reports.get(str(item["error_id"]))
            if known is None or (
                max(_sort_instant(report, k) for k in _LAST_KEYS)
                > max(_sort_instant(known, k) for k in _LAST_KEYS)
            ):
                reports[str(item["error_id"])] = report
    top = []
    for group in groups[:TOP_N]:
        report = dict(reports.get(group["error_id"]) or {})
        report.update(group)
        top.append(
            {
                "error_id": group["error_id"],
                "occurrence_count": group["occurrence_count"],
                "report": report,
                "instances": group["instances"],
            }
        )
    return top


def merge(results: list[InstanceResult], prometheus: str = "", job: str = "") -> dict[str, Any]:
    """One export document for the whole fleet, from the instances that answered."""
    good = [r for r in results if r.ok and r.document is not None]
    docs = [(r.target.instance, r.document or {}) for r in good]
    groups = merge_group_summaries((r.target.instance, r.groups) for r in good)
    statistics = merge_statistics(
        [d["statistics"] for _, d in docs if isinstance(d.get("statistics"), dict)], len(groups)
    )
    analyses = [(i, d["analysis"]) for i, d in docs if isinstance(d.get("analysis"), dict)]
    known = (
        "statistics",
        "top_errors",
        "total_unique_errors",
        "session_count",
        "patterns",
        "sessions",
        "recovery",
    )
    analysis: dict[str, Any] = {
        "statistics": statistics,
        "top_errors": _top_errors(groups, analyses),
        "total_unique_errors": len(groups),
        "session_count": sum(int(a.get("session_count") or 0) for _, a in analyses),
        "patterns": merge_patterns((i, a.get("patterns") or []) for i, a in analyses),
        "sessions": statistics.get("sessions"),
        "recovery": None,
    }
    recoveries = [a["recovery"] for _, a in analyses if isinstance(a.get("recovery"), dict)]
    if recoveries:
        recovery = _sum_tree(recoveries)
        if "success_rate" in recovery:
            recovery["success_rate"] = statistics.get("recovery_success_rate")
        analysis["recovery"] = recovery
    if not isinstance(analysis["sessions"], dict):
        sessions = [a["sessions"] for _, a in analyses if isinstance(a.get("sessions"), dict)]
        analysis["sessions"] = _sum_tree(sessions) if sessions else None
        if analysis["sessions"]:
            _fix_sessions(analysis["sessions"])
    extra = _sum_tree([{k: v for k, v in a.items() if k not in known} for _, a in analyses])
    analysis.update(extra)  # fields newer instances add, merged generically
    summary = _merge_summary(
        [(i, d["summary"]) for i, d in docs if isinstance(d.get("summary"), dict)]
    )
    records = _by_time([r for i, d in docs for r in _tagged(d.get("all_records") or [], i)])
    failed = [r for r in results if not r.ok]
    own = (
        "exported_at",
        "summary",
        "statistics",
        "analysis",
        "all_records",
        "next_cursor",
        "fleet",
    )
    other: dict[str, Any] = {}  # top-level keys newer instances add (``global``, ...)
    for _, doc in docs:
        for key, value in doc.items():
            if key not in own:
                other.setdefault(key, value)
    return {
        "exported_at": iso_time(time.time()),
        **other,
        "summary": summary,
        "statistics": statistics,
        "analysis": analysis,
        "all_records": records,
        "next_cursor": None,
        "fleet": {
            "prometheus": prometheus or None,
            "job": job or None,
            "partial": bool(failed),
            "targets": len(results),
            "merged": len(good),
            "failed": len(failed),
            "instances": [r.entry() for r in results],
            "groups": groups,
        },
    }


def exit_code(results: list[InstanceResult]) -> int:
    """0 every target merged, 3 partial, 1 none answered."""
    good = sum(1 for r in results if r.ok)
    if good == 0:
        return EXIT_FAILED
    return EXIT_OK if good == len(results) else EXIT_PARTIAL
