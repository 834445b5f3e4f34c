"""docker-compose.yml, deploy/ (Prometheus config, Dockerfile) and deploy/stack.sh."""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.promstack import PromStack, free_port, http_get, query, wait_until
from support.sample_exporter import static_exporter
from support.serving import fetch, promtool_accepts, serving
from support.tools import require_tool

from exporter.http.web_config import load_web_config

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
STACK_SCRIPT = ROOT / "deploy" / "stack.sh"
TLS_INIT = ROOT / "deploy" / "tls-init.py"
APP_WEB_CONFIG = "/etc/error-exporter/tls/web.yml"


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def flag_value(argv: list[str], flag: str) -> str | None:
    """Value of ``--flag=value`` or ``--flag value`` in ``argv``."""
    for index, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(argv):
            return argv[index + 1]
    return None


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the bind mounts (named volumes excluded)."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def mounted_file(service: dict[str, Any], container_path: str) -> Path:
    """The host file that ``container_path`` comes from (file or directory mount)."""
    for source, target in bind_mounts(service):
        if container_path == target:
            return (ROOT / source).resolve()
        if container_path.startswith(target.rstrip("/") + "/"):
            return (ROOT / source / container_path[len(target.rstrip("/")) + 1 :]).resolve()
    raise AssertionError(f"{container_path} is not mounted")


