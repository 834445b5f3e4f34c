"""How ``watch`` and ``analyze`` show a group's release health: one short marker.

``REGRESSED``: resolved, then seen again. ``resolved``: marked resolved and not seen since.
``NEW``: first seen in the release running now, while groups from an earlier release are
known too (right after a restart without a durable store every group would be "new", which
says nothing). The release running now is the version of the most recently seen error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def current_release(groups: Iterable[dict[str, Any]]) -> str | None:
    """The version of the most recently seen group that has one; None without versions,
    or when every group was first seen in it (no earlier release to be new against)."""
    known = [g for g in groups if g.get("last_seen_version")]
    if not known:
        return None
    latest = max(known, key=_last_seen)
    version = str(latest["last_seen_version"])
    earlier = any(g.get("first_seen_version") not in (None, version) for g in known)
    return version if earlier else None


def _last_seen(group: dict[str, Any]) -> float:
    value = group.get("last_occurrence_epoch")
    return float(value) if isinstance(value, (int, float)) else 0.0


def marker(group: dict[str, Any], release: str | None) -> str:
    """REGRESSED, resolved, NEW or '' (see the module)."""
    if group.get("regressed"):
        return "REGRESSED"
    if group.get("resolved"):
        return "resolved"
    if release is not None and group.get("first_seen_version") == release:
        return "NEW"
    return ""


def regressed(groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The regressed groups, most recently regressed first."""
    found = [g for g in groups if g.get("regressed")]
    return sorted(found, key=lambda g: float(g.get("regressed_at_epoch") or 0), reverse=True)
