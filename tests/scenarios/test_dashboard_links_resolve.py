"""Every link of the dashboards, opened as a user would on a two-instance setup.

Two real demo processes (each with an ``api_token``) on free loopback ports, a real Prometheus
scraping both (exemplars on), and, where nginx is installed, the shipped token-adding proxy
(deploy/nginx/error-exporter-api.conf) in front of them with a stand-in for Grafana's
``/api/user``. Every process is stopped by its PID (PromStack), on failure or interruption too.

For every link of every board (dashboard links, panel links, data links, field override links)
and the exemplar destinations of the provisioned data source, the values a user would have are
substituted: the clicked series' or row's labels from the panel's own query run on Prometheus
(with the instance variable on All and on both instances), the error ids of the exemplars, the
time range. Then:

- a link to the JSON API answers 200 with what it promises (the export holds only the clicked
  component, plugin and error type; the plugin's health is that plugin's...), directly
  (``api_base`` ``http://``, the token sent as the browser would have to) and through the proxy
  (``api_base`` the proxy's base: no token in the browser, a Grafana session instead);
- a link to a board names an existing uid, and each ``var-`` parameter is a variable of that
  board with a value it offers (Prometheus boards: the variable's own ``label_values`` query).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info < (3, 11):  # as tests/test_dashboards.py: the SDK needs 3.11+
    pytest.skip(
        "the dashboards are built with grafana-foundation-sdk (3.11+)", allow_module_level=True
    )

from support.grafana import (
    DASHBOARD_DIR,
    LABEL_VALUES,
    panels,
    substitute_macros,
    substitute_variables,
    variables,
)
from support.promstack import (
    PromStack,
    Service,
    exemplars,
    free_port,
    label_values,
    query,
    wait_until,
)
from support.tools import in_ci, require_tool

pytestmark = [pytest.mark.tools, pytest.mark.slow]

ROOT = DASHBOARD_DIR.parent
BOARD_FILES = (
    "error-exporter-overview.json",
    "error-exporter-drilldown.json",
    "error-exporter-reports.json",
)
BOARDS = {
    json.loads((DASHBOARD_DIR / n).read_text())["uid"]: json.loads((DASHBOARD_DIR / n).read_text())
    for n in BOARD_FILES
}
TOKEN = "dashboard-links-token-0123456789"
SESSION = "grafana_session=a-signed-in-viewer"
JOB = "error-exporter"
SCRAPE_SECONDS = 1.0
PROXY_PREFIX = "/error-exporter-api/"
FIELD = re.compile(r"\$\{__(?:field\.labels|data\.fields)\.(\w+)\}")
RANGE = {"from": "now-1h", "to": "now"}
# The Reports board's own variables, as a user has them (their values come from SQL)
REPORTS_VALUES = {"reports_ds": "error-exporter-reports", "app": "demo", "version": "1.0.0"}


# ---------------------------------------------------------------------------- the setup


class GrafanaUser:
    """Stands in for Grafana's ``GET /api/user``: 200 for the session cookie, 401 otherwise."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path == "/api/user" and SESSION in (self.headers.get("Cookie") or "")
                body = b'{"login": "viewer"}' if ok else b'{"message": "Unauthorized"}'
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Fleet:
    prom: Service
    instances: list[str]  # the instance label values (127.0.0.1:PORT)
    proxy_base: str | None  # http://127.0.0.1:PORT/error-exporter-api/ when nginx runs
    access_log: Path | None


def start_demo(stack: PromStack, name: str, seed: int) -> Service:
    port = free_port()
    argv = [
        sys.executable, "-m", "exporter", "demo",
        "--host", "127.0.0.1", "--port", str(port),
        "--rate", "50", "--seed", str(seed), "--no-live",
    ]  # fmt: skip
    env = {**os.environ, "ERROR_EXPORTER_API_TOKEN": TOKEN}
    return stack.spawn(name, argv, port=port, ready_path="/healthz", cwd=ROOT, env=env)


