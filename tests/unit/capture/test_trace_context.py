"""Trace correlation: each occurrence carries the trace it happened in, and the exemplar of
``app_errors_total`` carries the latest one's ``trace_id`` next to its ``error_id``.

With the real OpenTelemetry SDK (a tracer provider and an in-memory span exporter), with a raw
W3C ``traceparent`` through the WSGI and ASGI middlewares, without OpenTelemetry at all (a
subprocess that blocks its import), in multiprocess mode, and scraped by a real Prometheus
whose ``/api/v1/query_exemplars`` must return the span's trace id.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from starlette.testclient import TestClient
from support.monitoring import internal_errors
from support.promstack import PromStack, query, wait_until
from werkzeug.test import Client

from exporter import ErrorMonitor, wsgi_app
from exporter.capture.trace_context import (
    current_trace_ids,
    hex_ids,
    otel_lookup,
    parse_traceparent,
)
from exporter.config import ConfigError, load_config
from exporter.integrations.asgi import AsgiMiddleware
from exporter.integrations.scope import WorkScope
from exporter.integrations.wsgi import WsgiMiddleware
from exporter.metrics.capture_path import MAX_EXEMPLAR_LABEL_CHARS, exemplar_labels

REPO = Path(__file__).resolve().parents[3]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
TOKEN = "prometheus-scrape-token"


# -- helpers -----------------------------------------------------------------------------------
@pytest.fixture
def spans() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    """A real SDK tracer whose finished spans land in memory (no global provider set)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests.trace_context"), exporter
    provider.shutdown()


def span_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def record(monitor: ErrorMonitor, exc: BaseException, **kwargs: Any) -> str:
    try:
        raise exc
    except BaseException as caught:
        error_id = monitor.record_error(caught, **kwargs)
    assert error_id is not None
    return error_id


def everything(monitor: ErrorMonitor, error_id: str) -> dict[str, dict[str, Any]]:
    """The occurrence as the report, the record, the export and the API each show it."""
    assert monitor.flush(10)
    group = monitor.get_group(error_id)
    assert group is not None
    export = monitor.export_data()
    client = Client(wsgi_app(monitor))
    api_detail = json.loads(client.get(f"/api/v1/errors/{error_id}").get_data(as_text=True))
    api_export = json.loads(client.get("/api/v1/export").get_data(as_text=True))
    return {
        "report": group["report"],
        "record": group["occurrences"][-1],
        "export": [r for r in export["all_records"] if r["error_id"] == error_id][-1],
        "api report": api_detail["report"],
        "api record": api_detail["occurrences"][-1],
        "api export": [r for r in api_export["all_records"] if r["error_id"] == error_id][-1],
    }


def ids_everywhere(monitor: ErrorMonitor, error_id: str) -> set[tuple[Any, Any]]:
    return {
        (shape["trace_id"], shape["span_id"]) for shape in everything(monitor, error_id).values()
    }


def exemplars(monitor: ErrorMonitor) -> dict[str, dict[str, str]]:
    """error_type -> labels of its app_errors_total exemplar (OpenMetrics scrape)."""
    response = Client(wsgi_app(monitor)).get("/metrics", headers={"Accept": OPENMETRICS})
    assert response.status_code == 200
    return {
        s.labels["error_type"]: dict(s.exemplar.labels)
        for family in parse_openmetrics(response.get_data(as_text=True))
        for s in family.samples
        if s.name == "app_errors_total" and s.exemplar is not None
    }


class InSpan(Exception):
    """Raised inside an OpenTelemetry span."""


class Outside(Exception):
    """Raised with no span and no traceparent."""


# -- the W3C traceparent parser -------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        (TRACEPARENT, (int(TRACE, 16), int(PARENT, 16))),
        (f"  {TRACEPARENT}\t", (int(TRACE, 16), int(PARENT, 16))),  # optional whitespace
        (f"00-{TRACE}-{PARENT}-00", (int(TRACE, 16), int(PARENT, 16))),  # not sampled: still ids
        (f"01-{TRACE}-{PARENT}-01-what-comes-later", (int(TRACE, 16), int(PARENT, 16))),
    ],
)
def test_a_valid_traceparent_gives_its_ids(value: str, expected: tuple[int, int]) -> None:
    assert parse_traceparent(value) == expected
    assert hex_ids(parse_traceparent(value)) == (TRACE, PARENT)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        TRACEPARENT.upper(),
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE}-{PARENT}-01-extra",
        f"00-{TRACE[:-1]}-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-1",
        f"00_{TRACE}_{PARENT}_01",
        f"{TRACEPARENT},{TRACEPARENT}",
        "0" * 10000,
        12345,
    ],
)
def test_an_invalid_traceparent_is_ignored(value: Any) -> None:
    assert parse_traceparent(value) is None


