"""Who may read the monitor: the web config file (TLS, client certificates, basic auth), the
Host check of a loopback bind, and the clients that speak to such a server.

Everything here is real: certificates made by ``openssl`` (a CA, server, client, an expired
server certificate, a client certificate from a CA nobody trusts), bcrypt hashes, the stdlib
server on a socket, Python's ssl clients, ``curl`` when installed, ``promtool check
web-config`` on every file the tests and the README call valid, and a real Prometheus that
scrapes the monitor over TLS with basic auth and with a client certificate.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from support.certs import Certs, make_certs, new_server_cert
from support.promstack import PromStack, free_port, query, wait_until
from support.serving import QUIET, fetch, promtool_accepts, serving
from support.tools import require_tool

from exporter import ErrorMonitor
from exporter.cli.client import ApiClient, AuthRequired, ClientAccess, ConnectionFailed
from exporter.cli.main import main
from exporter.config import ConfigError, load_config
from exporter.http.basic_auth import BasicAuth, parse_basic
from exporter.http.host_check import HostCheck, host_name
from exporter.http.web_config import load_web_config

ROOT = Path(__file__).resolve().parents[3]
USER = "prom"
PASSWORD = "hunter2-correct-horse"  # planted: must never appear in a log, error or metric
WRONG = "hunter2-wrong-battery"
TOKEN = "tok-9f8e7d-bearer"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    require_tool("openssl")
    return make_certs(tmp_path_factory.mktemp("certs"))


def web_config(
    path: Path,
    certs: Certs | None = None,
    *,
    users: bool = True,
    mtls: bool = False,
    cert: Path | None = None,
    key: Path | None = None,
    **extra: Any,
) -> Path:
    data: dict[str, Any] = {}
    if certs is not None:
        tls: dict[str, Any] = {
            "cert_file": str(cert or certs.server_cert),
            "key_file": str(key or certs.server_key),
        }
        if mtls:
            tls.update(client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(certs.ca))
        data["tls_server_config"] = tls
    if users:
        data["basic_auth_users"] = {USER: HASH}
    data.update(extra)
    path.write_text(yaml.safe_dump(data))
    return path


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# -- the web config file ------------------------------------------------------------------


def test_the_files_documented_and_tested_are_valid_for_promtool_and_the_monitor(
    certs: Certs, tmp_path: Path
) -> None:
    files = [
        web_config(tmp_path / "basic.yml", certs),
        web_config(tmp_path / "mtls.yml", certs, users=False, mtls=True),
        web_config(tmp_path / "users-only.yml"),
        web_config(
            tmp_path / "full.yml",
            certs,
            http_server_config={
                "http2": True,
                "headers": {
                    "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "deny",
                    "Strict-Transport-Security": "max-age=31536000",
                },
            },
        ),
    ]
    full = yaml.safe_load(files[-1].read_text())
    full["tls_server_config"].update(
        min_version="TLS12",
        max_version="TLS13",
        prefer_server_cipher_suites=True,
        cipher_suites=[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ],
        curve_preferences=["X25519", "CurveP256"],
    )
    files[-1].write_text(yaml.safe_dump(full))
    for path in files:
        ok, output = promtool_accepts(path)
        assert ok, output
        load_web_config(path)
    loaded = load_web_config(files[-1])
    assert loaded.tls is not None and loaded.tls.cipher_suites == (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
    )
    assert ("X-Frame-Options", "deny") in loaded.headers


@pytest.mark.parametrize(
    ("text", "named", "promtool_too"),
    [
        (
            "basic_auth_user:\n  a: b\n",
            "basic_auth_user: unknown key (did you mean basic_auth_users?)",
            True,
        ),
        (
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {ca}\n",
            "client_ca_file is set but client_auth_type is NoClientCert",
            True,
        ),
        (
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  clent_auth_type: x\n",
            "tls_server_config.clent_auth_type: unknown key (did you mean "
            "tls_server_config.client_auth_type?)",
            True,
        ),
        (
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file: RequireAndVerifyClientCert needs the CA",
            False,
        ),
        (
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS14\n",
            "tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13",
            True,
        ),
        ("tls_server_config:\n  cert_file: {cert}\n", "tls_server_config.key_file: missing", False),
        (
            "tls_server_config:\n  cert_file: {cert}\n  key_file: /nonexistent/key.pem\n",
            "tls_server_config.key_file: /nonexistent/key.pem is not a readable file",
            False,
        ),
        (
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
            "  client_auth_type: RequireAnyClientCert\n  client_ca_file: {ca}\n",
            "RequireAnyClientCert: Python's ssl module cannot",
            False,
        ),
        (
            "http_server_config:\n  headers:\n    Access-Control-Allow-Origin: '*'\n",
            "http_server_config.headers: 'Access-Control-Allow-Origin' cannot be set",
            True,
        ),
        (
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cipher_suites: [RC4]\n",
            "tls_server_config.cipher_suites: unknown cipher suite 'RC4'",
            True,
        ),
    ],
)
def test_a_bad_web_config_is_a_config_error_naming_the_key(
    certs: Certs, tmp_path: Path, text: str, named: str, promtool_too: bool
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text.format(cert=certs.server_cert, key=certs.server_key, ca=certs.ca))
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert named in str(caught.value) and str(path) in str(caught.value)
    if promtool_too:  # where the toolkit refuses the same file, so does its own checker
        assert not promtool_accepts(path)[0]


def test_a_clear_text_password_in_basic_auth_users_is_refused_without_being_shown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"basic_auth_users": {USER: PASSWORD}}))
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert f"basic_auth_users.{USER}: must be a bcrypt hash" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_bad_web_config_stops_the_monitor_at_start(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users: {a: notahash}\n")
    monitor = ErrorMonitor(**QUIET, serve=True, port=0, web_config_file=str(path))
    try:
        with pytest.raises(ConfigError, match=r"basic_auth_users\.a"):
            monitor.start()
    finally:
        monitor.stop(timeout=2.0)
    assert (
        main(["check-config", str(_yaml(tmp_path / "m.yml", {"web_config_file": str(path)}))]) == 2
    )


def _yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_web_config_file_and_allowed_hosts_are_options_like_the_others(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path / "m.yml", {"web_config_file": "/etc/w.yml", "allowed_hosts": ["a.example"]}
    )
    assert load_config(path, environ={}).allowed_hosts == ["a.example"]
    env = {
        "ERROR_EXPORTER_WEB_CONFIG_FILE": "/x/web.yml",
        "ERROR_EXPORTER_ALLOWED_HOSTS": "[monitor.internal, 10.0.0.7]",
    }
    config = load_config(environ=env)
    assert config.web_config_file == "/x/web.yml"
    assert config.allowed_hosts == ["monitor.internal", "10.0.0.7"]
    assert load_config(environ={}, allowed_hosts=["b"]).allowed_hosts == ["b"]
    with pytest.raises(ConfigError, match="allowed_hosts: must be a list of host names"):
        load_config(environ={}, allowed_hosts="a.example")


# -- basic auth ----------------------------------------------------------------------------


def test_basic_auth_checks_unknown_users_against_a_hash_of_the_same_cost() -> None:
    auth = BasicAuth({USER: HASH})
    assert auth.check(USER, PASSWORD) and auth.check(USER, PASSWORD)  # second: cached
    assert not auth.check(USER, WRONG)
    assert not auth.check("nobody", PASSWORD)
    assert not auth.check(USER, PASSWORD + "x" * 100)  # over bcrypt's 72 bytes
    # the dummy hash has the users' cost, so an unknown user pays the same bcrypt time
    assert auth._dummy[:7] == HASH.encode()[:7]
    assert PASSWORD.encode() not in b"".join(auth._cache)  # keys are MACs, not passwords
    assert parse_basic("Basic " + base64.b64encode(b"u:p:q").decode()) == ("u", "p:q")
    assert parse_basic("Basic %%%") is None and parse_basic("Bearer x") is None


def test_tls_and_basic_auth_guard_every_route(
    certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = web_config(tmp_path / "web.yml", certs)
    caplog.set_level(logging.DEBUG)
    with serving(config, api_token=TOKEN) as monitor:
        url = monitor.server.url
        assert url.startswith("https://127.0.0.1:")
        paths = [
            "/",
            "/healthz",
            "/metrics",
            "/api/v1/statistics",
            "/api/v1/export",
            "/api/v1/openapi.json",
        ]
        for path in paths:
            status, headers, body = fetch(url + path, ca=certs.ca, auth=(USER, PASSWORD))
            assert status == 200, (path, body)
            assert not any(h.lower().startswith("access-control-") for h in headers)
            assert fetch(url + path, ca=certs.ca, bearer=TOKEN)[0] == 200  # either admits
            for auth in (None, (USER, WRONG), ("nobody", PASSWORD), (USER, "")):
                status, headers, body = fetch(url + path, ca=certs.ca, auth=auth)
                assert status == 401, (path, auth)
                assert headers["WWW-Authenticate"].startswith('Basic realm="error-exporter"')
                assert json.loads(body)["status"] == 401
            assert fetch(url + path, ca=certs.ca, bearer="wrong")[0] == 401
        _, _, metrics = fetch(url + "/metrics", ca=certs.ca, auth=(USER, PASSWORD))
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    for secret in (
        PASSWORD,
        WRONG,
        HASH,
        TOKEN,
        base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    ):
        assert secret not in logged
        assert secret.encode() not in metrics


def test_a_client_without_the_ca_or_with_plain_http_is_refused(
    certs: Certs, tmp_path: Path
) -> None:
    with serving(web_config(tmp_path / "web.yml", certs)) as monitor:
        url = monitor.server.url
        with pytest.raises(urllib.error.URLError) as caught:
            fetch(url + "/metrics", auth=(USER, PASSWORD))  # system CAs only
        assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
        answer = raw(monitor.server.port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 400 ")
        assert b"this server speaks HTTPS" in answer
        # a client that connects and says nothing holds its own thread, not the accept
        # loop: another client is served meanwhile
        with socket.create_connection(("127.0.0.1", monitor.server.port)):
            assert fetch(url + "/healthz", ca=certs.ca, auth=(USER, PASSWORD))[0] == 200


def test_an_expired_server_certificate_is_refused_by_clients(certs: Certs, tmp_path: Path) -> None:
    config = web_config(tmp_path / "web.yml", certs, cert=certs.expired_cert, key=certs.expired_key)
    with serving(config) as monitor:
        with pytest.raises(urllib.error.URLError) as caught:
            fetch(monitor.server.url + "/metrics", ca=certs.ca, auth=(USER, PASSWORD))
        assert "expired" in str(caught.value.reason)
        client = ApiClient(
            monitor.server.url,
            access=ClientAccess(ca_file=str(certs.ca), user=USER, password=PASSWORD),
        )
        with pytest.raises(ConnectionFailed, match="certificate has expired"):
            client.health()


def test_mutual_tls_admits_only_certificates_of_the_client_ca(certs: Certs, tmp_path: Path) -> None:
    with serving(web_config(tmp_path / "web.yml", certs, users=False, mtls=True)) as monitor:
        url = monitor.server.url + "/metrics"
        status, _, body = fetch(url, ca=certs.ca, cert=(certs.client_cert, certs.client_key))
        assert status == 200 and b"# HELP" in body
        for cert in (None, (certs.stranger_cert, certs.stranger_key)):
            with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
                fetch(url, ca=certs.ca, cert=cert)
        client = ApiClient(
            monitor.server.url,
            access=ClientAccess(
                ca_file=str(certs.ca),
                cert_file=str(certs.client_cert),
                key_file=str(certs.client_key),
            ),
        )
        assert client.health()["status"] == "ok"
        with pytest.raises(ConnectionFailed):
            ApiClient(monitor.server.url, access=ClientAccess(ca_file=str(certs.ca))).health()


def _served_certificate(port: int, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def _der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_a_rotated_certificate_is_served_without_a_restart(certs: Certs, tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(certs.server_cert, cert)
    shutil.copy(certs.server_key, key)
    with serving(web_config(tmp_path / "web.yml", certs, cert=cert, key=key)) as monitor:
        port = monitor.server.port
        assert _served_certificate(port, certs.ca) == _der(certs.server_cert)
        new_cert, new_key = new_server_cert(certs, "rotated")
        # half-way through a rotation (certificate replaced, key not yet): the old pair
        # keeps serving instead of failing every handshake
        shutil.copy(new_cert, cert)
        assert _served_certificate(port, certs.ca) == _der(certs.server_cert)
        shutil.copy(new_key, key)
        assert _served_certificate(port, certs.ca) == _der(new_cert)
        assert monitor.server.tls.reloads == 1
        status, _, _ = fetch(monitor.server.url + "/healthz", ca=certs.ca, auth=(USER, PASSWORD))
        assert status == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_right_wrong_and_missing_credentials(certs: Certs, tmp_path: Path) -> None:
    with serving(web_config(tmp_path / "web.yml", certs, mtls=True)) as monitor:
        url = monitor.server.url + "/metrics"

        def curl(*args: str) -> tuple[int, str]:
            done = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "20",
                    *args,
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            return done.returncode, done.stdout

        mine = (
            "--cacert",
            str(certs.ca),
            "--cert",
            str(certs.client_cert),
            "--key",
            str(certs.client_key),
        )
        assert curl(*mine, "-u", f"{USER}:{PASSWORD}") == (0, "200")
        assert curl(*mine, "-u", f"{USER}:{WRONG}") == (0, "401")
        assert curl(*mine) == (0, "401")
        assert curl("--cacert", str(certs.ca), "-u", f"{USER}:{PASSWORD}")[0] != 0  # no cert
        assert curl(*mine[2:], "-u", f"{USER}:{PASSWORD}")[0] == 60  # untrusted server


# -- Host check and CORS -------------------------------------------------------------------


def test_host_names_are_parsed_strictly() -> None:
    assert host_name("LocalHost:9718") == "localhost"
    assert host_name("[::1]:80") == "::1" and host_name("[::1]") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    for bad in ("a:b:c", "host:99999", "[::1", "evil.example/x", "u@evil.example", ""):
        assert host_name(bad) is None
    check = HostCheck("127.0.0.1", ["monitor.internal"])
    for good in (
        "localhost",
        "localhost:1",
        "127.0.0.1:9718",
        "127.9.9.9",
        "[::1]:5",
        "monitor.internal:9718",
    ):
        assert check.allows(good)
    for bad in (
        "rebind.attacker.example:9718",
        "localhost.attacker.example",
        "10.0.0.1",
        "127.0.0.1.nip.io",
    ):
        assert not check.allows(bad)
    assert HostCheck("0.0.0.0").allows("anything.example")


def test_a_rebinding_request_to_a_loopback_server_is_refused(make_monitor: Any) -> None:
    monitor = make_monitor(serve=True, port=0, allowed_hosts=["monitor.internal"])
    port = monitor.server.port
    url = monitor.server.url
    status, headers, body = fetch(
        url + "/api/v1/errors",
        headers={
            "Host": f"rebind.attacker.example:{port}",
            "Origin": f"http://rebind.attacker.example:{port}",
        },
    )
    assert status == 421
    assert "allowed_hosts" in json.loads(body)["error"]
    assert not any(h.lower().startswith("access-control-") for h in headers)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "monitor.internal:9718"):
        assert fetch(url + "/api/v1/errors", headers={"Host": host})[0] == 200


def test_read_routes_never_carry_cors_headers(make_monitor: Any) -> None:
    from werkzeug.test import Client

    from exporter import wsgi_app
    from exporter.http.routes import FIXED

    monitor = make_monitor()
    client = Client(wsgi_app(monitor))
    for path in FIXED:
        for method in ("GET", "OPTIONS"):
            response = client.open(
                path,
                method=method,
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
            assert not [
                h for h, _ in response.headers.items() if h.lower().startswith("access-control-")
            ], path


def test_an_exposed_server_without_tls_or_auth_warns_once(
    make_monitor: Any, certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="exporter.http"):
        make_monitor(serve=True, host="0.0.0.0", port=0)
    [warning] = [r.getMessage() for r in caplog.records if "without TLS" in r.getMessage()]
    assert "0.0.0.0" in warning and "basic_auth_users" in warning and "127.0.0.1" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exporter.http"):
        make_monitor(
            serve=True,
            host="0.0.0.0",
            port=0,
            web_config_file=str(web_config(tmp_path / "w.yml", certs)),
        )
        make_monitor(serve=True, host="0.0.0.0", port=0, api_token=TOKEN)
        make_monitor(serve=True, host="127.0.0.1", port=0)
    assert not [r for r in caplog.records if "without TLS" in r.getMessage()]


# -- the command line as a client ----------------------------------------------------------


def test_the_cli_reads_a_tls_and_basic_auth_server(
    certs: Certs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text(WRONG)
    with serving(web_config(tmp_path / "web.yml", certs), api_token=TOKEN) as monitor:
        try:
            raise KeyError("boom")
        except KeyError as exc:
            error_id = monitor.record_error(exc, component="tls")
        monitor.flush()
        url = monitor.server.url
        creds = [
            "--ca-file",
            str(certs.ca),
            "--basic-auth-user",
            USER,
            "--basic-auth-password-file",
            str(password_file),
        ]
        assert main(["analyze", "--url", url, "--json", *creds]) == 0
        assert json.loads(capsys.readouterr().out)["statistics"]["total_errors"] == 1
        out = tmp_path / "export.json"
        assert main(["export", "--url", url, "-o", str(out), *creds]) == 0
        assert json.loads(out.read_text())["all_records"]
        assert main(["watch", "--url", url, "--no-rich", "--iterations", "1", *creds]) == 0
        assert main(["resolve", error_id, "--url", url, *creds]) == 0
        capsys.readouterr()
        # the same through the environment
        monkeypatch.setenv("ERROR_EXPORTER_CA_FILE", str(certs.ca))
        monkeypatch.setenv("ERROR_EXPORTER_BASIC_AUTH_USER", USER)
        monkeypatch.setenv("ERROR_EXPORTER_BASIC_AUTH_PASSWORD_FILE", str(password_file))
        assert main(["analyze", "--url", url, "--json"]) == 0
        capsys.readouterr()
        # wrong, missing and unreadable credentials: exit 1 (or 2), never the password
        monkeypatch.setenv("ERROR_EXPORTER_BASIC_AUTH_PASSWORD_FILE", str(wrong_file))
        assert main(["analyze", "--url", url]) == 1
        monkeypatch.delenv("ERROR_EXPORTER_BASIC_AUTH_USER")
        monkeypatch.delenv("ERROR_EXPORTER_BASIC_AUTH_PASSWORD_FILE")
        assert main(["analyze", "--url", url]) == 1
        assert (
            main(
                [
                    "analyze",
                    "--url",
                    url,
                    "--basic-auth-user",
                    USER,
                    "--basic-auth-password-file",
                    str(tmp_path / "missing"),
                ]
            )
            == 2
        )
        monkeypatch.delenv("ERROR_EXPORTER_CA_FILE")
        assert main(["analyze", "--url", url, *creds[2:]]) == 1  # server not trusted
        err = capsys.readouterr().err
        assert "rejected the basic auth credentials of user 'prom'" in err
        assert "needs basic auth" in err and "not trusted" in err
        assert PASSWORD not in err and WRONG not in err
    assert PASSWORD not in repr(ClientAccess(user=USER, password=PASSWORD))
    with pytest.raises(SystemExit):  # no option takes a password on the command line
        from exporter.cli.main import build_parser

        build_parser().parse_args(["analyze", "--basic-auth-password", PASSWORD])


def test_the_serve_sidecar_takes_a_web_config_file(certs: Certs, tmp_path: Path) -> None:
    directory = tmp_path / "mp"
    directory.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--multiproc-dir",
            str(directory),
            "--port",
            str(port),
            "--web.config.file",
            str(web_config(tmp_path / "w.yml", certs)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"https://127.0.0.1:{port}" in line, line
        client = ApiClient(
            f"https://127.0.0.1:{port}",
            access=ClientAccess(ca_file=str(certs.ca), user=USER, password=PASSWORD),
        )
        assert client.health()["status"] == "ok"
        with pytest.raises(AuthRequired):
            ApiClient(
                f"https://127.0.0.1:{port}", access=ClientAccess(ca_file=str(certs.ca))
            ).health()
    finally:
        process.terminate()
        process.wait(timeout=20)
    bad = tmp_path / "bad.yml"
    bad.write_text("basic_auth_users: {x: y}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--multiproc-dir",
            str(directory),
            "--port",
            str(free_port()),
            "--web.config.file",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "basic_auth_users.x" in done.stderr


# -- a real Prometheus ---------------------------------------------------------------------


def test_prometheus_scrapes_over_tls_with_basic_auth_and_with_a_client_certificate(
    certs: Certs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text(WRONG)
    basic = web_config(tmp_path / "basic.yml", certs)
    mtls = web_config(tmp_path / "mtls.yml", certs, users=False, mtls=True)
    with serving(basic) as one, serving(mtls) as two, PromStack(tmp_path / "prom") as promstack:

        def job(name: str, port: int, **extra: Any) -> dict[str, Any]:
            return {
                "job_name": name,
                "scheme": "https",
                "scrape_interval": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                "tls_config": {"ca_file": str(certs.ca), **extra.pop("tls", {})},
                **extra,
            }

        prom = promstack.prometheus(
            {
                "scrape_configs": [
                    job(
                        "tls-basic",
                        one.server.port,
                        basic_auth={"username": USER, "password_file": str(password_file)},
                    ),
                    job(
                        "tls-wrong",
                        one.server.port,
                        basic_auth={"username": USER, "password_file": str(wrong_file)},
                    ),
                    job(
                        "mtls",
                        two.server.port,
                        tls={
                            "cert_file": str(certs.client_cert),
                            "key_file": str(certs.client_key),
                        },
                    ),
                    job("mtls-none", two.server.port),
                ]
            }
        )

        def ups() -> dict[str, str] | None:
            found = {r["metric"]["job"]: r["value"][1] for r in query(prom.url, "up")}
            return found if len(found) == 4 else None

        found = wait_until(ups, timeout=60, what="a scrape of every job")
        assert found == {"tls-basic": "1", "tls-wrong": "0", "mtls": "1", "mtls-none": "0"}
        [samples] = query(prom.url, 'scrape_samples_scraped{job="mtls"}')
        assert float(samples["value"][1]) > 0
        # the fleet view fetches each target's export over TLS with the same credentials
        code = main(
            [
                "analyze",
                "--prometheus",
                prom.url,
                "--job",
                "tls-basic",
                "--json",
                "--ca-file",
                str(certs.ca),
                "--basic-auth-user",
                USER,
                "--basic-auth-password-file",
                str(password_file),
            ]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"https://127.0.0.1:{one.server.port}" in out


# -- the docs (docs/deployment.md: TLS and basic auth) -----------------------------------


def test_the_documented_web_config_passes_promtool(certs: Certs, tmp_path: Path) -> None:
    text = (ROOT / "docs" / "deployment.md").read_text("utf-8")
    marker = "<!-- web-config example -->"
    assert marker in text
    block = text.split(marker, 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)
    tls = data["tls_server_config"]
    # the documented paths are where a deployment keeps them; here: the test's certificates
    assert (tls["cert_file"], tls["key_file"]) == (
        "/etc/error-exporter/tls.crt",
        "/etc/error-exporter/tls.key",
    )
    tls.update(cert_file=str(certs.server_cert), key_file=str(certs.server_key))
    if "client_ca_file" in tls:
        tls["client_ca_file"] = str(certs.ca)
    path = _yaml(tmp_path / "web.yml", data)
    ok, output = promtool_accepts(path)
    assert ok, output
    load_web_config(path)
    scrape = text.split("<!-- web-config scrape -->", 1)[1].split("```yaml\n", 1)[1]
    scrape_config = yaml.safe_load(scrape.split("```", 1)[0])
    prom = _yaml(tmp_path / "prometheus.yml", scrape_config)
    done = subprocess.run(
        [require_tool("promtool"), "check", "config", str(prom)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # the password file is the deployment's; promtool only warns about the missing file
    assert done.returncode == 0 or "password" in done.stdout + done.stderr, done.stdout


def test_the_client_never_follows_a_redirect_to_another_origin_with_its_credentials(
    tmp_path: Path,
) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    seen: list[str | None] = []

    class Catcher(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            return None

    catcher = ThreadingHTTPServer(("127.0.0.1", 0), Catcher)

    class Redirector(Catcher):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{catcher.server_port}/healthz")
            self.end_headers()

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    for server in (catcher, redirector):
        Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ApiClient(
            f"http://127.0.0.1:{redirector.server_port}",
            access=ClientAccess(user=USER, password=PASSWORD),
        )
        with pytest.raises(Exception, match="302"):
            client.health()
        assert seen == []
        assert ApiClient(f"http://127.0.0.1:{catcher.server_port}", token=TOKEN).health() == {}
        assert seen == [f"Bearer {TOKEN}"]
    finally:
        for server in (catcher, redirector):
            server.shutdown()
            server.server_close()
