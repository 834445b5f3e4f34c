"""``error-exporter demo``: the monitor, its HTTP server, a synthetic app and a live view.

This is a new user's first five minutes, so it must show every feature within seconds and
stop cleanly: the URLs come first (a user copies them while the rest starts), the
thresholds are tuned to the chosen rate so normal traffic shows some patterns and the
storms trip them to critical, and Ctrl-C or SIGTERM ends everything with exit code 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from exporter.cli.client import ApiClient, ApiError, access_from_args
from exporter.cli.watch import run_watch

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9718
# The app version the demo starts as when the configuration names none; its deploy (after
# --deploy-after seconds) switches to the next one (exporter.demo.workload.next_version).
DEMO_APP_VERSION = "1.0.0"


def demo_tuning(rate: float, storm: bool = False) -> dict[str, Any]:
    """Thresholds that make the demo's storms stand out at the given error rate.

    About 6 errors a minute per error/s: the common types of normal traffic reach
    "warning", a storm (over three times the threshold) reaches "critical" and turns its
    plugin unhealthy for half a minute. In --storm mode everything is one error type, so
    the smallest threshold makes it critical within seconds.
    """
    threshold = 5 if storm else max(5, round(rate * 6))
    return {
        "pattern_threshold": threshold,
        "pattern_window_minutes": 1.0,
        "plugin_health_window": 30.0,
        "plugin_unhealthy_threshold": threshold,
    }


def build_config(args: argparse.Namespace) -> Any:
    """File and environment first, then the demo's tuning where they left defaults,
    then the command-line flags. Raises ConfigError."""
    from exporter.config import MonitorConfig, load_config

    config = load_config(args.config)
    defaults = MonitorConfig()
    changes = {
        k: v
        for k, v in demo_tuning(args.rate, args.storm).items()
        if getattr(config, k) == getattr(defaults, k)
    }
    changes["serve"] = True
    changes["enable_terminal_output"] = bool(args.no_live)
    if config.app_version is None:  # release health needs one: the deploy shows it
        changes["app_version"] = DEMO_APP_VERSION
    if args.host is not None or config.host == defaults.host:
        changes["host"] = args.host or DEFAULT_HOST
    if args.port is not None:
        changes["port"] = args.port
    if args.token is not None:  # --token "" is refused (ConfigError), not "no token"
        changes["api_token"] = args.token
    if getattr(args, "web_config_file", None) is not None:
        changes["web_config_file"] = args.web_config_file
    if getattr(args, "store_url", None):  # the stack's shared store (docker-compose, make stack)
        changes["store_url"] = args.store_url
    return dataclasses.replace(config, **changes)


def base_url(host: str, port: int) -> str:
    """The URL a browser on this machine can open for a bind address."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of raising, so shutdown is orderly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _wait_until_serving(client: ApiClient, stop: threading.Event, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            client.health()
            return
        except ApiError:
            stop.wait(0.1)


def cli_command(argv0: str | None = None, cwd: str | None = None) -> str:
    """How to run this command line again from the same directory, as it was started.

    ``make demo`` runs ``.venv/bin/error-exporter``, which is on nobody's PATH until the venv
    is activated: the banner must print that path, not a bare ``error-exporter``.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    cwd = os.getcwd() if cwd is None else cwd
    if os.path.basename(argv0) == "error-exporter" and os.path.isfile(argv0):
        found = shutil.which("error-exporter")
        if found and os.path.abspath(found) == os.path.abspath(argv0):
            return "error-exporter"
        return shlex.quote(_shown_path(argv0, cwd))
    return f"{shlex.quote(_shown_path(sys.executable, cwd))} -m exporter"


def _shown_path(path: str, cwd: str) -> str:
    """Relative to ``cwd`` when inside it (``.venv/bin/python``), else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, cwd)
    return absolute if relative.startswith("..") else relative