# -- the real OpenTelemetry SDK --------------------------------------------------------------
def test_an_error_inside_a_span_carries_its_ids_everywhere(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    tracer, finished = spans
    monitor = make_monitor()
    assert otel_lookup() is not None  # the SDK is installed here
    with tracer.start_as_current_span("checkout"):
        error_id = record(monitor, InSpan("card declined"), component="api")
    [span] = finished.get_finished_spans()
    assert ids_everywhere(monitor, error_id) == {span_ids(span)}
    assert re.fullmatch(r"[0-9a-f]{32}", span_ids(span)[0])
    assert exemplars(monitor)["InSpan"] == {"error_id": error_id, "trace_id": span_ids(span)[0]}


def test_the_innermost_span_is_the_one_recorded(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    tracer, finished = spans
    monitor = make_monitor()
    with tracer.start_as_current_span("request"), tracer.start_as_current_span("db query"):
        error_id = record(monitor, InSpan("deadlock"))
    by_name = {span.name: span for span in finished.get_finished_spans()}
    assert ids_everywhere(monitor, error_id) == {span_ids(by_name["db query"])}
    assert span_ids(by_name["db query"])[0] == span_ids(by_name["request"])[0]


def test_outside_a_span_the_ids_are_null(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    monitor = make_monitor()
    error_id = record(monitor, Outside("no trace"))
    assert ids_everywhere(monitor, error_id) == {(None, None)}
    shapes = everything(monitor, error_id)
    assert all(shape["trace_url"] is None for shape in shapes.values())
    assert exemplars(monitor)["Outside"] == {"error_id": error_id}


def test_the_option_off_records_no_trace(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    tracer, _ = spans
    monitor = make_monitor(capture_trace_context=False)
    with tracer.start_as_current_span("checkout"):
        error_id = record(monitor, InSpan("card declined"))
    assert ids_everywhere(monitor, error_id) == {(None, None)}
    assert exemplars(monitor)["InSpan"] == {"error_id": error_id}


def test_the_exemplar_follows_the_latest_error_of_its_series(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    tracer, finished = spans
    monitor = make_monitor()
    first_id = ""
    for name in ("first", "second"):
        with tracer.start_as_current_span(name):
            first_id = record(monitor, InSpan("again"))
        latest = exemplars(monitor)["InSpan"]  # scraped after each
        assert latest["trace_id"] == span_ids(finished.get_finished_spans()[-1])[0]
    record(monitor, InSpan("again"))  # same group, no trace: the exemplar drops the trace id
    assert exemplars(monitor)["InSpan"] == {"error_id": first_id}


def test_the_trace_url_template_links_the_report_to_the_trace(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    tracer, finished = spans
    monitor = make_monitor(
        trace_url_template="http://grafana:3000/explore?traceId={trace_id}&spanId={span_id}"
    )
    with tracer.start_as_current_span("checkout"):
        error_id = record(monitor, InSpan("card declined"))
    trace_id, span_id = span_ids(finished.get_finished_spans()[0])
    urls = {shape["trace_url"] for shape in everything(monitor, error_id).values()}
    assert urls == {f"http://grafana:3000/explore?traceId={trace_id}&spanId={span_id}"}


def test_callbacks_and_the_file_export_carry_the_ids(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter], tmp_path: Path
) -> None:
    tracer, finished = spans
    monitor = make_monitor()
    seen: list[Any] = []
    monitor.register_error_callback(seen.append)
    with tracer.start_as_current_span("job"):
        record(monitor, InSpan("job failed"))
    assert monitor.flush(10)
    trace_id, span_id = span_ids(finished.get_finished_spans()[0])
    wait_until(lambda: seen, timeout=10, what="the error callback")
    assert (seen[0].trace_id, seen[0].span_id) == (trace_id, span_id)
    path = monitor.export_to_file(tmp_path / "errors.json")
    [stored] = json.loads(path.read_text())["all_records"]
    assert (stored["trace_id"], stored["span_id"]) == (trace_id, span_id)


def test_configuration_of_the_options() -> None:
    assert load_config(environ={}).capture_trace_context is True
    off = load_config(environ={"ERROR_EXPORTER_CAPTURE_TRACE_CONTEXT": "false"})
    assert off.capture_trace_context is False
    template = "https://tempo.example/trace/{trace_id}"
    assert (
        load_config(environ={"ERROR_EXPORTER_TRACE_URL_TEMPLATE": template}).trace_url_template
        == template
    )
    with pytest.raises(ConfigError, match="trace_url_template: must be null or a URL"):
        load_config(trace_url_template="https://tempo.example/trace/")
    with pytest.raises(ConfigError, match="capture_trace_context: must be true or false"):
        load_config(capture_trace_context="yes please")


# -- a raw traceparent through the middlewares ----------------------------------------------
def failing_wsgi_app(monitor: ErrorMonitor) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/handled":
            record(monitor, LookupError("handled in the view"), component="view")
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        raise RuntimeError("the view failed")

    return WsgiMiddleware(app, monitor)


def test_wsgi_traceparent_is_the_trace_of_the_request(make_monitor: Any) -> None:
    monitor = make_monitor()
    client = Client(failing_wsgi_app(monitor))
    with pytest.raises(RuntimeError):
        client.get("/orders", headers={"traceparent": TRACEPARENT})
    assert client.get("/handled", headers={"Traceparent": TRACEPARENT}).status_code == 200
    assert monitor.flush(10)
    ids = {g["error_type"]: g["error_id"] for g in monitor.list_groups()}
    assert ids_everywhere(monitor, ids["RuntimeError"]) == {(TRACE, PARENT)}
    assert ids_everywhere(monitor, ids["LookupError"]) == {(TRACE, PARENT)}
    assert exemplars(monitor)["RuntimeError"]["trace_id"] == TRACE
    assert current_trace_ids() is None  # the request's trace ended with the request


@pytest.mark.parametrize(
    "header",
    [
        TRACEPARENT.upper(),
        f"00-{'0' * 32}-{PARENT}-01",
        f"ff-{TRACE}-{PARENT}-01",
        "nonsense",
    ],
)
def test_wsgi_invalid_traceparent_is_ignored(make_monitor: Any, header: str) -> None:
    monitor = make_monitor()
    with pytest.raises(RuntimeError):
        Client(failing_wsgi_app(monitor)).get("/orders", headers={"traceparent": header})
    assert monitor.flush(10)
    [group] = monitor.list_groups()
    assert ids_everywhere(monitor, group["error_id"]) == {(None, None)}
    assert internal_errors(monitor) == 0


def test_wsgi_traceparent_is_ignored_with_the_option_off(make_monitor: Any) -> None:
    monitor = make_monitor(capture_trace_context=False)
    with pytest.raises(RuntimeError):
        Client(failing_wsgi_app(monitor)).get("/orders", headers={"traceparent": TRACEPARENT})
    assert monitor.flush(10)
    [group] = monitor.list_groups()
    assert ids_everywhere(monitor, group["error_id"]) == {(None, None)}


def test_an_opentelemetry_span_wins_over_the_traceparent(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    """An instrumented app has the server span current: its ids, not the caller's."""
    tracer, finished = spans
    monitor = make_monitor()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with tracer.start_as_current_span("server span"):
            raise RuntimeError("inside the server span")

    with pytest.raises(RuntimeError):
        Client(WsgiMiddleware(app, monitor)).get("/", headers={"traceparent": TRACEPARENT})
    assert monitor.flush(10)
    [group] = monitor.list_groups()
    # recorded by the middleware after the span ended: the request's traceparent
    assert ids_everywhere(monitor, group["error_id"]) == {(TRACE, PARENT)}

    def recording_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with tracer.start_as_current_span("server span"):
            record(monitor, InSpan("handled inside the span"))
        start_response("200 OK", [])
        return [b"ok"]

    Client(WsgiMiddleware(recording_app, monitor)).get("/", headers={"traceparent": TRACEPARENT})
    assert monitor.flush(10)
    [in_span] = [g for g in monitor.list_groups() if g["error_type"] == "InSpan"]
    assert ids_everywhere(monitor, in_span["error_id"]) == {
        span_ids(finished.get_finished_spans()[-1])
    }


def test_asgi_traceparent_is_the_trace_of_the_request(make_monitor: Any) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    monitor = make_monitor()

    async def failing(request: Any) -> Any:
        raise ValueError("async view failed")

    def sync_handled(request: Any) -> Any:  # runs in a worker thread: the trace follows it
        record(monitor, LookupError("handled in a thread"))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/fail", failing), Route("/sync", sync_handled)])
    app.add_middleware(AsgiMiddleware, monitor=monitor)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/fail", headers={"traceparent": TRACEPARENT}).status_code == 500
    assert client.get("/sync", headers={"traceparent": TRACEPARENT}).status_code == 200
    assert client.get("/fail", headers={"traceparent": "00-bad"}).status_code == 500
    assert monitor.flush(10)
    ids = {g["error_type"]: g["error_id"] for g in monitor.list_groups()}
    shapes = everything(monitor, ids["ValueError"])
    # the group's latest report is the request with the invalid header; the first record had it
    assert (shapes["report"]["trace_id"], shapes["report"]["span_id"]) == (None, None)
    detail = monitor.get_group(ids["ValueError"])
    assert detail is not None
    assert [(r["trace_id"], r["span_id"]) for r in detail["occurrences"]] == [
        (TRACE, PARENT),
        (None, None),
    ]
    assert ids_everywhere(monitor, ids["LookupError"]) == {(TRACE, PARENT)}


def test_a_task_scope_takes_a_traceparent(make_monitor: Any) -> None:
    monitor = make_monitor()
    with (
        pytest.raises(ValueError),
        WorkScope(monitor, component="worker", operation="task resize", traceparent=TRACEPARENT),
    ):
        raise ValueError("image too large")
    assert monitor.flush(10)
    [group] = monitor.list_groups()
    assert ids_everywhere(monitor, group["error_id"]) == {(TRACE, PARENT)}


# -- exemplar labels within the OpenMetrics limit ----------------------------------------
def test_exemplar_labels_stay_within_128_characters() -> None:
    def size(labels: dict[str, str]) -> int:
        return sum(len(k) + len(v) for k, v in labels.items())

    assert exemplar_labels("0123456789abcdef", TRACE) == {
        "error_id": "0123456789abcdef",
        "trace_id": TRACE,
    }
    assert size(exemplar_labels("0123456789abcdef", TRACE)) <= MAX_EXEMPLAR_LABEL_CHARS
    long_id = "x" * 90  # a trace id would not fit next to it: the error id stays, alone
    assert exemplar_labels(long_id, TRACE) == {"error_id": long_id}
    huge = exemplar_labels("y" * 500, TRACE)
    assert list(huge) == ["error_id"] and size(huge) == MAX_EXEMPLAR_LABEL_CHARS
    assert exemplar_labels("0123456789abcdef", None) == {"error_id": "0123456789abcdef"}


def test_the_exposed_exemplar_is_valid_openmetrics(
    make_monitor: Any, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    tracer, _ = spans
    monitor = make_monitor()
    with tracer.start_as_current_span("checkout"):
        record(monitor, InSpan("x"))
    text = (
        Client(wsgi_app(monitor))
        .get("/metrics", headers={"Accept": OPENMETRICS})
        .get_data(as_text=True)
    )
    [line] = [
        line
        for line in text.splitlines()
        if line.startswith("app_errors_total{") and "InSpan" in line
    ]
    labels = re.search(r" # \{(.*?)\}", line)
    assert labels is not None
    pairs = re.findall(r'(\w+)="([^"]*)"', labels.group(1))
    assert [k for k, _ in pairs] == ["error_id", "trace_id"]
    assert sum(len(k) + len(v) for k, v in pairs) <= MAX_EXEMPLAR_LABEL_CHARS


# -- without OpenTelemetry -------------------------------------------------------------------
NO_OTEL = r"""
import json, sys
sys.modules["opentelemetry"] = None  # as if not installed: every import of it fails
from werkzeug.test import Client
from exporter import ErrorMonitor
from exporter.integrations.wsgi import WsgiMiddleware
from exporter.capture.trace_context import otel_lookup

m = ErrorMonitor(capture_sys_excepthook=False, capture_threading=False, capture_logging=False,
                 capture_asyncio=False, enable_resource_monitoring=False).start()

def app(environ, start_response):
    raise RuntimeError("failed")

try:
    raise KeyError("outside")
except KeyError as exc:
    plain = m.record_error(exc)
try:
    Client(WsgiMiddleware(app, m)).get("/", headers={"traceparent": sys.argv[1]})
except RuntimeError:
    pass
assert m.flush(10)
out = {"otel": otel_lookup() is not None,
       "loaded": sorted(n for n in sys.modules if n.startswith("opentelemetry") and
                        sys.modules[n] is not None)}
for group in m.list_groups():
    detail = m.get_group(group["error_id"])
    out[group["error_type"]] = [detail["report"]["trace_id"], detail["report"]["span_id"],
                                detail["occurrences"][0]["trace_id"]]
out["internal_errors"] = m.metrics.families().internal_errors._value.get()
m.stop()
print(json.dumps(out))
"""


def test_without_opentelemetry_the_traceparent_still_works_and_nothing_breaks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_OTEL, TRACEPARENT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "otel": False,
        "loaded": [],
        "KeyError": [None, None, None],
        "RuntimeError": [TRACE, PARENT, TRACE],
        "internal_errors": 0,
    }


# -- multiprocess mode ------------------------------------------------------------------------
MULTIPROCESS = r"""
import json, sys
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.openmetrics.exposition import generate_latest
from exporter import ErrorMonitor

tracer = TracerProvider().get_tracer("multiprocess")
m = ErrorMonitor(capture_sys_excepthook=False, capture_threading=False, capture_logging=False,
                 capture_asyncio=False, enable_resource_monitoring=False).start()
assert m.shared is not None
with tracer.start_as_current_span("job") as span:
    try:
        raise ValueError("shared")
    except ValueError as exc:
        error_id = m.record_error(exc)
    trace_id = format(span.get_span_context().trace_id, "032x")
m.stop()
detail = m.get_group(error_id)
out = {"error_id": error_id, "trace_id": trace_id,
       "report": detail["report"]["trace_id"],
       "records": [r["trace_id"] for r in m.export_data()["all_records"]],
       "metrics": generate_latest(m.registry).decode()}
print(json.dumps(out))
"""


def test_multiprocess_mode_keeps_the_ids_and_the_exemplar_trace(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ERROR_EXPORTER_", "PROMETHEUS_"))
    }
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["report"] == out["trace_id"] and out["records"] == [out["trace_id"]]
    [line] = [
        line
        for line in out["metrics"].splitlines()
        if line.startswith("app_errors_total{") and "ValueError" in line
    ]
    assert f'error_id="{out["error_id"]}",trace_id="{out["trace_id"]}"' in line


# -- Grafana provisioning --------------------------------------------------------------------
def grafana_interpolate(value: str, environ: dict[str, str]) -> str:
    """What Grafana does to each string of a provisioning file: split on ``$$`` (a literal
    ``$``), expand ``$NAME`` / ``${NAME}`` from the environment (Go's os.ExpandEnv: unset is
    empty), join with ``$``."""

    def expand(part: str) -> str:
        return re.sub(
            r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)",
            lambda m: environ.get(m.group(1) or m.group(2), ""),
            part,
        )

    return "$".join(expand(part) for part in value.split("$$"))


def test_grafana_links_exemplars_to_the_trace_datasource() -> None:
    source_file = REPO / "dashboards" / "provisioning" / "datasources" / "prometheus.yml"
    [source] = yaml.safe_load(source_file.read_text())["datasources"]
    destinations = {d["name"]: d for d in source["jsonData"]["exemplarTraceIdDestinations"]}
    environ = {"TRACE_DATASOURCE_UID": "tempo"}
    trace = {k: grafana_interpolate(v, environ) for k, v in destinations["trace_id"].items()}
    assert trace["datasourceUid"] == "tempo" and "url" not in trace
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grafana_env = compose["services"]["grafana"]["environment"]
    assert grafana_env["TRACE_DATASOURCE_UID"] == "${TRACE_DATASOURCE_UID:-tempo}"
    # The exemplar's JSON link: its host is the deployment's (ERROR_GROUP_API_URL), never
    # written in the file; docker-compose's default is the demo's published TLS port.
    assert "localhost" not in source_file.read_text().split("exemplarTraceIdDestinations")[1]
    assert grafana_env["ERROR_GROUP_API_URL"] == "${ERROR_GROUP_API_URL:-https://localhost:9718}"
    compose_default = grafana_env["ERROR_GROUP_API_URL"].split(":-", 1)[1].rstrip("}")
    [reports_link, json_link] = [
        grafana_interpolate(d["url"], {"ERROR_GROUP_API_URL": compose_default})
        for d in source["jsonData"]["exemplarTraceIdDestinations"]
        if d["name"] == "error_id"
    ]
    assert reports_link == "/d/error-exporter-reports/reports?var-error_id=${__value.raw}"
    assert json_link == "https://localhost:9718/api/v1/errors/${__value.raw}"
    behind_proxy = {"ERROR_GROUP_API_URL": "https://grafana.example/error-exporter/app-1:9718"}
    error = {k: grafana_interpolate(v, behind_proxy) for k, v in destinations["error_id"].items()}
    assert error["url"] == (
        "https://grafana.example/error-exporter/app-1:9718/api/v1/errors/${__value.raw}"
    )
    metrics = (REPO / "docs" / "metrics.md").read_text()  # its "Trace correlation"
    for word in ("TRACE_DATASOURCE_UID", "exemplarTraceIdDestinations", "ERROR_GROUP_API_URL"):
        assert word in metrics, word


# -- a real Prometheus ----------------------------------------------------------------------
@pytest.fixture
def stack(tmp_path: Path) -> Iterator[PromStack]:
    """Prometheus processes of this test, stopped by PID at teardown."""
    with PromStack(tmp_path) as started:
        yield started


class Traced(Exception):
    """Raised inside a span once Prometheus is scraping."""


@pytest.mark.tools
def test_prometheus_query_exemplars_returns_the_trace_id(
    make_monitor: Any, stack: PromStack, spans: tuple[Tracer, InMemorySpanExporter]
) -> None:
    from support.exemplars import newest_exemplar, query_exemplars

    tracer, finished = spans
    monitor = make_monitor(serve=True, port=0, api_token=TOKEN, protect_metrics=True)
    started = time.time()  # an exemplar carries its occurrence's time, not the scrape's
    record(monitor, Outside("before the first scrape"))
    prom = stack.prometheus(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "app",
                    "authorization": {"type": "Bearer", "credentials": TOKEN},
                    "static_configs": [{"targets": [f"127.0.0.1:{monitor.server.port}"]}],
                }
            ],
        },
        exemplars=True,
    )
    wait_until(
        lambda: query(prom.url, 'up{job="app"} == 1'),
        timeout=60,
        what="a successful scrape of the exporter (with the bearer token)",
    )

    with tracer.start_as_current_span("checkout"):
        error_id = record(
            monitor, Traced("after the first scrape"), component="api", severity="critical"
        )
    trace_id, _ = span_ids(finished.get_finished_spans()[0])
    outside_id = record(monitor, Outside("after the first scrape"))  # no span, no trace

    def newest_has_the_trace() -> bool:
        series = query_exemplars(
            prom.url, 'app_errors_total{error_type="Traced"}', started, time.time() + 5
        )
        newest = newest_exemplar(series)
        return newest is not None and newest["labels"] == {
            "error_id": error_id,
            "trace_id": trace_id,
        }

    def newest_outside() -> bool:
        series = query_exemplars(
            prom.url, 'app_errors_total{error_type="Outside"}', started, time.time() + 5
        )
        newest = newest_exemplar(series)
        return newest is not None and newest["labels"]["error_id"] == outside_id

    wait_until(newest_has_the_trace, timeout=30, what=f"exemplar trace_id={trace_id}")
    wait_until(newest_outside, timeout=30, what="the untraced error's exemplar")
    series = query_exemplars(prom.url, "app_errors_total", started, time.time() + 5)
    by_type = {s["seriesLabels"]["error_type"]: s["exemplars"] for s in series}
    assert [e["labels"] for e in by_type["Traced"]] == [
        {"error_id": error_id, "trace_id": trace_id}
    ]
    assert all("trace_id" not in e["labels"] for e in by_type["Outside"])
