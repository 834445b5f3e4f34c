"""Hostile and odd input: whatever the app throws at the monitor is recorded and stays readable.

Property tests (hypothesis) build exceptions whose ``__str__``/``__repr__`` raise or return
non-strings, huge, binary, surrogate and NUL messages, deep and cyclic cause chains, nested
ExceptionGroups, exceptions that were never raised, frames from ``exec``'d code with no file,
and context / metadata with non-JSON values, cycles, deep nesting and keys that are not strings.
Each one must be recorded (counted exactly, its group stored), the export must stay strict JSON
(no NaN, no lone surrogate) and ``/metrics`` must stay parseable, with ``promtool check metrics``
clean for label values holding quotes, backslashes and newlines.

The HTTP part sends raw malformed requests to the live server: every one is answered with a 4xx
JSON body or the connection is closed, never a 500, and the server keeps serving afterwards.
Examples are bounded so the whole file runs well under a minute.
"""

from __future__ import annotations

import builtins
import datetime as dt
import decimal
import json
import math
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families
from support.monitoring import errors_total, internal_errors
from support.tools import require_tool

from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
from exporter.metrics.capture_path import MAX_LABEL_LENGTH
from exporter.scrub import fix_surrogates

QUIET = HOOKS_OFF
SMALL_BUFFERS = {
    "max_records": 25,
    "error_buffer_size": 50,
    "occurrences_per_group": 3,
    "pattern_threshold": 1000,
}
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],  # one monitor on purpose
)


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def quiet_monitor() -> Iterator[ErrorMonitor]:
    """One monitor for all examples of a property test (a fixture per example is too slow)."""
    monitor = ErrorMonitor(**{**QUIET, **SMALL_BUFFERS})
    monitor.start()
    yield monitor
    monitor.stop(timeout=2.0)


def strict_json(data: Any) -> Any:
    """Strict JSON round trip: no NaN/Infinity, encodable as UTF-8 (no lone surrogates)."""
    text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # raises on a lone surrogate
    return json.loads(text)


def assert_recorded(monitor: ErrorMonitor, error_id: str | None, before: int) -> dict[str, Any]:
    """Counted exactly once, stored, and every read path still produces strict JSON."""
    assert isinstance(error_id, str) and error_id
    assert monitor.flush(timeout=10.0)
    assert errors_total(monitor) == before + 1
    group = monitor.get_group(error_id)
    assert group is not None, "the error's group is missing from the store"
    strict_json(group)
    exported = strict_json(monitor.export_data())
    assert any(r["error_id"] == error_id for r in exported["all_records"])
    strict_json(monitor.list_groups())
    return group


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


# -- strategies --------------------------------------------------------------------------------

EXCEPTION_GROUP: Any = getattr(builtins, "ExceptionGroup", None)  # Python 3.11+
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
ODD_CHAR = st.one_of(
    st.characters(), SURROGATE, st.sampled_from(["\x00", "\\", '"', "\n", "\r", "\u2028", "\ufeff"])
)
ODD_TEXT = st.text(alphabet=ODD_CHAR, max_size=40)
HUGE_TEXT = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["A", "\x00", "\ud83d", "é", '\\"\n', "🙂", "password=x "]),
    st.integers(min_value=10_000, max_value=300_000),
)
MESSAGE = st.one_of(ODD_TEXT, HUGE_TEXT, st.binary(max_size=300), st.integers(), st.none())


