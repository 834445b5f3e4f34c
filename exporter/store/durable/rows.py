"""An error group as a row of the durable store, and back: every field survives exactly.

The latest report is the report's own JSON (``ErrorReport.to_dict``, read back by
:mod:`exporter.store.codec`); what belongs to the group alone (users, recoveries, components,
plugins, coalesced count, highest severity) is one JSON ``state`` column; the counts, times
and release-health fields are columns of their own, so an offline reader can query them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from exporter.model import json_text
from exporter.store.codec import report_from_dict
from exporter.store.durable.tables import GROUP_COLUMNS
from exporter.store.memory import ErrorGroup

INSTANCE_ENV = "ERROR_EXPORTER_INSTANCE"


def instance_name() -> str:
    """Which instance this process is in the store's ``group_instances``: the
    ``ERROR_EXPORTER_INSTANCE`` variable when set (a pod or host name that outlives a
    restart), else ``host:pid`` (two processes on one host are two instances: that is
    what a per-instance count must tell apart)."""
    import os
    import socket

    named = os.environ.get(INSTANCE_ENV, "").strip()
    return named or f"{socket.gethostname()}:{os.getpid()}"


# one instance's occurrences of a group added to what it counted before (both dialects:
# SQLite spells GREATEST as the two-argument max)
INSTANCE_UPSERT = (
    "INSERT INTO group_instances (app, error_id, instance, occurrence_count, last_seen) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (app, error_id, instance) DO UPDATE SET "
    "occurrence_count = group_instances.occurrence_count + excluded.occurrence_count, "
    "last_seen = GREATEST(group_instances.last_seen, excluded.last_seen)"
)

GROUP_UPSERT = (
    f"INSERT OR REPLACE INTO groups ({', '.join(GROUP_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in GROUP_COLUMNS)})"
)
GROUP_SELECT = f"SELECT {', '.join(GROUP_COLUMNS)} FROM groups"


def group_row(group: ErrorGroup, app: str) -> tuple[Any, ...]:
    """The row of ``group`` of ``app`` (the caller holds the store's lock: the group is
    consistent)."""
    report = group.report
    state = {
        "users": sorted(group.users),
        "recoveries": dict(group.recoveries),
        "max_severity": group.max_severity,
        "components": dict(group.components),
        "plugins": dict(group.plugins),
        "coalesced": group.coalesced,
    }
    return (
        app,
        report.error_id,
        report.occurrence_count,
        report.first_occurrence,
        report.last_occurrence,
        json_text(report.to_dict(), ascii_only=False),
        json_text(state, ascii_only=False),
        group.first_seen_version,
        group.last_seen_version,
        group.resolved_at,
        group.resolved_version,
        int(group.regressed),
        group.regressed_at,
    )


def group_from_row(row: Sequence[Any]) -> ErrorGroup:
    """The group of a stored row (its records are loaded separately)."""
    values = dict(zip(GROUP_COLUMNS, row, strict=True))
    report = report_from_dict(json.loads(values["report"]))
    report.occurrence_count = int(values["occurrence_count"])
    report.first_occurrence = float(values["first_occurrence"])
    report.last_occurrence = float(values["last_occurrence"])
    state: dict[str, Any] = json.loads(values["state"])
    recoveries = {"success": 0, "failure": 0}
    recoveries.update({k: int(v) for k, v in (state.get("recoveries") or {}).items()})
    users = {str(u) for u in state.get("users") or ()}
    report.affected_users = len(users)
    return ErrorGroup(
        report,
        users=users,
        recoveries=recoveries,
        max_severity=str(state.get("max_severity") or report.severity.value),
        components={str(k): int(v) for k, v in (state.get("components") or {}).items()},
        plugins={str(k): int(v) for k, v in (state.get("plugins") or {}).items()},
        coalesced=int(state.get("coalesced") or 0),
        first_seen_version=values["first_seen_version"],
        last_seen_version=values["last_seen_version"],
        resolved_at=values["resolved_at"],
        resolved_version=values["resolved_version"],
        regressed=bool(values["regressed"]),
        regressed_at=values["regressed_at"],
    )
