"""A monitor serving on a loopback port, and the plain clients the tests read it with."""

from __future__ import annotations

import base64
import contextlib
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from support.tools import require_tool

QUIET = HOOKS_OFF


def promtool_accepts(path: Path) -> tuple[bool, str]:
    done = subprocess.run(
        [require_tool("promtool"), "check", "web-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def serving(config: Path | None, **options: Any) -> Iterator[ErrorMonitor]:
    monitor = ErrorMonitor(
        **{
            **QUIET,
            "serve": True,
            "port": 0,
            "web_config_file": str(config) if config else None,
            **options,
        }
    )
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.stop(timeout=2.0)


def fetch(
    url: str,
    *,
    ca: Path | None = None,
    auth: tuple[str, str] | None = None,
    bearer: str | None = None,
    cert: tuple[Path, Path] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A plain urllib GET; (status, headers, body) for HTTP errors too."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
    request = urllib.request.Request(url, headers=headers or {})
    if auth:
        raw = f"{auth[0]}:{auth[1]}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(raw).decode())
    if bearer:
        request.add_header("Authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