def named_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """container path -> (named volume, read-only) of the named volume mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        parts = str(volume).split(":")
        if parts[0] in COMPOSE["volumes"]:
            mounts[parts[1]] = (parts[0], parts[2:] == ["ro"])
    return mounts


def dockerfile_extras() -> set[str]:
    found = re.search(r"pip install \.\[([a-z,]+)\]", (ROOT / "deploy" / "Dockerfile").read_text())
    assert found, "deploy/Dockerfile installs the package with its extras"
    return set(found.group(1).split(","))


def prometheus_config() -> dict[str, Any]:
    path = flag_value(command_of(SERVICES["prometheus"]), "--config.file")
    assert path, "prometheus needs --config.file"
    config: dict[str, Any] = yaml.safe_load(mounted_file(SERVICES["prometheus"], path).read_text())
    return config


# ---------------------------------------------------------------------------- compose file


@pytest.mark.tools
def test_docker_compose_config_is_valid() -> None:
    compose = require_tool("docker-compose")
    proc = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_services_and_named_volumes() -> None:
    assert set(SERVICES) == {"tls-init", "app", "prometheus", "alertmanager", "grafana", "postgres"}
    for service in ("prometheus", "alertmanager", "grafana", "postgres"):
        named = [str(v).split(":")[0] for v in SERVICES[service].get("volumes", [])]
        assert any(name in COMPOSE["volumes"] for name in named), f"{service}: no data volume"


@pytest.mark.parametrize("service", ["prometheus", "alertmanager", "grafana"])
def test_images_are_pinned(service: str) -> None:
    image = SERVICES[service]["image"]
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", image
    assert re.match(r"v?\d+\.\d+\.\d+$", tag), image


def test_pinned_versions() -> None:
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:v2.53.")
    assert SERVICES["alertmanager"]["image"].startswith("prom/alertmanager:v0.")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:11.6.")
    assert "--enable-feature=exemplar-storage" in command_of(SERVICES["prometheus"])


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_bind_mounted_paths_exist(service: str) -> None:
    for source, _ in bind_mounts(SERVICES[service]):
        assert (ROOT / source).exists(), f"{service}: {source} does not exist"


def test_postgres_service_creates_the_roles_and_the_demo_writes_it() -> None:
    """The shared store: the official image on a named volume, the least-privilege roles
    of deploy/postgres/roles.sql created at its first start; the demo writes as the app's
    role, Grafana reads as the read-only one (tests/unit/dashboards/test_reports_dashboard.py runs
    the same
    roles.sql and every Reports panel as that role)."""
    postgres = SERVICES["postgres"]
    assert re.match(r"postgres:\d+\.\d+$", postgres["image"]), postgres["image"]
    init = mounted_file(postgres, "/docker-entrypoint-initdb.d/10-error-exporter.sh")
    assert init == ROOT / "deploy" / "postgres" / "init.sh" and os.access(init, os.X_OK)
    assert "/etc/error-exporter/roles.sql" in init.read_text()
    assert mounted_file(postgres, "/etc/error-exporter/roles.sql") == (
        ROOT / "deploy" / "postgres" / "roles.sql"
    )
    store_url = SERVICES["app"]["environment"]["ERROR_EXPORTER_STORE_URL"]
    assert store_url.startswith("postgresql://error_exporter:") and "@postgres:5432/" in store_url
    assert "postgres" in SERVICES["app"]["depends_on"]
    assert "postgres" in dockerfile_extras()
    grafana = SERVICES["grafana"]["environment"]
    assert grafana["REPORTS_DB_USER"] == "grafana_errors"
    assert grafana["REPORTS_DB_HOST"] == "postgres:5432"
    datasources = mounted_file(SERVICES["grafana"], "/etc/grafana/provisioning/datasources")
    reports = yaml.safe_load((datasources / "reports.yml").read_text())["datasources"][0]
    assert reports["type"] == "grafana-postgresql-datasource"
    assert reports["url"] == "${REPORTS_DB_HOST}"


def test_app_builds_from_deploy_dockerfile() -> None:
    build = SERVICES["app"]["build"]
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    text = dockerfile.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert "pip install ." in text
    argv = command_of(SERVICES["app"])
    assert argv[:2] == ["error-exporter", "demo"]
    assert flag_value(argv, "--host") == "0.0.0.0"
    assert "--no-live" in argv
    # The image's own CMD is the same command (docker run without compose), which compose
    # runs with the web config file that tls-init made.
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd
    assert [*yaml.safe_load(cmd.group(1)), "--web.config.file", APP_WEB_CONFIG] == argv
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in dockerignore and ".git" in dockerignore


def test_prometheus_scrapes_the_app_service_on_its_port() -> None:
    port = flag_value(command_of(SERVICES["app"]), "--port")
    (job,) = [j for j in prometheus_config()["scrape_configs"] if j["job_name"] == "error-exporter"]
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"app:{port}"]
    published = [str(p).rsplit(":", 1)[-1] for p in SERVICES["app"].get("ports", [])]
    assert port in published


def test_prometheus_alerts_to_the_alertmanager_service() -> None:
    alertmanager = SERVICES["alertmanager"]
    listen = flag_value(command_of(alertmanager), "--web.listen-address") or ":9093"
    port = listen.rsplit(":", 1)[1]
    (manager,) = prometheus_config()["alerting"]["alertmanagers"]
    targets = [t for c in manager["static_configs"] for t in c["targets"]]
    assert targets == [f"alertmanager:{port}"]
    config = flag_value(command_of(alertmanager), "--config.file")
    assert config
    assert mounted_file(alertmanager, config) == ROOT / "alerts" / "alertmanager.yml"


def test_prometheus_loads_the_shipped_rules() -> None:
    prometheus = SERVICES["prometheus"]
    patterns = prometheus_config()["rule_files"]
    rule_mounts = [
        (source, target)
        for source, target in bind_mounts(prometheus)
        if any(fnmatch.fnmatch(target, pattern) for pattern in patterns)
    ]
    assert [(ROOT / s).resolve() for s, _ in rule_mounts] == [ROOT / "alerts" / "rules.yml"]


def test_grafana_provisioning_mounts() -> None:
    grafana = SERVICES["grafana"]
    datasources = mounted_file(grafana, "/etc/grafana/provisioning/datasources")
    dashboards = mounted_file(grafana, "/etc/grafana/provisioning/dashboards")
    assert (datasources / "prometheus.yml").is_file()
    provider = yaml.safe_load((dashboards / "error-exporter.yml").read_text())["providers"][0]
    folder = mounted_file(grafana, provider["options"]["path"])
    assert (folder / "error-exporter-overview.json").is_file()
    assert (folder / "error-exporter-drilldown.json").is_file()
    source = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"][0]
    host_port = source["url"].split("//", 1)[1]
    assert host_port.split(":")[0] in SERVICES
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted_file(grafana, home).is_file()


def test_datasource_time_interval_matches_scrape_interval() -> None:
    """$__rate_interval is only right when Grafana knows the scrape interval."""
    (job,) = [j for j in prometheus_config()["scrape_configs"] if j["job_name"] == "error-exporter"]
    source = yaml.safe_load(
        (ROOT / "dashboards" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert source["jsonData"]["timeInterval"] == job["scrape_interval"]


@pytest.mark.tools
def test_promtool_check_deploy_config() -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(ROOT / "deploy" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- TLS and basic auth


def error_exporter_job() -> dict[str, Any]:
    (job,) = [j for j in prometheus_config()["scrape_configs"] if j["job_name"] == "error-exporter"]
    return dict(job)


def tls_init_dirs() -> tuple[str, str]:
    """(--app-dir, --prometheus-dir) of the tls-init service: where its volumes are."""
    argv = command_of(SERVICES["tls-init"])
    app_dir, prom_dir = flag_value(argv, "--app-dir"), flag_value(argv, "--prometheus-dir")
    assert app_dir and prom_dir
    return app_dir, prom_dir


def test_tls_init_runs_the_script_with_the_app_image_into_named_volumes() -> None:
    init = SERVICES["tls-init"]
    # the app's image: python, bcrypt (the auth extra) and openssl
    assert init["image"] == SERVICES["app"]["image"] and init["build"] == SERVICES["app"]["build"]
    assert {"postgres", "auth"} <= dockerfile_extras()
    argv = command_of(init)
    assert argv[0] == "python" and mounted_file(init, argv[1]) == TLS_INIT
    assert os.access(TLS_INIT, os.X_OK)
    app_dir, prom_dir = tls_init_dirs()
    mounts = named_mounts(init)
    assert mounts[app_dir] == ("app-tls", False) and mounts[prom_dir] == (
        "prometheus-secrets",
        False,
    )
    hosts = (flag_value(argv, "--hosts") or "").split(",")
    assert "app" in hosts and "localhost" in hosts  # Prometheus' name for it, the health check's
    # the password: from the environment (.env), with a laptop default, like the others
    password = init["environment"]["ERROR_EXPORTER_SCRAPE_PASSWORD"]
    assert re.fullmatch(r"\$\{ERROR_EXPORTER_SCRAPE_PASSWORD:-[^}]+\}", password), password
    assert init.get("restart") == "no"


def test_the_app_serves_with_the_web_config_of_tls_init_after_it_completed() -> None:
    app = SERVICES["app"]
    path = flag_value(command_of(app), "--web.config.file")
    assert path == APP_WEB_CONFIG
    app_dir, _ = tls_init_dirs()
    assert posixpath.dirname(path) == app_dir
    assert named_mounts(app)[app_dir] == ("app-tls", True)
    assert app["depends_on"]["tls-init"] == {"condition": "service_completed_successfully"}
    # Prometheus' secrets (the password) are not the app's
    assert "prometheus-secrets" not in [v for v, _ in named_mounts(app).values()]
    health = app["healthcheck"]["test"]
    assert health[:3] == ["CMD", "python", "-c"] and "https://localhost:9718/" in health[3]


def test_prometheus_scrapes_the_app_over_https_with_basic_auth() -> None:
    prometheus = SERVICES["prometheus"]
    _, prom_dir = tls_init_dirs()
    assert named_mounts(prometheus)[prom_dir] == ("prometheus-secrets", True)
    assert "app-tls" not in [v for v, _ in named_mounts(prometheus).values()]  # not the key
    assert prometheus["depends_on"]["tls-init"] == {"condition": "service_completed_successfully"}
    job = error_exporter_job()
    assert job["scheme"] == "https"
    assert job["tls_config"] == {"ca_file": f"{prom_dir}/ca.crt"}
    assert job["basic_auth"] == {
        "username": "prometheus",
        "password_file": f"{prom_dir}/scrape-password",
    }
    # Grafana talks to Prometheus, not to the app
    source = yaml.safe_load(
        (ROOT / "dashboards" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert source["url"].startswith("http://prometheus:")


def test_nothing_secret_is_committed() -> None:
    text = COMPOSE_FILE.read_text() + (ROOT / "deploy" / "prometheus.yml").read_text()
    assert "$2b$" not in text and "$2y$" not in text and "BEGIN" not in text
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.split()
    assert not [f for f in tracked if f.endswith((".key", ".crt", ".pem", "password"))]


def run_tls_init(app_dir: Path, prom_dir: Path, password: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            str(TLS_INIT),
            "--app-dir",
            str(app_dir),
            "--prometheus-dir",
            str(prom_dir),
            "--hosts",
            flag_value(command_of(SERVICES["tls-init"]), "--hosts") or "",
            "--bcrypt-cost",
            "4",
        ],
        env={**os.environ, "ERROR_EXPORTER_SCRAPE_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.tools
def test_tls_init_makes_what_the_app_and_a_real_prometheus_use(tmp_path: Path) -> None:
    """The script for real (local python and openssl): a web config our loader and promtool
    accept, a certificate the monitor serves with basic auth, the compose scrape job (its
    container paths pointed at the files made here) scraping it, the health check passing."""
    require_tool("openssl")
    app_dir, prom_dir = tmp_path / "app-tls", tmp_path / "prometheus-secrets"
    out = run_tls_init(app_dir, prom_dir, "first-Pa55")
    assert "new CA" in out
    web = app_dir / "web.yml"
    assert load_web_config(web).tls is not None
    ok, output = promtool_accepts(web)
    assert ok, output
    assert "first-Pa55" not in web.read_text() and "first-Pa55" not in out
    assert (prom_dir / "scrape-password").read_text() == "first-Pa55"
    for private in (app_dir / "tls.key", web, prom_dir / "scrape-password"):
        assert private.stat().st_mode & 0o077 == 0, private
    assert (app_dir / "ca.crt").read_bytes() == (prom_dir / "ca.crt").read_bytes()
    assert not list(app_dir.glob("ca.key")) and not list(prom_dir.glob("*.key"))

    # again (every `up`): nothing changes; a new password: a new hash, the same certificate
    before = {p.name: p.read_bytes() for p in app_dir.iterdir()}
    assert run_tls_init(app_dir, prom_dir, "first-Pa55") == ""
    assert {p.name: p.read_bytes() for p in app_dir.iterdir()} == before
    run_tls_init(app_dir, prom_dir, "second-Pa55")
    assert (app_dir / "tls.crt").read_bytes() == before["tls.crt"]
    assert web.read_bytes() != before["web.yml"]

    ca = prom_dir / "ca.crt"
    with serving(web) as monitor, PromStack(tmp_path / "prom") as promstack:
        port = monitor.server.port
        for host in ("localhost", "127.0.0.1"):
            url = f"https://{host}:{port}/metrics"
            assert fetch(url, ca=ca, auth=("prometheus", "second-Pa55"))[0] == 200
            assert fetch(url, ca=ca, auth=("prometheus", "first-Pa55"))[0] == 401
            assert fetch(url, ca=ca)[0] == 401
        # the container's health check: TLS with the stack's CA, the 401 is an answer
        check = SERVICES["app"]["healthcheck"]["test"][3]
        check = check.replace("/etc/error-exporter/tls", str(app_dir)).replace(
            "localhost:9718", f"localhost:{port}"
        )
        done = subprocess.run(
            [sys.executable, "-c", check], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        # the compose job, as Prometheus in the stack runs it: the name it verifies is "app"
        job = error_exporter_job()
        container_dir = posixpath.dirname(job["tls_config"]["ca_file"])
        job.update(scrape_interval="1s", static_configs=[{"targets": [f"127.0.0.1:{port}"]}])
        job["tls_config"] = {"ca_file": str(ca), "server_name": "app"}
        job["basic_auth"] = {
            **job["basic_auth"],
            "password_file": str(prom_dir / posixpath.basename(job["basic_auth"]["password_file"])),
        }
        assert container_dir == tls_init_dirs()[1]
        prom = promstack.prometheus({"scrape_configs": [job]})
        found = wait_until(
            lambda: query(prom.url, 'up{job="error-exporter"}'),
            60,
            what="a scrape of the app over TLS",
        )
        assert found[0]["value"][1] == "1", found


# ---------------------------------------------------------------------------- deploy/stack.sh


@pytest.fixture
def running_app() -> Iterator[int]:
    """Stands in for an already running demo: stack.sh must scrape it, not start another."""
    with static_exporter() as port:
        yield port


def test_stack_script_syntax() -> None:
    proc = subprocess.run(["bash", "-n", str(STACK_SCRIPT)], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert os.access(STACK_SCRIPT, os.X_OK)


@pytest.mark.tools
def test_stack_script_runs_and_stops_on_ctrl_c(tmp_path: Path, running_app: int) -> None:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    prom_port, am_port = free_port(), free_port()
    env = {
        **os.environ,
        "APP_PORT": str(running_app),
        "PROM_PORT": str(prom_port),
        "AM_PORT": str(am_port),
        "SCRAPE_INTERVAL": "1s",
        "STACK_DIR": str(tmp_path / "stack"),
    }
    log = (tmp_path / "stack.log").open("wb")
    script = subprocess.Popen(
        [str(STACK_SCRIPT)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    prom = f"http://127.0.0.1:{prom_port}"
    try:
        wait_until(
            lambda: query(prom, 'up{job="error-exporter"} == 1'),
            60,
            what="prometheus scraping the running exporter",
        )
        wait_until(
            lambda: query(prom, 'up{job="alertmanager"} == 1'), 30, what="alertmanager scraped"
        )
        status, body = http_get(f"{prom}/api/v1/rules")
        assert status == 200 and b"error-exporter.alerts" in body
        assert not (tmp_path / "stack" / "demo.log").exists(), "demo started despite running app"
    finally:
        script.send_signal(signal.SIGINT)
        try:
            script.wait(timeout=30)
        except subprocess.TimeoutExpired:
            script.kill()
            script.wait(timeout=10)
        log.close()
    output = (tmp_path / "stack.log").read_text()
    assert "stopped" in output, output
    for port in (prom_port, am_port):
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{port}/-/ready", timeout=2)
