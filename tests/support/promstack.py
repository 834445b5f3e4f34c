"""Run a real Prometheus / Alertmanager (and helpers) on loopback for tests.

Everything binds 127.0.0.1 on a free port, lives in a temporary directory and is stopped by the
PID that was started (terminate, then kill).  Nothing here mocks Prometheus or Alertmanager.

Typical use::

    @pytest.fixture
    def stack(tmp_path: Path) -> Iterator[PromStack]:
        with PromStack(tmp_path) as s:
            yield s

    def test_x(stack: PromStack) -> None:
        hook = stack.webhook()
        am = stack.alertmanager(point_webhooks_at(load_yaml(AM_FILE), hook.url))
        prom = stack.prometheus({"scrape_configs": [...]}, alertmanager=am)
        wait_until(lambda: query(prom.url, 'up{job="x"}'), timeout=30, what="first scrape")
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from .tools import require_tool

T = TypeVar("T")

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class WaitTimeout(AssertionError):
    """``wait_until`` gave up; the message says what was awaited and the last error seen."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Call ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is reported).  Raises
    ``WaitTimeout`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: Any = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else ""
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {what}"
                f" (last value: {last_value!r}){detail}"
            )
        time.sleep(interval)


# ---------------------------------------------------------------------------- HTTP helpers


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET ``url``; return (status, body) also for HTTP error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(url: str, data: Any = None, timeout: float = 10.0) -> Any:
    """GET (or POST ``data`` as JSON) and decode a JSON answer; raise on HTTP errors."""
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


class QueryError(RuntimeError):
    """The Prometheus HTTP API answered with status "error"."""


def _api(url: str, path: str, params: Sequence[tuple[str, str]]) -> Any:
    full = f"{url.rstrip('/')}{path}?{urllib.parse.urlencode(list(params))}"
    try:
        with urllib.request.urlopen(full, timeout=30) as resp:
            payload = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read())
        except ValueError:
            raise QueryError(f"HTTP {exc.code} for {full}") from exc
    if payload.get("status") != "success":
        raise QueryError(f"{payload.get('errorType')}: {payload.get('error')} ({full})")
    return payload["data"]


def query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query through ``/api/v1/query``; return the result list (vector or matrix).

    A scalar or string result is returned as a one-element list ``[{"metric": {}, "value":
    [t, v]}]`` so callers can always test for emptiness.
    """
    params = [("query", expr)]
    if at is not None:
        params.append(("time", f"{at:.3f}"))
    data = _api(url, "/api/v1/query", params)
    if data["resultType"] in ("scalar", "string"):
        return [{"metric": {}, "value": data["result"]}]
    result: list[dict[str, Any]] = data["result"]
    return result


def query_range(
    url: str, expr: str, start: float, end: float, step: float = 1.0
) -> list[dict[str, Any]]:
    """Range query through ``/api/v1/query_range`` (what a Grafana time series panel runs):
    one entry per series, each with its ``values`` as [t, "v"] pairs."""
    params = [
        ("query", expr),
        ("start", f"{start:.3f}"),
        ("end", f"{end:.3f}"),
        ("step", f"{step:g}"),
    ]
    result: list[dict[str, Any]] = _api(url, "/api/v1/query_range", params)["result"]
    return result


def label_values(url: str, label: str, match: str | None = None) -> list[str]:
    """Values of ``label`` (optionally only on series matching the selector ``match``)."""
    params = [("match[]", match)] if match else []
    values: list[str] = _api(url, f"/api/v1/label/{urllib.parse.quote(label)}/values", params)
    return values


def exemplars(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    """``/api/v1/query_exemplars``: one entry per series, each with its ``exemplars``."""
    params = [("query", expr), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
    found: list[dict[str, Any]] = _api(url, "/api/v1/query_exemplars", params)
    return found


def alerts(url: str) -> list[dict[str, Any]]:
    """Prometheus's own view of its alerts (``/api/v1/alerts``)."""
    found: list[dict[str, Any]] = _api(url, "/api/v1/alerts", [])["alerts"]
    return found


# ---------------------------------------------------------------------------- processes


@dataclass
class Service:
    """A process started by the test: its PID, base URL, working directory and log file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log_path: Path
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Terminate the PID we started, kill it if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


def dump_yaml(data: Mapping[str, Any] | str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else yaml.safe_dump(dict(data), sort_keys=False)
    path.write_text(text)
    return path


def load_yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


# ---------------------------------------------------------------------------- webhook


@dataclass
class WebhookReceiver:
    """A tiny Alertmanager webhook target: records every JSON body POSTed to it."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    _bodies: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls) -> WebhookReceiver:
        receiver: WebhookReceiver

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                if isinstance(body, dict):
                    body.setdefault("_path", self.path)
                receiver.record(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
        receiver = cls(server=server, thread=thread)
        thread.start()
        return receiver

    @property
    def port(self) -> int:
        port: int = self.server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._bodies.append(body)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._bodies)

    def notifications(self) -> list[tuple[str, dict[str, Any]]]:
        """Every alert of every body as (body status, alert), in arrival order."""
        return [(b.get("status", ""), a) for b in self.bodies for a in b.get("alerts", [])]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=STOP_TIMEOUT)


# ---------------------------------------------------------------------------- config rewriting


def point_webhooks_at(
    config: Mapping[str, Any],
    url: str,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1m",
) -> dict[str, Any]:
    """Copy an Alertmanager config with every webhook url replaced and short route timers."""
    result = copy.deepcopy(dict(config))
    for receiver in result.get("receivers", []):
        for hook in receiver.get("webhook_configs", []) or []:
            hook["url"] = url
            hook.pop("url_file", None)

    def shorten(route: dict[str, Any], top: bool) -> None:
        for key, value in (
            ("group_wait", group_wait),
            ("group_interval", group_interval),
            ("repeat_interval", repeat_interval),
        ):
            if top or key in route:
                route[key] = value
        for child in route.get("routes", []) or []:
            shorten(child, top=False)

    shorten(result["route"], top=True)
    return result


def shorten_rule_for(rules: Mapping[str, Any], for_: str = "2s") -> dict[str, Any]:
    """Copy a Prometheus rule file with every alert's ``for`` set to ``for_``."""
    result = copy.deepcopy(dict(rules))
    for group in result.get("groups", []):
        group["interval"] = "1s"
        for rule in group.get("rules", []):
            if "alert" in rule:
                rule["for"] = for_
    return result


_WINDOW = re.compile(r"(\[|offset\s+)(\d+)([smhd])\b")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def compress_windows(rules: Mapping[str, Any], factor: float, minimum: int = 5) -> dict[str, Any]:
    """Copy a rule file with every range ``[5m]`` and ``offset 5m`` divided by ``factor``.

    For end-to-end tests that cannot wait for production windows: ``increase(x[5m])`` keeps
    an alert firing for 5 minutes after the last error; ``[10s]`` lets it resolve in seconds.
    """

    def scale(match: re.Match[str]) -> str:
        seconds = int(match.group(2)) * _UNIT_SECONDS[match.group(3)]
        return f"{match.group(1)}{max(minimum, round(seconds / factor))}s"

    result = copy.deepcopy(dict(rules))
    for group in result.get("groups", []):
        for rule in group.get("rules", []):
            rule["expr"] = _WINDOW.sub(scale, str(rule["expr"]))
    return result


def store_info_stand_in(
    job: str, backend: str = "file", release_scope: str = "host", namespace: str = "app"
) -> dict[str, Any]:
    """A rule group that gives each target of ``job`` the ``<namespace>_monitor_store_info``
    series an exporter with that store publishes, for as long as the exporter itself does not
    (an exporter older than the metric): the release-health rules and panels count only
    processes that say their store outlives a restart. The stand-in carries
    ``stand_in="true"``, and ends as soon as the exporter's own series is scraped.
    """
    name = f"{namespace}_monitor_store_info" if namespace else "monitor_store_info"
    return {
        "name": f"stand-in: {name}",
        "rules": [{
            "record": name,
            "expr": f'up{{job="{job}"}} * 0 + 1 unless on (job, instance) {name}{{stand_in=""}}',
            "labels": {"backend": backend, "release_scope": release_scope, "stand_in": "true"},
        }],
    }  # fmt: skip


# ---------------------------------------------------------------------------- the stack


class PromStack:
    """Owns every process and receiver a test starts; ``close()`` stops them all by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[Service] = []
        self.receivers: list[WebhookReceiver] = []

    def __enter__(self) -> PromStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        for receiver in self.receivers:
            with contextlib.suppress(Exception):
                receiver.stop()
        self.services.clear()
        self.receivers.clear()

    # -- generic processes -------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        ready_path: str | None = "/-/ready",
        ready_timeout: float = READY_TIMEOUT,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Service:
        """Start ``argv`` (already containing ``port``) and wait for ``ready_path`` to be 200."""
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "output.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd or workdir,
                env=dict(env) if env is not None else None,
            )
        service = Service(name, process, f"http://127.0.0.1:{port}", workdir, log_path, port)
        self.services.append(service)
        if ready_path is not None:
            self.wait_ready(service, ready_path, ready_timeout)
        return service

    def wait_ready(self, service: Service, path: str, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            if not service.running():
                raise RuntimeError(f"{service.name} exited with {service.process.returncode}")
            status, _ = http_get(service.url + path, timeout=2)
            return status == 200

        try:
            wait_until(ready, timeout, interval=0.1, what=f"{service.name} {path}")
        except WaitTimeout as exc:
            service.stop()
            raise WaitTimeout(f"{exc}\n--- {service.name} log ---\n{service.log_tail()}") from None

    # -- Prometheus / Alertmanager -------------------------------------------------------

    def prometheus(
        self,
        config: Mapping[str, Any] | str,
        *,
        name: str = "prometheus",
        exemplars: bool = False,
        alertmanager: Service | None = None,
        extra_args: Sequence[str] = (),
    ) -> Service:
        """Start ``prometheus`` with ``config`` (dict or YAML text) on a free loopback port.

        ``alertmanager``: when given, an ``alerting`` section pointing at it is added.
        """
        binary = require_tool("prometheus")
        if alertmanager is not None:
            if isinstance(config, str):
                config = yaml.safe_load(config)
            assert not isinstance(config, str)
            config = dict(config)
            config["alerting"] = {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}
                ]
            }
        workdir = self.workdir / name
        config_path = dump_yaml(config, workdir / "prometheus.yml")
        port = free_port()
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *(["--enable-feature=exemplar-storage"] if exemplars else []),
            *extra_args,
        ]
        return self.spawn(name, argv, port=port)

    def alertmanager(
        self, config: Mapping[str, Any] | str, *, name: str = "alertmanager"
    ) -> Service:
        """Start ``prometheus-alertmanager`` with ``config``, gossip off, on a free port."""
        binary = require_tool("prometheus-alertmanager")
        workdir = self.workdir / name
        config_path = dump_yaml(config, workdir / "alertmanager.yml")
        port = free_port()
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        return self.spawn(name, argv, port=port)

    def webhook(self) -> WebhookReceiver:
        receiver = WebhookReceiver.start()
        self.receivers.append(receiver)
        return receiver


@pytest.fixture
def promstack(tmp_path: Path) -> Iterator[PromStack]:
    """A ``PromStack`` in the test's tmp dir, closed (every PID stopped) at teardown."""
    with PromStack(tmp_path) as stack:
        yield stack