def start_proxy(stack: PromStack, instances: list[str], grafana_port: int) -> tuple[str, Path]:
    """nginx with the shipped locations, this test's allowed instances, token and Grafana."""
    nginx = require_tool("nginx")
    workdir = stack.workdir / "nginx"
    secrets = workdir / "error-exporter"
    secrets.mkdir(parents=True)
    allowed = "|".join(re.escape(i) for i in instances)
    (secrets / "instances.conf").write_text(
        f'if ($error_exporter_instance !~ "^({allowed})$") {{ return 403; }}\n'
    )
    (secrets / "token.conf").write_text(f'proxy_set_header Authorization "Bearer {TOKEN}";\n')
    (secrets / "token.conf").chmod(0o600)
    shipped = (ROOT / "deploy" / "nginx" / "error-exporter-api.conf").read_text()
    locations = workdir / "error-exporter-api.conf"
    locations.write_text(shipped.replace("/etc/nginx/error-exporter/", f"{secrets}/"))
    port = free_port()
    temp = workdir / "temp"
    temp.mkdir()
    access_log = workdir / "access.log"
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process on;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 64; }}
http {{
    access_log {access_log};
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream grafana {{ server 127.0.0.1:{grafana_port}; }}
    server {{
        listen 127.0.0.1:{port};
        include {locations};
    }}
}}
"""
    )
    argv = [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    stack.spawn("nginx", argv, port=port, ready_path=None)
    base = f"http://127.0.0.1:{port}{PROXY_PREFIX}"
    wait_until(lambda: get(base + "nothing")[0] == 404, 20, what="nginx listening")
    return base, access_log


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("links")
    grafana = GrafanaUser()
    try:
        with PromStack(workdir) as stack:
            demos = [start_demo(stack, f"demo-{i}", seed=i) for i in (1, 2)]
            instances = [f"127.0.0.1:{d.port}" for d in demos]
            prom = stack.prometheus(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": instances}]}
                    ],
                },
                exemplars=True,
            )
            wait_until(
                lambda: len(query(prom.url, f'up{{job="{JOB}"}} == 1')) == 2,
                60,
                what="both instances scraped",
            )
            wait_until(
                lambda: len(query(prom.url, f'count_over_time(up{{job="{JOB}"}}[1m]) >= 8')) == 2,
                60,
                interval=1.0,
                what="eight scrapes of each instance",
            )
            proxy_base, access_log = None, None
            # without nginx (outside CI) the direct links are still checked
            if shutil.which("nginx") or in_ci():
                proxy_base, access_log = start_proxy(stack, instances, grafana.port)
            yield Fleet(prom, instances, proxy_base, access_log)
    finally:
        grafana.stop()


# ---------------------------------------------------------------------------- HTTP


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ---------------------------------------------------------------------------- the links


@dataclass(frozen=True)
class Link:
    board: str  # uid
    panel: dict[str, Any] | None  # None: a dashboard link
    link: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.link.get("url", ""))

    @property
    def name(self) -> str:
        title = self.panel.get("title", "?") if self.panel else "(dashboard)"
        return f"{self.board} / {title} / {self.link.get('title')}"


def board_links(uid: str, board: dict[str, Any]) -> Iterator[Link]:
    for link in board.get("links", []):
        yield Link(uid, None, link)
    for panel in panels(board):
        field_config = panel.get("fieldConfig", {})
        found = [*panel.get("links", []), *field_config.get("defaults", {}).get("links", [])]
        for override in field_config.get("overrides", []):
            for prop in override.get("properties", []):
                if prop.get("id") == "links":
                    found += prop["value"]
        for link in found:
            yield Link(uid, panel, link)


ALL_LINKS = [link for uid, board in BOARDS.items() for link in board_links(uid, board)]


def test_every_kind_of_link_is_covered() -> None:
    """The boards have links of each kind this module opens (a new kind needs a check)."""
    kinds = {classify(link) for link in ALL_LINKS}
    assert kinds == {"api", "board", "boards-by-tag", "sql-field"}, kinds
    assert len([link for link in ALL_LINKS if classify(link) == "api"]) >= 5


def classify(link: Link) -> str:
    if link.link.get("type") == "dashboards":
        return "boards-by-tag"
    if "/api/v1/" in link.url:
        return "api"
    if link.url.startswith("/d/"):
        return "board"
    if link.board == "error-exporter-reports":
        return "sql-field"  # a trace URL from the shared store's rows
    raise AssertionError(f"unknown kind of link {link.name}: {link.url}")


# ---------------------------------------------------------------------------- substitution


def selection(fleet: Fleet, multi: bool) -> dict[str, list[str]]:
    """The job and instance variables: All, or both instances picked one by one."""
    if multi:
        return {"job": [JOB], "instance": list(fleet.instances)}
    return {"job": ["$__all"], "instance": ["$__all"]}


def promql_values(chosen: dict[str, list[str]]) -> dict[str, str]:
    """How Grafana writes the variables into PromQL: All is the allValue .*; several values
    the regex alternation."""
    out = {}
    for name, values in chosen.items():
        if values == ["$__all"]:
            out[name] = ".*"
        else:
            out[name] = "(" + "|".join(re.escape(v) for v in values).replace("\\", "\\\\") + ")"
    return out


def clicked_series(
    fleet: Fleet, panel: dict[str, Any], chosen: dict[str, list[str]]
) -> list[dict[str, str]]:
    """The labels of every series or row the panel draws: what a click hands its links."""
    values = {**promql_values(chosen), "component": ".*", "plugin": ".*"}
    found: list[dict[str, str]] = []
    for target in panel.get("targets", []):
        expr = substitute_macros(
            target["expr"], scrape_interval=SCRAPE_SECONDS, interval=SCRAPE_SECONDS
        )
        found += [s["metric"] for s in query(fleet.prom.url, substitute_variables(expr, values))]
    assert found, f"{panel['title']}: no series to click"
    return found


def render(url: str, fields: dict[str, str], chosen: dict[str, list[str]], api_base: str) -> str:
    """The URL Grafana builds for a click (data link interpolation: raw values)."""
    url = url.replace("${__url_time_range}", urllib.parse.urlencode(RANGE))
    for name, values in chosen.items():
        params = "&".join(f"var-{name}={urllib.parse.quote(v, safe='$')}" for v in values)
        url = url.replace(f"${{{name}:queryparam}}", params)
    url = FIELD.sub(lambda m: fields.get(m.group(1), ""), url)
    url = url.replace("${api_base}", api_base)
    assert "${" not in url and "$instance" not in url, url
    return url


# ---------------------------------------------------------------------------- the checks


def check_api_answer(url: str, body: bytes, fields: dict[str, str]) -> None:
    """The JSON API answered what the link promises for the clicked series or row."""
    parsed = urllib.parse.urlsplit(url)
    params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    path = parsed.path[parsed.path.index("/api/v1/") :]
    data = json.loads(body)
    if path == "/api/v1/errors":
        assert data["errors"], url
    elif path == "/api/v1/statistics":
        assert data["total_errors"] > 0, url
    elif path == "/api/v1/patterns":
        assert "patterns" in data, url
    elif path == "/api/v1/export":
        records = data["all_records"]
        assert records, f"{url}: nothing exported for the clicked series"
        for record in records:
            for name in ("component", "error_type"):
                if name in params:
                    assert (record.get(name) or "") == params[name], (url, record)
            if "plugin" in params:
                assert (record.get("plugin_id") or "") == params["plugin"], (url, record)
    elif path.startswith("/api/v1/plugins/") and path.endswith("/health"):
        assert data["plugin_id"] == fields["plugin"], (url, data)
    elif path.startswith("/api/v1/errors/"):
        assert data["group"]["error_id"] == path.rsplit("/", 1)[1], (url, data)
    else:
        raise AssertionError(f"no expectation for {url}")


def open_api_link(
    fleet: Fleet, url_template: str, fields: dict[str, str], chosen: dict[str, list[str]]
) -> None:
    """Directly (the token as a header: what the proxy adds) and through the proxy."""
    assert fields.get("instance") in fleet.instances, (url_template, fields)
    direct = render(url_template, fields, chosen, "http://")
    assert direct.startswith(f"http://{fields['instance']}/api/v1/"), direct
    status, body = get(direct, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, (direct, status, body[:300])
    check_api_answer(direct, body, fields)
    assert get(direct)[0] == 401, f"{direct} answers without the token"
    if fleet.proxy_base is not None:
        proxied = render(url_template, fields, chosen, fleet.proxy_base)
        assert proxied == fleet.proxy_base + direct[len("http://") :]
        status, body = get(proxied, {"Cookie": SESSION})
        assert status == 200, (proxied, status, body[:300])
        check_api_answer(proxied, body, fields)


def variable_offers(
    fleet: Fleet, board: dict[str, Any], name: str, value: str, chosen: dict[str, list[str]]
) -> bool:
    variable = variables(board)[name]
    if value == "$__all":
        return bool(variable.get("includeAll"))
    if variable["type"] != "query" or variable.get("datasource", {}).get("type") != "prometheus":
        return True  # a text box, or the shared store's SQL (tests/test_reports_dashboard.py)
    match = LABEL_VALUES.match(substitute_variables(variable["query"], promql_values(chosen)))
    assert match, variable["query"]
    if value in label_values(fleet.prom.url, match["label"], match["selector"]):
        return True
    # a value the list does not offer (a regex, the empty value's "(none)?") must still select
    # what the variable lists from: the board's queries read it as label=~"value"
    selector = match["selector"].rstrip("}") + f', {match["label"]}=~"{value}"}}'
    return bool(query(fleet.prom.url, selector))


def open_board_link(fleet: Fleet, url: str, chosen: dict[str, list[str]]) -> None:
    parsed = urllib.parse.urlsplit(url)
    match = re.fullmatch(r"/d/([\w-]+)(?:/[\w-]+)?", parsed.path)
    assert match and match.group(1) in BOARDS, url
    board = BOARDS[match.group(1)]
    known = variables(board)
    for key, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
        if key in RANGE:
            continue
        assert key.startswith("var-"), (url, key)
        name = key[len("var-") :]
        assert name in known, f"{url}: {name} is no variable of {match.group(1)}"
        assert variable_offers(fleet, board, name, value, chosen), (
            f"{url}: {name}={value!r} selects nothing on {match.group(1)}"
        )


def sql_columns(panel: dict[str, Any]) -> str:
    return " ".join(t.get("rawSql", "") for t in panel.get("targets", []))


@pytest.mark.parametrize("multi", [False, True], ids=["instance=All", "instance=both"])
def test_every_link_resolves_on_two_instances(fleet: Fleet, multi: bool) -> None:
    chosen = selection(fleet, multi)
    opened = {"api": 0, "board": 0}
    for link in ALL_LINKS:
        kind = classify(link)
        if kind == "boards-by-tag":
            assert any(set(link.link["tags"]) <= set(b["tags"]) for b in BOARDS.values())
            continue
        if kind == "sql-field" or (kind == "board" and link.board == "error-exporter-reports"):
            # The Reports board's links read its SQL rows: each field is a column of the
            # panel's query, each variable one of the board's.
            assert link.panel is not None
            for field in FIELD.findall(link.url):
                assert f" AS {field}" in sql_columns(link.panel) or f"g.{field}" in sql_columns(
                    link.panel
                ), (link.name, field)
            if kind == "board":
                url = substitute_variables(link.url, REPORTS_VALUES)
                open_board_link(
                    fleet, render(url, {"error_id": "0123456789abcdef"}, chosen, ""), chosen
                )
                opened["board"] += 1
            continue
        if link.panel is None or not FIELD.search(link.url):
            url = render(link.url, {}, chosen, "http://")
            assert kind == "board", link.name  # no dashboard link to an instance's API
            open_board_link(fleet, url, chosen)
            opened["board"] += 1
            continue
        for fields in clicked_series(fleet, link.panel, chosen):
            if kind == "api":
                open_api_link(fleet, link.url, fields, chosen)
            else:
                open_board_link(fleet, render(link.url, fields, chosen, ""), chosen)
            opened[kind] += 1
    assert opened["api"] >= 10 and opened["board"] >= 5, opened


def test_exemplar_links_open_the_error_group(fleet: Fleet) -> None:
    """The provisioned exemplar destinations, with an exemplar's error_id from each instance:
    the Reports board by error id, and the group in the JSON API at ERROR_GROUP_API_URL
    (the instance directly, or through the proxy)."""
    provisioning = yaml.safe_load(
        (DASHBOARD_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    [source] = provisioning["datasources"]
    error_id_links = [
        d["url"]
        for d in source["jsonData"]["exemplarTraceIdDestinations"]
        if d["name"] == "error_id"
    ]
    assert len(error_id_links) == 2
    now = time.time()
    series = exemplars(fleet.prom.url, f'app_errors_total{{job="{JOB}"}}', now - 300, now + 5)
    newest: dict[str, str] = {}
    for entry in series:
        for exemplar in entry["exemplars"]:
            newest[entry["seriesLabels"]["instance"]] = exemplar["labels"]["error_id"]
    assert set(newest) == set(fleet.instances), newest
    for instance, error_id in newest.items():
        bases = {"direct": f"http://{instance}"}
        if fleet.proxy_base is not None:
            bases["proxy"] = fleet.proxy_base + instance
        for way, base in bases.items():
            for template in error_id_links:
                # Grafana's provisioning: $$ is a literal $, ${NAME} the environment's
                url = template.replace("${ERROR_GROUP_API_URL}", base).replace(
                    "$${__value.raw}", error_id
                )
                assert "$" not in url, url
                if url.startswith("/d/"):
                    open_board_link(fleet, url, selection(fleet, False))
                    continue
                headers = (
                    {"Authorization": f"Bearer {TOKEN}"} if way == "direct" else {"Cookie": SESSION}
                )
                status, body = get(url, headers)
                assert status == 200, (url, status, body[:300])
                check_api_answer(url, body, {"instance": instance})


def test_the_proxy_keeps_the_token_and_the_api_to_itself(fleet: Fleet) -> None:
    """Through the shipped nginx locations: no Grafana session, no answer; only GET; only the
    allowed instances; only /api/v1/; and the token is in no URL nginx logged."""
    if fleet.proxy_base is None:
        require_tool("nginx")  # skips here, fails in CI
    assert fleet.proxy_base is not None and fleet.access_log is not None
    instance = fleet.instances[0]
    url = f"{fleet.proxy_base}{instance}/api/v1/statistics"
    assert get(url, {"Cookie": SESSION})[0] == 200
    assert get(url)[0] == 401  # not signed in to Grafana
    assert get(url, {"Cookie": "grafana_session=forged"})[0] == 401
    resolve = f"{fleet.proxy_base}{instance}/api/v1/errors/0123456789abcdef/resolve"
    assert get(resolve, {"Cookie": SESSION}, method="POST")[0] == 403  # the links only read
    other = f"{fleet.proxy_base}127.0.0.1:{free_port()}/api/v1/statistics"
    assert get(other, {"Cookie": SESSION})[0] == 403  # not an allowed instance
    assert get(f"{fleet.proxy_base}{instance}/metrics", {"Cookie": SESSION})[0] == 404
    assert get(f"{fleet.proxy_base}{instance}/healthz", {"Cookie": SESSION})[0] == 404
    escape = f"{fleet.proxy_base}{instance}/api/v1/../../metrics"  # nginx normalises it first
    assert get(escape, {"Cookie": SESSION})[0] == 404
    logged = fleet.access_log.read_text()
    assert "/api/v1/statistics" in logged and TOKEN not in logged