class BadRepr:
    """A value whose repr and str fail in different ways."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __repr__(self) -> str:
        if self.how == "raise":
            raise RuntimeError("repr exploded")
        if self.how == "nonstr":
            return 42  # type: ignore[return-value]
        if self.how == "huge":
            return "R" * 100_000
        return "\ud800bad\x00repr"

    __str__ = __repr__


class Unhashable:
    __hash__ = None  # type: ignore[assignment]


SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    st.binary(max_size=50),
    st.sampled_from(["raise", "nonstr", "huge", "surrogate"]).map(BadRepr),
    st.just(dt.datetime(2024, 1, 1, 12, 0)),
    st.just(decimal.Decimal("NaN")),
    st.just(complex(1, -1)),
    st.just(object()),
    st.just(Unhashable()),
    st.just(type),
)
KEY = st.one_of(
    ODD_TEXT,
    st.integers(),
    st.none(),
    st.floats(allow_nan=True),
    st.tuples(st.integers(), ODD_TEXT),
    st.frozensets(st.integers(), max_size=3),
    st.binary(max_size=10),
    st.sampled_from(["raise", "nonstr", "surrogate"]).map(BadRepr),
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=6).map(tuple),
        st.frozensets(st.integers() | ODD_TEXT, max_size=5),
        st.sets(st.integers(), max_size=5),
        st.dictionaries(KEY, inner, max_size=6),
    ),
    max_leaves=25,
)


def nest(depth: int) -> dict[str, Any]:
    """A dict ``depth`` levels deep (deeper than any JSON encoder's recursion allows)."""
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        child: dict[str, Any] = {}
        node["deeper"] = child
        node = child
    return root


@st.composite
def hostile_value(draw: st.DrawFn) -> Any:
    """A value from VALUE, sometimes made cyclic or thousands of levels deep."""
    shape = draw(st.sampled_from(["plain", "cycle", "deep", "huge_list", "bad_mapping"]))
    value = draw(VALUE)
    if shape == "cycle":
        box: dict[Any, Any] = {"value": value, 1: [value]}
        box["self"] = box
        box[2].append(box) if isinstance(box.get(2), list) else box[1].append(box)
        return box
    if shape == "deep":
        deep = nest(draw(st.integers(min_value=50, max_value=3000)))
        deep["leaf"] = value
        return deep
    if shape == "huge_list":
        return [value] * draw(st.integers(min_value=100, max_value=20_000))
    if shape == "bad_mapping":
        return BadMapping()
    return value


class BadMapping(dict):  # type: ignore[type-arg]
    """A dict subclass whose items() raises."""

    def items(self):  # type: ignore[override]
        raise RuntimeError("items exploded")


def make_exception_class(str_mode: str, repr_mode: str) -> type[Exception]:
    """An Exception subclass whose __str__/__repr__ misbehave as asked."""

    def misbehave(mode: str, fallback: Any) -> Any:
        def method(self: Exception) -> Any:
            if mode == "raise":
                raise ValueError("__str__ exploded")
            if mode == "nonstr":
                return ["not", "a", "string"]
            if mode == "none":
                return None
            if mode == "huge":
                return "\x00" + "H" * 200_000
            if mode == "surrogate":
                return "bad \udcff surrogate \x00 nul"
            if mode == "recursion":
                return str(self)
            return fallback(self)

        return method

    namespace = {
        "__str__": misbehave(str_mode, Exception.__str__),
        "__repr__": misbehave(repr_mode, Exception.__repr__),
    }
    return type(f"Hostile_{str_mode}_{repr_mode}", (Exception,), namespace)


STR_MODES = ["normal", "raise", "nonstr", "none", "huge", "surrogate", "recursion"]


def exec_raiser(filename: str) -> Any:
    """A function compiled from a string, so its frames have no real file behind them."""
    namespace: dict[str, Any] = {}
    source = "def boom(exc):\n    raise exc\n"
    exec(compile(source, filename, "exec"), namespace)
    return namespace["boom"]


def raise_from_exec(exc: BaseException, filename: str) -> BaseException:
    try:
        exec_raiser(filename)(exc)
    except BaseException as caught:
        return caught
    raise AssertionError("unreachable")


@st.composite
def hostile_exception(draw: st.DrawFn) -> BaseException:
    kind = draw(st.sampled_from(["plain", "misbehaving", "chain", "cycle", "group"]))
    args = tuple(draw(st.lists(MESSAGE, max_size=3)))
    if kind == "misbehaving":
        klass = make_exception_class(
            draw(st.sampled_from(STR_MODES)), draw(st.sampled_from(STR_MODES))
        )
        exc: BaseException = klass(*args)
    elif kind == "chain":
        depth = draw(st.integers(min_value=1, max_value=400))
        exc = ValueError(*args)
        for i in range(depth):
            outer = KeyError(f"level {i}")
            if i % 2:
                outer.__cause__ = exc
            else:
                outer.__context__ = exc
            exc = outer
    elif kind == "cycle":
        first, second = TypeError(*args), OSError("second")
        first.__cause__, second.__cause__ = second, first
        first.__context__ = first
        exc = draw(st.sampled_from([first, second]))
    elif kind == "group" and EXCEPTION_GROUP is not None:
        depth = draw(st.integers(min_value=1, max_value=60))
        width = draw(st.integers(min_value=1, max_value=40))
        group = EXCEPTION_GROUP("leaf", [ValueError(*args)])
        for level in range(depth):
            siblings = [RuntimeError(f"sibling {level}.{n}") for n in range(width - 1)]
            group = EXCEPTION_GROUP(f"level {level}", [group, *siblings])
        exc = group
    else:
        exc = RuntimeError(*args)
    how = draw(
        st.sampled_from(
            ["never_raised", "raised", "exec_empty", "exec_string", "exec_missing_file"]
        )
    )
    if how == "raised":
        return raised(exc)
    if how == "exec_empty":
        return raise_from_exec(exc, "")
    if how == "exec_string":
        return raise_from_exec(exc, "<string>")
    if how == "exec_missing_file":
        return raise_from_exec(exc, "/nonexistent/dir/generated_module.py")
    return exc


# -- property tests: capture and export ----------------------------------------------------------


@PROPERTY
@given(exc=hostile_exception())
def test_any_exception_is_recorded_and_exports_as_json(quiet_monitor, exc):
    before = errors_total(quiet_monitor)
    error_id = quiet_monitor.record_error(exc, component="hostile")
    group = assert_recorded(quiet_monitor, error_id, before)
    report = group["report"]
    assert isinstance(report["stack_trace"], str)
    assert isinstance(report["error_message"], str)
    assert len(report["error_message"]) <= 8192 + 200
    assert len(report["exception_chain"]) <= quiet_monitor.config.max_chain_depth + 1


@PROPERTY
@given(
    context=hostile_value(),
    metadata=hostile_value(),
    crumb=hostile_value(),
    labels=st.tuples(ODD_TEXT, ODD_TEXT, ODD_TEXT, st.none() | ODD_TEXT),
)
def test_any_context_and_metadata_are_recorded_and_export_as_json(
    quiet_monitor, context, metadata, crumb, labels
):
    component, plugin, operation, user_id = labels
    quiet_monitor.add_breadcrumb(component, component=component, data={"value": crumb})
    before = errors_total(quiet_monitor)
    error_id = quiet_monitor.record_error(
        raised(ValueError("with hostile context")),
        context=context,
        metadata=metadata,
        component=component,
        plugin=plugin,
        operation=operation,
        user_id=user_id,
    )
    group = assert_recorded(quiet_monitor, error_id, before)
    report = group["report"]
    assert isinstance(report["context"], dict)
    assert isinstance(report["metadata"], dict)


@PROPERTY
@given(value=st.one_of(MESSAGE, st.sampled_from(["raise", "nonstr"]).map(BadRepr)))
def test_non_exceptions_handed_to_record_error_are_recorded(quiet_monitor, value):
    """record_error(obj) with something that is not an exception still counts one error."""
    before = errors_total(quiet_monitor)
    error_id = quiet_monitor.record_error(value)
    assert_recorded(quiet_monitor, error_id, before)


def test_exception_with_exotic_attributes_is_recorded(monitor):
    """``__slots__`` (no attribute for the de-dup marker), a non-dict ``context`` attribute,
    a ``__traceback__`` of a finished frame, ``__notes__`` that are not strings."""

    class Slotted(Exception):
        __slots__ = ()

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError("read-only exception")

    odd = raised(ValueError("notes"))
    odd.__notes__ = [b"bytes note", 42, "\ud800"]  # type: ignore[list-item]
    with_context = raised(KeyError("ctx"))
    with_context.context = {"k": BadRepr("raise"), ("tuple",): float("nan")}  # type: ignore[attr-defined]
    not_a_dict = raised(LookupError("ctx2"))
    not_a_dict.context = BadMapping()  # type: ignore[attr-defined]
    for exc in (raised(Slotted("slots")), odd, with_context, not_a_dict):
        before = errors_total(monitor)
        assert_recorded(monitor, monitor.record_error(exc), before)


def test_huge_nesting_and_wide_values_stay_bounded(monitor):
    """A context 10,000 levels deep and 100,000 items wide becomes a small, capped report."""
    wide = {f"key{i}": i for i in range(100_000)}
    before = errors_total(monitor)
    error_id = monitor.record_error(
        raised(ValueError("big")),
        context={"deep": nest(10_000), "wide": wide},
        metadata={"blob": b"\xff" * 1_000_000, "text": "x" * 1_000_000},
    )
    group = assert_recorded(monitor, error_id, before)
    encoded = json.dumps(group)
    assert len(encoded) < 500_000, len(encoded)


# -- property tests: metrics ---------------------------------------------------------------------

LABEL_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(
            ['"', "\\", "\n", "\r", "\t", "{", "}", "=", ",", "\x00", "\ud800", "é", "#", " "]
        ),
        st.characters(),
    ),
    max_size=30,
)


