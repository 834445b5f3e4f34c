"""``error-exporter resolve ID``: mark an error group resolved, over the HTTP API.

The one command that changes the monitor: a POST with the bearer token (the server refuses
it with 403 while no ``api_token`` is configured). Seen again, the group becomes a
regression. Failures raise the client's ``ApiError`` subclasses, so ``main`` prints the
server's message and picks the exit code (1; 2 only for a 400).
"""

from __future__ import annotations

from typing import Any

from exporter.cli.client import ApiClient


def resolved_line(group: dict[str, Any]) -> str:
    """One line: what was resolved, in which version, and its counts."""
    version = group.get("resolved_version") or "-"
    return (
        f"resolved {group.get('error_id')} {group.get('error_type')}: "
        f"{group.get('error_message') or ''} (in version {version}; "
        f"{group.get('occurrence_count')} occurrences, first seen in "
        f"{group.get('first_seen_version') or '-'}, last in "
        f"{group.get('last_seen_version') or '-'})"
    )


def run_resolve(client: ApiClient, error_id: str) -> int:
    print(resolved_line(client.resolve(error_id)), flush=True)
    return 0
