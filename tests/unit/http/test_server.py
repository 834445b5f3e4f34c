"""The stdlib server on a real socket: binding, stopping, quietness, rude clients, load."""

from __future__ import annotations

import errno
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import ErrorMonitor
from exporter.http import MonitorServer


def get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def raw_request(port: int, request: bytes) -> bytes:
    """Send bytes exactly as given (no client-side path normalisation); read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def record(monitor: ErrorMonitor, n: int, prefix: str = "e") -> None:
    for i in range(n):
        try:
            raise ValueError(f"{prefix}{i}")
        except ValueError as exc:
            monitor.record_error(exc, component=f"c{i % 4}", context={"payload": "x" * 200})


@pytest.fixture
def served(make_monitor: Any) -> ErrorMonitor:
    monitor = make_monitor(serve=True, port=0)
    assert monitor.server is not None
    return monitor


def test_monitor_start_serves_on_an_ephemeral_loopback_port(served: ErrorMonitor) -> None:
    server = served.server
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    status, headers, body = get(server.url + "/healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["running"] is True


def test_default_bind_is_loopback_and_documented_port() -> None:
    from exporter.config import DEFAULT_PORT, MonitorConfig

    config = MonitorConfig()
    assert config.host == "127.0.0.1" and config.port == DEFAULT_PORT == 9718


def test_stop_closes_the_socket(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0)
    port = monitor.server.port
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    monitor.stop()
    assert monitor.server is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    # the port is free again: a new server can take it
    again = MonitorServer(monitor, "127.0.0.1", port).start()
    try:
        assert again.port == port
    finally:
        again.stop()


def test_a_busy_port_raises_a_clear_oserror(make_monitor: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = MonitorServer(make_monitor(), "127.0.0.1", port)
        with pytest.raises(OSError) as info:
            server.start()
    assert info.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{port}" in str(info.value)
    assert not server.running


def test_monitor_start_raises_the_bind_error(make_monitor: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monitor = ErrorMonitor(
            capture_sys_excepthook=False,
            capture_threading=False,
            capture_logging=False,
            capture_asyncio=False,
            enable_resource_monitoring=False,
            serve=True,
            port=port,
        )
        try:
            with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
                monitor.start()
            assert monitor.server is None  # no half-started server is kept
        finally:
            monitor.stop(timeout=1.0)


def test_ipv6_loopback(make_monitor: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this build")
    server = MonitorServer(make_monitor(), "::1", 0)
    try:
        server.start()
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    try:
        assert server.url == f"http://[::1]:{server.port}"
        assert get(server.url + "/healthz")[0] == 200
    finally:
        server.stop()


def test_start_and_stop_are_idempotent(make_monitor: Any) -> None:
    server = MonitorServer(make_monitor(), "127.0.0.1", 0)
    assert server.start() is server.start()
    assert server.running
    server.stop()
    server.stop()
    assert not server.running


def test_requests_are_quiet(served: ErrorMonitor, capfd: pytest.CaptureFixture[str]) -> None:
    url = served.server.url
    for path in ("/", "/metrics", "/nope", "/api/v1/export?limit=0", "/api/v1/statistics"):
        get(url + path)
    get(url + "/metrics", method="POST")
    raw_request(served.server.port, b"GARBAGE\r\n\r\n")
    raw_request(served.server.port, b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n")
    out, err = capfd.readouterr()
    assert err == "" and out == ""


@pytest.mark.parametrize(
    ("raw_path", "status"),
    [
        (b"/api/v1/errors/../../etc/passwd", 404),
        (b"/../../../../etc/passwd", 404),
        (b"/api/v1/plugins/..%2F..%2Fetc/health", 404),
        (b"/api/v1/errors/%ff%fe", 400),
        (b"/api/v1/errors/%zz", 404),
        (b"/api/v1/errors/%", 404),
        (b"/api/v1/export?since=%ff", 400),
        (b"/api/v1/export?limit=%", 400),
    ],
)
def test_hostile_paths_get_json_errors_never_500(
    served: ErrorMonitor, raw_path: bytes, status: int
) -> None:
    answer = raw_request(
        served.server.port,
        b"GET " + raw_path + b" HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), answer[:200]
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["status"] == status


def test_head_over_the_wire(served: ErrorMonitor) -> None:
    status, headers, body = get(served.server.url + "/api/v1/statistics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def _abort(sock: socket.socket) -> None:
    """Close with RST instead of FIN, like a client that crashed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_client_disconnecting_mid_response_does_not_hurt(
    make_monitor: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    monitor = make_monitor(serve=True, port=0, max_records=5000, queue_size=6000)
    record(monitor, 4000)
    assert monitor.flush(10.0)
    port = monitor.server.port
    threads_before = threading.active_count()
    for path in (b"/api/v1/export", b"/metrics", b"/api/v1/analysis"):
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: [::1]\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.0 200")
            _abort(sock)
    deadline = time.monotonic() + 10
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before
    status, _, body = get(monitor.server.url + "/api/v1/export?limit=10")
    assert status == 200 and len(json.loads(body)["all_records"]) == 10
    _, err = capfd.readouterr()
    assert "Traceback" not in err and err == ""


def test_a_silent_client_does_not_block_others(served: ErrorMonitor) -> None:
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=5):
        assert get(served.server.url + "/healthz")[0] == 200  # get() times out if blocked


def test_concurrent_scrapes_while_errors_are_recorded(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0)
    url = monitor.server.url
    failures: list[str] = []
    recorded = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal recorded
        while not stop.is_set() and recorded < 3000:
            record(monitor, 10, prefix="w")
            recorded += 10

    def scraper(accept: str) -> None:
        for _ in range(15):
            status, _, body = get(url + "/metrics", {"Accept": accept, "Accept-Encoding": "gzip"})
            if status != 200:
                failures.append(f"status {status}")
                continue
            import gzip

            text = gzip.decompress(body).decode()
            try:
                if accept.startswith("application/openmetrics"):
                    from prometheus_client.openmetrics.parser import (
                        text_string_to_metric_families as parse_om,
                    )

                    list(parse_om(text))
                else:
                    list(text_string_to_metric_families(text))
            except Exception as exc:
                failures.append(repr(exc))
            status, _, body = get(url + "/api/v1/statistics")
            if status != 200:
                failures.append(f"statistics {status}")

    write = threading.Thread(target=writer)
    scrapers = [
        threading.Thread(target=scraper, args=(accept,))
        for accept in ["text/plain"] * 3 + ["application/openmetrics-text; version=1.0.0"] * 3
    ]
    write.start()
    for thread in scrapers:
        thread.start()
    for thread in scrapers:
        thread.join(60)
    stop.set()
    write.join(60)
    assert failures == []
    assert monitor.flush(10.0)
    _, _, body = get(url + "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    total = sum(s.value for s in families["app_errors"].samples if s.name == "app_errors_total")
    assert total == recorded