@pytest.fixture
def label_monitor() -> Iterator[ErrorMonitor]:
    monitor = ErrorMonitor(**{**QUIET, **SMALL_BUFFERS, "label_value_limit": 10_000})
    monitor.start()
    yield monitor
    monitor.stop(timeout=2.0)


def expected_label(raw: str) -> str:
    return fix_surrogates(raw)[:MAX_LABEL_LENGTH]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    component=LABEL_TEXT,
    plugin=LABEL_TEXT,
    operation=LABEL_TEXT,
    type_name=st.text(alphabet=st.sampled_from('ab"\\\n{}= é'), min_size=1, max_size=10),
)
def test_label_values_are_escaped_in_both_exposition_formats(
    label_monitor, component, plugin, operation, type_name
):
    klass = type(type_name, (Exception,), {})
    label_monitor.record_error(raised(klass("x")), component=component, plugin=plugin)
    label_monitor.observe_operation(component, plugin, operation, False, 0.01)
    label_monitor.record_recovery(True, 0.5, component=component, plugin=plugin)

    text = generate_latest(label_monitor.registry).decode("utf-8")
    errors = {
        (s.labels["error_type"], s.labels["component"], s.labels["plugin"])
        for family in text_string_to_metric_families(text)
        if family.name == "app_errors"
        for s in family.samples
        if s.name == "app_errors_total"
    }
    assert (expected_label(type_name), expected_label(component), expected_label(plugin)) in errors
    operations = {
        s.labels["operation"]
        for family in text_string_to_metric_families(text)
        if family.name == "app_operation_duration_seconds"
        for s in family.samples
    }
    assert expected_label(operation) in operations

    openmetrics = generate_openmetrics(label_monitor.registry).decode("utf-8")
    names = {family.name for family in parse_om(openmetrics)}
    assert "app_errors" in names


