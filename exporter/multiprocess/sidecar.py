"""``error-exporter serve --multiproc-dir DIR``: /metrics and /api/v1 of every worker, from
a process of its own (no worker has to serve them, and the endpoint stays up while workers
restart)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from exporter.config import ConfigError, MonitorConfig, load_config
from exporter.multiprocess import REPORTS_IN_POSTGRESQL
from exporter.multiprocess.view import SharedView
from exporter.store.dsn import is_postgres
from exporter.store.read_protocol import ErrorReader


def make_view(directory: str | Path, config: MonitorConfig | None = None) -> ErrorReader:
    """The read-only fleet view the sidecar serves: the directory's, or, with a
    ``postgresql://`` ``store_url`` (the workers write their groups there), the fleet's
    groups from the database with the directory's metrics and live workers. Raises
    ConfigError when the workers write a ``store_url`` the sidecar was not given."""
    config = config or load_config()
    if is_postgres(config.store_url):
        from exporter.multiprocess.postgres_mode import PostgresSharedView

        return PostgresSharedView(directory, config).reader
    view = SharedView(directory, config)
    if view.shared.meta("reports") == REPORTS_IN_POSTGRESQL:
        # the directory's file holds no report: serving it would show an empty store
        raise ConfigError(
            f"store_url: the workers of {directory} write their reports to a postgresql:// "
            "store; give the sidecar the same store_url (ERROR_EXPORTER_STORE_URL or its "
            "config file)"
        )
    return view


def run_sidecar(
    directory: str,
    host: str | None = None,
    port: int | None = None,
    token: str | None = None,
    config_path: str | None = None,
    web_config_file: str | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM. Exit codes as the CLI: 0 ok, 1 bind failed, 2 bad input."""
    from exporter.http import MonitorServer

    path = Path(directory)
    if not path.is_dir():
        print(
            f"error: --multiproc-dir {directory}: not a directory (create it, or point it at "
            "the PROMETHEUS_MULTIPROC_DIR of the workers)",
            file=sys.stderr,
        )
        return 2
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if token is not None:
        overrides["api_token"] = token
    if web_config_file is not None:
        overrides["web_config_file"] = web_config_file
    try:
        config = load_config(config_path, **overrides)
        view = make_view(path, config)
        server = MonitorServer(view, config.host, config.port)  # reads the web config file
    except ConfigError as exc:
        print(f"error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        server.start()
    except OSError as exc:
        print(f"error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"error-exporter sidecar for {path} serving on {server.url} (/metrics, /api/v1/export)",
        flush=True,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    return 0
