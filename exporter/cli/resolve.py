"""``error-exporter resolve ID``: mark an error group resolved, over the HTTP API.

The one command that changes the monitor: a POST with the bearer token (the server refuses
it with 403 while no ``api_token`` is configured). Seen again, the group becomes a
regression. Failures raise the client's ``ApiError`` subclasses, so ``main`` prints the
server's message and picks the exit code (1; 2 only for a 400).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from exporter.cli.client import ApiClient, ConnectionFailed, NotJson, _reason


class ResolveClient(ApiClient):
    """The API client plus the one POST the CLI sends."""

    def resolve(self, error_id: str) -> dict[str, Any]:
        """The resolved group's summary; ApiError (404 unknown id, 403, 401...) otherwise."""
        url = self.url_for("/api/v1/errors/" + urllib.parse.quote(error_id, safe="")
                           + "/resolve")
        request = urllib.request.Request(url, data=b"", method="POST",
                                         headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(url, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = _reason(exc)
            hint = " (is the app running?)" if reason == "connection refused" else ""
            raise ConnectionFailed(f"cannot reach {url}: {reason}{hint}", reason) from None
        except ValueError as exc:  # malformed URL
            raise ConnectionFailed(f"invalid URL {url}: {exc}", f"invalid URL: {exc}") from None
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise NotJson(f"{url} did not return a JSON object: is this an error-exporter "
                          "API?", "the answer is not a JSON object")
        return data


def resolved_line(group: dict[str, Any]) -> str:
    """One line: what was resolved, in which version, and its counts."""
    version = group.get("resolved_version") or "-"
    return (f"resolved {group.get('error_id')} {group.get('error_type')}: "
            f"{group.get('error_message') or ''} (in version {version}; "
            f"{group.get('occurrence_count')} occurrences, first seen in "
            f"{group.get('first_seen_version') or '-'}, last in "
            f"{group.get('last_seen_version') or '-'})")


def run_resolve(client: ResolveClient, error_id: str) -> int:
    print(resolved_line(client.resolve(error_id)), flush=True)
    return 0