def test_promtool_accepts_metrics_with_hostile_label_values(make_monitor):
    """The real ``promtool check metrics`` over one registry holding every nasty label value."""
    promtool = require_tool("promtool")
    monitor = make_monitor(label_value_limit=10_000, pattern_threshold=2)
    nasty = [
        'quote"inside',
        "back\\slash",
        "new\nline",
        "carriage\rreturn",
        "tab\there",
        "nul\x00byte",
        "lone\ud800surrogate",
        "unicode ünï 🙂",
        "{braces}=,",
        "#hash",
        "trailing\\",
        '\\"',
        "\\n literal",
        "x" * 500,
        "",
    ]
    for value in nasty:
        name = f"Odd{nasty.index(value)}_{value[:5]}".replace("\x00", "0").replace("\ud800", "D")
        klass = type(name, (Exception,), {})  # class names cannot hold NUL or surrogates
        for _ in range(3):  # past the pattern threshold: pattern gauges carry the type label
            monitor.record_error(
                raised(klass(value)), component=value, plugin=value, operation=value
            )
        monitor.observe_operation(value, value, value, True, 0.2)
        monitor.record_recovery(False, 1.0, component=value, plugin=value)
    assert monitor.flush(timeout=10.0)
    body = generate_latest(monitor.registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode("utf-8", "replace")
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    components = {s.labels.get("component") for s in families["app_errors"].samples}
    assert {expected_label(v) for v in nasty} <= components
    assert families["app_plugin_health"].samples
    assert families["app_error_pattern_severity"].samples
    print(
        f"\n[hostile] promtool check metrics clean over {len(body)} bytes, "
        f"{len(nasty)} hostile label values"
    )


def test_metrics_survive_a_failing_state_collector(make_monitor, monkeypatch):
    """A label value that is not a str, and a non-finite recovery duration, still expose."""
    monitor = make_monitor()
    monitor.record_error(
        raised(ValueError("x")),
        component=BadRepr("raise"),  # type: ignore[arg-type]
        plugin=b"\xff\xfe",
    )  # type: ignore[arg-type]
    monitor.record_recovery(True, float("nan"), component=["list"])  # type: ignore[arg-type]
    monitor.observe_operation({"a": 1}, None, 3, True, float("inf"))  # type: ignore[arg-type]
    text = generate_latest(monitor.registry).decode("utf-8")
    assert any(f.name == "app_errors" for f in text_string_to_metric_families(text))
    assert errors_total(monitor) == 1
    assert math.isfinite(internal_errors(monitor))


# -- HTTP fuzzing with raw sockets -----------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ErrorMonitor, str, int]]:
    """One live server for the module's HTTP tests: (monitor, host, port)."""
    monitor = ErrorMonitor(**{**QUIET, "serve": True, "port": 0})
    monitor.start()
    yield monitor, monitor.server.host, monitor.server.port
    monitor.stop(timeout=2.0)


def raw_request(host: str, port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the server closes (or the timeout): the raw answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first on garbage; reading tells what it answered
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def parse_answer(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """(status, headers, body) of the first response in ``raw``.

    Status None when the server closed without answering, 0 for an HTTP/0.9 answer (the
    stdlib server answers a request line without a version with a bare body, no headers).
    """
    if not raw:
        return None, {}, b""
    if not raw.startswith(b"HTTP/"):  # an HTTP/0.9 request (no version) gets a bare body
        return 0, {}, raw
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        body = body[: int(length)]
    return int(parts[1]), headers, body


MALFORMED: list[tuple[str, bytes]] = [
    ("bad method", b"BREW /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("POST to api", b"POST /api/v1/errors HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 3\r\n\r\nabc"),
    ("DELETE", b"DELETE /api/v1/export HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("lower-case method", b"get /healthz HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("traversal", b"GET /api/v1/errors/../../etc/passwd HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("encoded traversal", b"GET /api/v1/errors/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n\r\n"),
    ("encoded slash", b"GET /api/v1/errors/..%2f..%2fetc%2fpasswd HTTP/1.1\r\n\r\n"),
    ("plugin traversal", b"GET /api/v1/plugins/../../../etc/passwd/health HTTP/1.1\r\n\r\n"),
    ("bad percent", b"GET /api/v1/errors/%zz%4 HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("invalid utf-8", b"GET /api/v1/errors/%ff%fe HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("raw high bytes", b"GET /api/v1/errors/\xff\xfe HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("nul in path", b"GET /api/v1/errors/a%00b HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
    ("bad query", b"GET /api/v1/export?limit=%zz&since=%ff HTTP/1.1\r\n\r\n"),
    (
        "query nonsense",
        b"GET /api/v1/export?limit=-1&since=yesterday&severity=nope HTTP/1.1\r\n\r\n",
    ),
    ("repeated param", b"GET /api/v1/export?limit=1&limit=2 HTTP/1.1\r\n\r\n"),
    ("huge limit", b"GET /api/v1/errors?limit=99999999999999999999999 HTTP/1.1\r\n\r\n"),
    ("huge header", b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"),
    ("many headers", b"GET /healthz HTTP/1.1\r\n" + b"X-H: v\r\n" * 500 + b"\r\n"),
    ("huge path", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n"),
    ("no version", b"GET /healthz\r\n\r\n"),
    ("bad version", b"GET /healthz HTTP/9.9\r\n\r\n"),
    ("garbage", b"\x00\x01\x02\xff garbage \r\n\r\n"),
    ("only newline", b"\r\n\r\n"),
    ("header without colon", b"GET /healthz HTTP/1.1\r\nnocolon\r\n\r\n"),
    ("absolute uri", b"GET http://evil.example/api/v1/errors HTTP/1.1\r\n\r\n"),
    ("unknown route", b"GET /api/v2/anything HTTP/1.1\r\n\r\n"),
    ("double slash", b"GET //api//v1//errors HTTP/1.1\r\n\r\n"),
    ("bad auth header", b"GET /api/v1/errors HTTP/1.1\r\nAuthorization: \xff\xfe\x00\r\n\r\n"),
    ("bad content-length", b"GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
    ("chunked garbage", b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
]


APP_LEVEL = (
    "traversal",
    "encoded traversal",
    "encoded slash",
    "plugin traversal",
    "bad method",
    "POST to api",
    "DELETE",
    "bad percent",
    "invalid utf-8",
    "raw high bytes",
    "nul in path",
    "bad query",
    "query nonsense",
    "repeated param",
    "huge limit",
    "unknown route",
    "double slash",
    "absolute uri",
)


def check_answer(
    what: object, status: int | None, headers: dict[str, str], body: bytes, head: bool = False
) -> str:
    """Never a 500; a 4xx that reached the app is the API's JSON error. Returns its kind."""
    if status is None:
        return "closed"
    assert b"root:x:0:0" not in body, what  # /etc/passwd is never served
    if status == 0:
        assert b"Error code: 500" not in body and b'"status":500' not in body, (what, body[:300])
        return "http/0.9"
    assert status < 500 or status == 505, (what, status, body[:300])
    if status < 400 or head:
        return "ok"
    assert b"Traceback" not in body, what  # errors never leak the server's own stack
    # the parser's own errors (414, 431, 505...) and the app's share one JSON shape
    assert headers.get("content-type", "").startswith("application/json"), (what, headers)
    document = json.loads(body)
    assert document["status"] == status and document["error"], (what, document)
    return "json"


def test_raw_malformed_requests_never_get_a_500(served):
    monitor, host, port = served
    monitor.record_error(raised(ValueError("something to read")), component="fuzz")
    answers: dict[str, tuple[int | None, str]] = {}
    for name, payload in MALFORMED:
        status, headers, body = parse_answer(raw_request(host, port, payload))
        answers[name] = (status, check_answer(name, status, headers, body))
    print("\n[hostile] raw malformed requests (status, kind):", answers)
    for name in APP_LEVEL:
        status, kind = answers[name]
        assert status is not None and 400 <= status < 500 and kind == "json", (name, status, kind)
    # answered by the HTTP parser itself, before the app: the same JSON error shape
    assert answers["huge path"] == (414, "json")
    assert answers["huge header"] == answers["many headers"] == (431, "json")
    assert internal_errors(monitor) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "TRACE", "X" * 50, "G\x00T"]),
    path=st.one_of(
        st.binary(min_size=0, max_size=80).map(lambda b: b"/" + b.replace(b" ", b"")),
        st.sampled_from([b"/api/v1/errors/", b"/api/v1/plugins/", b"/api/v1/export?"]).flatmap(
            lambda prefix: st.binary(max_size=60).map(
                lambda b: prefix + b.replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b"")
            )
        ),
    ),
    header=st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
def test_fuzzed_raw_requests_get_4xx_json_or_close(served, method, path, header):
    _, host, port = served
    payload = (
        method.encode("latin-1", "replace")
        + b" "
        + path.replace(b"\r\n", b"")
        + b" HTTP/1.1\r\nHost: [::1]\r\nX-Fuzz: "
        + header
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = parse_answer(raw_request(host, port, payload))
    check_answer(payload[:300], status, headers, body, head=method == "HEAD")


def test_server_still_serves_after_the_fuzzing(served):
    monitor, host, port = served
    status, _, body = parse_answer(
        raw_request(
            host, port, b"GET /healthz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n"
        )
    )
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = parse_answer(
        raw_request(
            host, port, b"GET /api/v1/errors HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n"
        )
    )
    assert status == 200 and json.loads(body)["total"] >= 1
    assert internal_errors(monitor) == 0
