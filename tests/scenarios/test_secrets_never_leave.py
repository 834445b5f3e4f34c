"""Security: secrets never leave the process; the API is closed without its token.

One test plants passwords, tokens, API keys, cookies, Authorization headers and credentials in
URLs everywhere an app puts data (context, metadata, the exception's own ``context``,
breadcrumbs, log records, messages, chained and grouped exceptions, notes, and local
variables with ``capture_locals=True``) and then looks for every planted value in everything
that leaves: ``export_data()``, the export file, every API response, ``/metrics`` (text and
OpenMetrics), callback payloads and the monitor's own log lines.

The rest: with ``api_token`` set every ``/api`` route refuses a missing or wrong token on the
live server, the token is never logged or echoed, the server binds to loopback unless told
otherwise, and export files are created 0600 whatever the umask.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import ErrorMonitor
from exporter.config import MonitorConfig
from exporter.http.routes import FIXED, PATTERNS

# Every planted value is unique and recognisable, so finding it anywhere is a leak.
SECRETS = {
    "context_password": "ctxpw-7f3a9c41d2",
    "nested_api_key": "nestedkey-5e6f7a8b9c",
    "deep_token": "deeptok-91b2e4d7c0",
    "authorization_header": "authhdr-0c1d2e3f4a5b",
    "cookie": "cookieval-4242abcd",
    "x_api_key": "xapikey-13579bdf",
    "db_url_password": "dburlpw-S3cr3tXYZ",
    "metadata_secret": "mdsecret-0a1b2c3d4e",
    "basic_auth": "YmFzaWN1c2VyOmJhc2ljcHc9",
    "own_context_password": "ownctx-8899aabb",
    "crumb_password": "crumbpw-24680ace",
    "crumb_token": "crumbtok-11223344",
    "log_url_password": "logurlpw-55667788",
    "log_crumb_secret": "logcrumb-99aa88bb",
    "message_url_password": "msgurlpw-Q1w2E3r4",
    "message_bearer": "msgbearer-abcdef012345",
    "message_dict_password": "dictpw-hunter2hunter2",
    "message_json_api_key": "jsonkey-feedface99",
    "cause_password": "causepw-deadbeef01",
    "group_token": "grouptok-cafe1234",
    "note_api_key": "notekey-77665544",
    "log_error_password": "logerrpw-3141592653",
    "local_password": "localpw-27182818",
    "local_token": "localtok-16180339",
    "local_dsn_password": "localdsn-14142135",
    "local_header_bearer": "localbearer-17320508",
    "local_dict_secret": "localdict-22360679",
}
TOKEN = "api-token-Zq7Lw9Xc3Vb5Nm1"
EXCEPTION_GROUP: Any = getattr(builtins, "ExceptionGroup", None)  # Python 3.11+


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def get(
    url: str, token: str | None = None, header: str | None = None, method: str = "GET"
) -> tuple[int, bytes]:
    """GET (or ``method``) without following anything; (status, body) also for 4xx answers."""
    request = urllib.request.Request(url, method=method)
    if header is not None:
        request.add_header("Authorization", header)
    elif token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def leaked(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


# -- planting ----------------------------------------------------------------------------------


def connect_with_locals() -> None:
    """Raises with secrets in its local variables (captured with capture_locals=True)."""
    password = SECRETS["local_password"]
    token = SECRETS["local_token"]
    dsn = f"mysql://root:{SECRETS['local_dsn_password']}@db.internal/app"
    headers = {"Authorization": f"Bearer {SECRETS['local_header_bearer']}"}
    settings = {"service": "billing", "credentials": {"secret": SECRETS["local_dict_secret"]}}
    attempts = 3
    raise ConnectionError(
        f"could not connect after {attempts} attempts "
        f"({len(password) + len(token) + len(dsn)}, {len(headers)}, "
        f"{len(settings)})"
    )


class ExceptionWithContext(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.context = {"password": SECRETS["own_context_password"], "step": "checkout"}


def plant_everything(monitor: ErrorMonitor, logger: logging.Logger) -> list[str]:
    """Record errors carrying every secret in SECRETS; returns their error ids."""
    ids: list[str | None] = []
    monitor.add_breadcrumb(
        f"login as bob with password={SECRETS['crumb_password']}",
        data={"user": "bob", "token": SECRETS["crumb_token"]},
    )
    logger.info("calling https://bob:%s@api.example.com/v1/charge", SECRETS["log_url_password"])
    logger.warning("retrying with secret=%s", SECRETS["log_crumb_secret"])
    ids.append(
        monitor.record_error(
            raised(PermissionError("payment refused")),
            component="payments",
            context={
                "password": SECRETS["context_password"],
                "user": {
                    "name": "bob",
                    "profile": {
                        "api_key": SECRETS["nested_api_key"],
                        "prefs": {"token": SECRETS["deep_token"]},
                    },
                },
                "headers": {
                    "Authorization": f"Bearer {SECRETS['authorization_header']}",
                    "Cookie": f"sessionid={SECRETS['cookie']}; theme=dark",
                    "X-API-Key": SECRETS["x_api_key"],
                    "Accept": "application/json",
                },
                "db_url": f"postgresql://admin:{SECRETS['db_url_password']}@db:5432/app",
            },
            metadata={
                "client_secret": SECRETS["metadata_secret"],
                "request": {"headers": [("Authorization", f"Basic {SECRETS['basic_auth']}")]},
            },
        )
    )
    ids.append(monitor.record_error(raised(ExceptionWithContext("checkout failed"))))
    messages = [
        f"connect to redis://:{SECRETS['message_url_password']}@cache:6379/0 failed",
        f"upstream said 401 for Authorization: Bearer {SECRETS['message_bearer']}",
        f"bad settings {{'user': 'bob', 'password': '{SECRETS['message_dict_password']}'}}",
        f'bad payload {{"api_key": "{SECRETS["message_json_api_key"]}", "n": 1}}',
    ]
    for message in messages:
        ids.append(monitor.record_error(raised(ValueError(message))))
    try:
        try:
            raise OSError(f"login failed with password={SECRETS['cause_password']}")
        except OSError as cause:
            raise RuntimeError("could not log in") from cause
    except RuntimeError as chained:
        ids.append(monitor.record_error(chained))
    member = ValueError(f"job 1: token={SECRETS['group_token']}")
    if EXCEPTION_GROUP is not None:
        ids.append(
            monitor.record_error(
                raised(EXCEPTION_GROUP("batch failed", [member, KeyError("job 2")]))
            )
        )
    else:  # pragma: no cover - Python 3.10
        ids.append(monitor.record_error(raised(member)))
    noted = raised(LookupError("lookup failed"))
    noted.__notes__ = [f"retry with api_key={SECRETS['note_api_key']}"]
    ids.append(monitor.record_error(noted))
    try:
        raise TimeoutError("request timed out")
    except TimeoutError:
        logger.exception(
            "request to https://u:%s@partner.example/api failed", SECRETS["log_error_password"]
        )
    try:
        connect_with_locals()
    except ConnectionError as exc:
        ids.append(monitor.record_error(exc, component="db"))
    assert all(ids), ids
    assert monitor.flush(timeout=10.0)
    return [i for i in ids if i]


@pytest.fixture
def app_logger(make_monitor: Any) -> Iterator[logging.Logger]:
    logger = logging.getLogger("app.security")
    logger.setLevel(logging.INFO)
    yield logger
    logger.setLevel(logging.NOTSET)


def test_planted_secrets_never_leave_the_process(make_monitor, app_logger, tmp_path, caplog):
    monitor = make_monitor(
        serve=True,
        port=0,
        capture_logging=True,
        capture_locals=True,
        pattern_threshold=2,
        export_path=str(tmp_path / "auto"),
    )
    callback_payloads: list[str] = []
    monitor.register_error_callback(
        lambda report: callback_payloads.append(json.dumps(report.to_dict(), default=str))
    )
    monitor.register_pattern_callback(
        lambda pattern: callback_payloads.append(json.dumps(pattern.to_dict(), default=str))
    )
    with caplog.at_level(logging.DEBUG):
        ids = plant_everything(monitor, app_logger)
        base = monitor.server.url
        bodies: dict[str, bytes] = {}
        paths = [
            "/api/v1/export",
            "/api/v1/errors",
            "/api/v1/analysis",
            "/api/v1/statistics",
            "/api/v1/patterns",
            "/api/v1/export?limit=3",
            *(f"/api/v1/errors/{error_id}" for error_id in ids),
        ]
        for path in paths:
            status, body = get(base + path)
            assert status == 200, path
            bodies[path] = body
        for path, accept in (
            ("/metrics", None),
            ("/metrics", "application/openmetrics-text; version=1.0.0"),
        ):
            request = urllib.request.Request(base + path)
            if accept:
                request.add_header("Accept", accept)
            with urllib.request.urlopen(request, timeout=30) as response:
                bodies[f"{path} {accept}"] = response.read()
        export_file = monitor.export_to_file(tmp_path / "errors.json")
        time.sleep(0.2)  # let the callback thread deliver
        monitor._callbacks.flush(5.0)

    exported = json.dumps(monitor.export_data(), ensure_ascii=False)
    places = {
        "export_data": exported,
        "export_file": export_file.read_text(encoding="utf-8"),
        "metrics_text": generate_latest(monitor.registry).decode(),
        "metrics_openmetrics": generate_openmetrics(monitor.registry).decode(),
        "callbacks": "\n".join(callback_payloads),
        "monitor_logs": "\n".join(
            r.getMessage() + str(r.exc_text or "")
            for r in caplog.records
            if r.name.startswith("exporter")
        ),
        **{f"GET {path}": body.decode("utf-8") for path, body in bodies.items()},
    }
    for auto in (tmp_path / "auto").glob("*.json"):
        places[f"auto-export {auto.name}"] = auto.read_text(encoding="utf-8")
    found = {place: leaked(text) for place, text in places.items()}
    found = {place: names for place, names in found.items() if names}
    assert not found, f"secrets leaked: {found}"

    # the data was there and was scrubbed, not silently missing
    assert exported.count("[Filtered]") >= 20, exported.count("[Filtered]")
    assert "bob" in exported and "billing" in exported and "checkout" in exported
    assert any(k.startswith("auto-export") for k in places), "no auto-export was written"
    assert len(callback_payloads) >= len(ids)
    report = monitor.get_group(ids[-1])["report"]
    assert report["metadata"]["locals"]["attempts"] == 3  # locals captured, secrets filtered
    print(
        f"\n[security] {len(SECRETS)} planted secrets, {len(places)} places checked, "
        f"{exported.count('[Filtered]')} values filtered in the export"
    )


# -- the API token -------------------------------------------------------------------------------


def concrete_routes(monitor: ErrorMonitor) -> dict[str, tuple[str, str]]:
    """Every route as {name: (path, access)}, pattern routes with real parameters."""
    error_id = monitor.record_error(raised(ValueError("x")), plugin="p1")
    assert monitor.flush()
    routes = {route.name: (path, route.access) for path, route in FIXED.items()}
    examples = {
        "error": f"/api/v1/errors/{error_id}",
        "plugin_health": "/api/v1/plugins/p1/health",
        "resolve": f"/api/v1/errors/{error_id}/resolve",
    }
    for _, route in PATTERNS:
        assert route.name in examples, f"new route {route.name}: add an example path here"
        routes[route.name] = (examples[route.name], route.access)
    return routes


def test_every_api_route_refuses_a_missing_or_wrong_token(make_monitor, caplog, capfd):
    with caplog.at_level(logging.DEBUG):
        monitor = make_monitor(serve=True, port=0, api_token=TOKEN)
        base = monitor.server.url
        routes = concrete_routes(monitor)
        api = {name: path for name, (path, access) in routes.items() if access == "api"}
        assert len(api) >= 8, api
        bodies: list[bytes] = []
        wrong_headers = [
            None,
            "Bearer wrong-token",
            f"Bearer {TOKEN[:-1]}",
            f"Bearer {TOKEN}x",
            f"Basic {TOKEN}",
            TOKEN,
            "Bearer ",
            f"bearer{TOKEN}",
        ]
        for name, path in api.items():
            for header in wrong_headers:
                status, body = get(base + path, header=header)
                assert status == 401, (name, header, status)
                document = json.loads(body)
                assert document["status"] == 401 and document["error"]
                bodies.append(body)
            status, body = get(base + path, token=TOKEN)
            assert status == 200, (name, status, body[:200])
            bodies.append(body)
        for name, (path, access) in routes.items():
            if access == "write":  # POST only (resolve): same refusals, then it works
                for header in wrong_headers:
                    assert get(base + path, header=header, method="POST")[0] == 401, name
                assert get(base + path, token=TOKEN, method="POST")[0] == 200, name
            elif access != "api":  # "/", "/healthz" and "/metrics" (unless protect_metrics)
                assert get(base + path)[0] == 200, name
        text = "\n".join(b.decode("utf-8", "replace") for b in bodies)
    out, err = capfd.readouterr()
    assert any(r.name.startswith("exporter") for r in caplog.records)
    assert TOKEN not in caplog.text, "the token was logged"
    assert TOKEN not in out + err
    assert TOKEN not in text, "the token was echoed in a response"
    assert TOKEN not in generate_latest(monitor.registry).decode()
    assert TOKEN not in json.dumps(monitor.export_data(), default=str)
    assert TOKEN not in repr(monitor.config) and TOKEN not in str(monitor.config)
    assert TOKEN not in repr(monitor)
    print(
        f"\n[security] {len(api)} /api routes x {len(wrong_headers)} wrong credentials: "
        f"all 401; right token: all 200"
    )


def test_protect_metrics_closes_metrics_too(make_monitor):
    monitor = make_monitor(serve=True, port=0, api_token=TOKEN, protect_metrics=True)
    base = monitor.server.url
    assert get(base + "/metrics")[0] == 401
    assert get(base + "/metrics", token="nope")[0] == 401
    assert get(base + "/metrics", token=TOKEN)[0] == 200
    assert get(base + "/healthz")[0] == 200


# -- binding -------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    addresses = set()
    for connection in psutil.Process().net_connections(kind="inet"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
            addresses.add(connection.laddr.ip)
    return addresses


def non_loopback_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


def test_server_binds_to_loopback_by_default(make_monitor):
    assert MonitorConfig().host == "127.0.0.1"
    monitor = make_monitor(serve=True, port=0)
    port = monitor.server.port
    assert listening_addresses(port) == {"127.0.0.1"}
    assert monitor.server.url.startswith("http://127.0.0.1:")
    outside = non_loopback_ipv4()
    if outside is not None:  # reachable on loopback only
        with pytest.raises(OSError):
            socket.create_connection((outside, port), timeout=2).close()
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_binding_elsewhere_needs_an_explicit_host(make_monitor):
    monitor = make_monitor(serve=True, port=0, host="0.0.0.0")
    assert listening_addresses(monitor.server.port) == {"0.0.0.0"}


# -- export file permissions ---------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: os.PathLike[str] | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_export_files_are_0600_whatever_the_umask(make_monitor, tmp_path, permissive_umask):
    monitor = make_monitor(export_path=str(tmp_path / "auto"), pattern_threshold=2)
    monitor.record_error(raised(ValueError("secret-ish")), context={"note": "private"})
    target = tmp_path / "errors.json"
    target.write_text("{}")
    target.chmod(0o644)  # an existing, readable file is replaced by a private one
    assert mode(monitor.export_to_file(target)) == 0o600
    assert mode(monitor.export_to_file(tmp_path / "new" / "errors.json")) == 0o600
    for _ in range(3):
        monitor.record_error(raised(KeyError("pattern")))
    assert monitor.flush()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not list((tmp_path / "auto").glob("*.json")):
        time.sleep(0.05)
    autos = list((tmp_path / "auto").glob("*.json"))
    assert autos, "no auto-export was written"
    assert all(mode(path) == 0o600 for path in autos), [oct(mode(p)) for p in autos]


def test_concurrent_exports_are_each_complete_and_private(make_monitor, tmp_path):
    monitor = make_monitor()
    for i in range(50):
        monitor.record_error(raised(ValueError(f"e{i}")))
    target = tmp_path / "errors.json"
    failures: list[BaseException] = []

    def export() -> None:
        try:
            for _ in range(5):
                monitor.export_to_file(target)
        except BaseException as exc:  # pragma: no cover
            failures.append(exc)

    threads = [threading.Thread(target=export) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    assert len(json.loads(target.read_text())["all_records"]) == 50
    assert mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["errors.json"]