def _banner(
    url: str, args: argparse.Namespace, threshold: int, versions: tuple[str, str] | None = None
) -> str:
    """The URLs on the first two lines (what a user copies), then what is running."""
    mode = (
        "a sustained storm of critical MemoryErrors"
        if args.storm
        else f"about {args.rate:g} errors/s, a storm every {args.storm_every:g}s"
    )
    command = cli_command()
    lines = [
        f"error-exporter demo  metrics: {url}/metrics",
        f"                     API:     {url}/api/v1/",
        f"A synthetic app is running: {mode}, seed {args.seed}, "
        f"pattern threshold {threshold} per minute.",
        f"In another terminal: {command} watch --url {url}",
        f"                     {command} analyze --url {url}",
        f"                     {command} export --url {url} -o errors.json",
        "Press Ctrl-C to stop.",
    ]
    if versions is not None:
        lines[3:3] = [
            f"In {args.deploy_after:g}s the app (version {versions[0]}) deploys "
            f"{versions[1]}: a new error, and a resolved one comes back:",
            f"                     {url}/api/v1/errors?new_in={versions[1]}",
        ]
    if args.token:
        lines.insert(3, "The API needs the token: --token TOKEN or ERROR_EXPORTER_API_TOKEN.")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    """Start everything, run until Ctrl-C / SIGTERM / --duration, stop everything."""
    from exporter import ErrorMonitor
    from exporter.config import ConfigError
    from exporter.demo.workload import Workload, next_version

    config = build_config(args)
    monitor = ErrorMonitor(config)
    try:
        monitor.start()
    except ConfigError:  # the web config file: an invalid configuration (exit 2)
        with contextlib.suppress(Exception):
            monitor.stop()
        raise
    except Exception as exc:  # port in use, bad address, ...: say so, no traceback
        print(serve_failure(exc, config.host, config.port), file=sys.stderr)
        with contextlib.suppress(Exception):
            monitor.stop()
        return 1
    server = monitor.server
    url = server.url if server is not None else base_url(config.host, config.port)
    deploy_after = (
        None
        if args.storm or (args.duration and args.duration <= args.deploy_after)
        else args.deploy_after
    )  # no deploy to announce in a storm or a run that ends first
    versions = (
        None if deploy_after is None else (config.app_version, next_version(config.app_version))
    )
    print(_banner(url, args, config.pattern_threshold, versions), flush=True)

    stop = threading.Event()
    workload = Workload(
        monitor,
        rate=args.rate,
        seed=args.seed,
        storm_every=args.storm_every,
        storm=args.storm,
        storm_size=3 * config.pattern_threshold + 5,
        deploy_after=deploy_after,
    )
    worker = threading.Thread(
        target=workload.run, args=(stop, args.duration), name="demo-workload", daemon=True
    )
    timer = threading.Timer(args.duration, stop.set) if args.duration else None
    started = time.monotonic()
    with stop_on_signals(stop):
        try:
            worker.start()
            if timer is not None:
                timer.daemon = True
                timer.start()
            if args.no_live:
                while not stop.wait(0.5):
                    pass
            else:
                client = ApiClient(
                    url, token=args.token, timeout=5.0, access=access_from_args(args)
                )
                _wait_until_serving(client, stop)
                run_watch(client, refresh=1.0, use_rich=sys.stdout.isatty(), stop_event=stop)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            if timer is not None:
                timer.cancel()
            worker.join(timeout=5.0)
            _shutdown(monitor, time.monotonic() - started)
    return 0


def serve_failure(exc: BaseException, host: str, port: int) -> str:
    """Why the demo cannot serve, once, and for a busy port how to pick another."""
    reason = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    reason = reason.removeprefix("error-exporter ")
    where = f"{host}:{port}"
    message = f"error: {reason}" if where in reason else f"error: cannot serve on {where}: {reason}"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        other = 9800 if port != 9800 else 9801
        message += (
            f"\nAnother program (maybe another demo) is using port {port}. Pick another: "
            f"make demo PORT={other}, {cli_command()} demo --port {other}, "
            f"or ERROR_EXPORTER_PORT={other}."
        )
    return message


def _shutdown(monitor: Any, elapsed: float) -> None:
    """Stop the monitor and say what happened; a failure here must not hide exit 0."""
    try:
        monitor.flush(timeout=2.0)
        stats = monitor.get_statistics()
        total = stats.get("total_errors", "?")
    except Exception:
        total = "?"
    try:
        monitor.stop()
    except Exception as exc:
        print(f"warning: the monitor did not stop cleanly: {exc}", file=sys.stderr)
    with contextlib.suppress(OSError):  # stdout may be a closed pipe by now
        print(f"demo stopped after {elapsed:.0f}s: {total} errors recorded", flush=True)
