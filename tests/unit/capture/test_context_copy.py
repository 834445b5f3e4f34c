"""A report shows the moment of the error (issue 19, items 2 to 5).

- the context, metadata and breadcrumb data as they were at the call, nested containers
  included, whatever their type, within the scrubber's caps;
- a logged error (no exception) shows where it was logged;
- an error recorded, logged or captured inside a request or job carries it;
- an error raised with little stack left is still counted;
- the exemplar of ``app_errors_total`` follows the latest occurrence;
- one rule for every rate per hour.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import sys
import time
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from support.monitoring import dropped, errors_total
from support.promstack import wait_until
from werkzeug.test import Client

from exporter import ErrorMonitor, wsgi_app
from exporter.classify import per_hour
from exporter.integrations.scope import WorkScope

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def occurrences(monitor: ErrorMonitor, error_type: str | None = None) -> list[dict[str, Any]]:
    """Every stored occurrence (oldest first), of one type if given."""
    assert monitor.flush(10)
    out: list[dict[str, Any]] = []
    for group in monitor.list_groups():
        detail = monitor.get_group(group["error_id"])
        assert detail is not None
        out.extend(
            o for o in detail["occurrences"] if error_type is None or o["error_type"] == error_type
        )
    return sorted(out, key=lambda o: o["timestamp"])


def the_report(monitor: ErrorMonitor, error_type: str) -> dict[str, Any]:
    assert monitor.flush(10)
    for group in monitor.list_groups():
        detail = monitor.get_group(group["error_id"])
        assert detail is not None
        if detail["report"]["error_type"] == error_type:
            return detail["report"]
    raise AssertionError(f"no {error_type} report")


# -- 2. the context as it was at the call ----------------------------------------------------
def test_a_reused_context_dict_shows_each_call_not_what_the_app_did_after(make_monitor):
    monitor = make_monitor()
    state: dict[str, Any] = {"job": {"id": 0, "tags": ["a"]}}
    for i in range(30):
        state["job"]["id"] = i
        state["job"]["tags"].append(f"t{i}")
        monitor.record_error(raised(ValueError(f"job {i} failed")), context=state)
    state["job"].clear()
    seen = occurrences(monitor, "ValueError")
    assert len(seen) >= 10  # the group keeps its latest occurrences
    for occurrence in seen:
        job_id = int(occurrence["message"].split()[1])
        assert occurrence["context"]["job"]["id"] == job_id
        assert occurrence["context"]["job"]["tags"][-1] == f"t{job_id}"


@dataclasses.dataclass
class Order:
    id: int
    items: list[int]
    secret_token: str = "tok-123"


@pytest.mark.parametrize(
    "make_value, change, expected",
    [
        (lambda: [1, 2, 3], lambda v: v.append(4), [1, 2, 3]),
        (lambda: (1, [2]), lambda v: v[1].append(3), [1, [2]]),
        (
            lambda: {"nested": {"deep": [1]}},
            lambda v: v["nested"]["deep"].append(2),
            {"nested": {"deep": [1]}},
        ),
        (lambda: {3}, lambda v: v.add(4), [3]),
        (lambda: collections.deque([1]), lambda v: v.append(2), [1]),
        (lambda: collections.OrderedDict(a=1), lambda v: v.update(b=2), {"a": 1}),
        (lambda: bytearray(b"ab"), lambda v: v.extend(b"cd"), "ab"),
        (
            lambda: Order(1, [1, 2]),
            lambda v: v.items.append(3),
            {"id": 1, "items": [1, 2], "secret_token": "[Filtered]"},
        ),
    ],
    ids=["list", "tuple", "nested-dict", "set", "deque", "ordered-dict", "bytearray", "dataclass"],
)
def test_every_container_type_is_shown_as_it_was(make_monitor, make_value, change, expected):
    monitor = make_monitor()
    value = make_value()
    context = {"value": value}
    metadata = {"value": make_value()}
    monitor.record_error(raised(KeyError("k")), context=context, metadata=metadata)
    change(value)
    change(metadata["value"])
    (occurrence,) = occurrences(monitor)
    assert occurrence["context"]["value"] == expected
    report = the_report(monitor, "KeyError")
    assert report["context"]["value"] == expected
    assert report["metadata"]["value"] == expected


def test_the_copy_keeps_the_scrubbers_caps_and_marks(make_monitor):
    monitor = make_monitor(max_context_items=3, max_context_depth=3)
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    context = {
        "many": list(range(10)),
        "keys": {f"k{i}": i for i in range(5)},
        "deep": {"a": {"b": {"c": 1}}},
    }
    monitor.record_error(raised(KeyError("caps")), context=context)
    monitor.record_error(raised(IndexError("cycle")), context={"c": cyclic})
    capped = occurrences(monitor, "KeyError")[0]["context"]
    assert capped["many"] == [0, 1, 2, "[7 more items]"]
    assert capped["keys"] == {"k0": 0, "k1": 1, "k2": 2, "[truncated]": "2 more keys"}
    assert capped["deep"] == {"a": {"b": "[max depth]"}}
    assert occurrences(monitor, "IndexError")[0]["context"] == {"c": [1, "[cycle]"]}


def test_breadcrumb_data_is_kept_as_it_was_when_the_breadcrumb_was_left(make_monitor):
    monitor = make_monitor()
    data: dict[str, Any] = {"cart": [1]}
    monitor.add_breadcrumb("added to cart", data=data)
    data["cart"].append(2)
    monitor.record_error(raised(ValueError("checkout failed")))
    report = the_report(monitor, "ValueError")
    (crumb,) = [b for b in report["breadcrumbs"] if b["action"] == "added to cart"]
    assert crumb["data"] == {"cart": [1]}


def test_a_coalesced_repeat_copies_nothing(make_monitor):
    """A storm's repeats over the budget are counted only: their context is never read."""
    monitor = make_monitor(occurrence_budget_per_second=1)

    class Watched(dict):  # type: ignore[type-arg]
        reads = 0

        def items(self):  # type: ignore[no-untyped-def]
            Watched.reads += 1
            return super().items()

    for _ in range(50):
        monitor.record_error(raised(ValueError("storm")), context=Watched(a=1))
    assert monitor.flush(10)
    assert errors_total(monitor) == 50
    assert Watched.reads < 50
    assert dropped(monitor, "coalesced") == 50 - Watched.reads


# -- 3. a logged error shows where it was logged ---------------------------------------------
def settle_invoice(log: logging.Logger, number: int) -> None:
    log.error("invoice %s could not be settled", number)  # the line the report names


def test_a_logged_error_carries_the_log_calls_file_line_and_function(make_monitor):
    monitor = make_monitor(capture_logging=True)
    log = logging.getLogger("billing.settle")
    log.propagate = False
    try:
        settle_invoice(log, 7)
        settle_invoice(log, 8)
    finally:
        log.propagate = True
    assert monitor.flush(10)
    (group,) = monitor.list_groups()
    assert group["occurrence_count"] == 2  # the template stays the grouping key
    line = settle_invoice.__code__.co_firstlineno + 1
    for shape in (group, the_report(monitor, "LoggedError")):
        assert shape["file_path"] == __file__
        assert shape["line_number"] == line
        assert shape["function_name"] == "settle_invoice"
    report = the_report(monitor, "LoggedError")
    assert f'File "{__file__}", line {line}, in settle_invoice' in report["stack_trace"]
    assert "log.error(" in report["stack_trace"]  # the source line, as in any trace
    assert group["frames"][0]["function_name"] == "settle_invoice"


# -- 4. an error inside a request or job carries it ------------------------------------------
def test_errors_recorded_logged_and_captured_inside_a_job_carry_it(make_monitor):
    monitor = make_monitor(capture_logging=True)
    log = logging.getLogger("jobs")
    log.propagate = False
    describe = {"job": {"name": "charge", "id": "j-1"}}
    try:
        with WorkScope(
            monitor, component="worker", operation="task charge", describe=lambda: describe
        ):
            monitor.record_error(raised(ValueError("recorded")), context={"card": "visa"})
            log.error("logged %s", 1)
            with monitor.capture(reraise=False):
                raise KeyError("captured")
            monitor.record_error(
                raised(TypeError("own operation")), operation="refund", context={"job": "mine"}
            )
    finally:
        log.propagate = True
    by_type = {o["error_type"]: o for o in occurrences(monitor)}
    assert by_type["ValueError"]["context"] == {**describe, "card": "visa"}
    for name in ("ValueError", "LoggedError", "KeyError"):
        assert by_type[name]["operation"] == "task charge"
        assert by_type[name]["context"]["job"] == describe["job"]
    assert by_type["TypeError"]["operation"] == "refund"  # the call says otherwise
    assert by_type["TypeError"]["context"]["job"] == "mine"
    monitor.record_error(raised(OSError("after the job")))
    after = occurrences(monitor, "OSError")[0]
    assert after["operation"] in ("", None) and "job" not in (after["context"] or {})


def test_an_error_recorded_inside_a_request_carries_the_request(make_monitor):
    from exporter.integrations.wsgi import WsgiMiddleware

    monitor = make_monitor()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        monitor.record_error(raised(ValueError("handled in the view")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = Client(WsgiMiddleware(app, monitor=monitor))
    response = client.get("/orders/7", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    (occurrence,) = occurrences(monitor)
    request = occurrence["context"]["request"]
    assert (request["method"], request["path"], request["request_id"]) == (
        "GET",
        "/orders/7",
        "req-42",
    )
    assert occurrence["operation"] == "GET"


# -- 5. nothing is lost at the edges ---------------------------------------------------------
def _frames_left() -> int:
    """How many more Python calls fit on this stack (the interpreter's own count, which
    also counts C-level calls that a frame walk does not see)."""
    calls = 0

    def probe() -> None:
        nonlocal calls
        calls += 1
        probe()

    with contextlib.suppress(RecursionError):
        probe()
    return calls


@pytest.mark.parametrize("frames_left", [20, 8, 5, 3])
def test_an_error_near_the_recursion_limit_is_counted_with_its_detail(make_monitor, frames_left):
    """The app raises and records an error with ``frames_left`` calls of stack to spare."""
    monitor = make_monitor()
    results: list[str | None] = []

    def dive(levels: int) -> None:
        if levels > 0:
            dive(levels - 1)
            return
        error = raised(ValueError("deep"))
        results.append(monitor.record_error(error, context={"n": 1}))

    limit = sys.getrecursionlimit()
    dive(_frames_left() - frames_left - 2)  # dive() and raised() take one call each
    assert results[0] is not None
    assert monitor.flush(10)
    wait_until(
        lambda: sys.getrecursionlimit() == limit, timeout=10, what="the lent stack given back"
    )
    assert errors_total(monitor) == 1
    assert monitor.get_statistics()["total_errors"] == 1
    (occurrence,) = occurrences(monitor)
    assert occurrence["context"] == {"n": 1}


def test_an_error_that_cannot_be_detailed_is_counted_and_its_drop_has_a_reason(make_monitor):
    monitor = make_monitor()

    class Unprintable(Exception):
        @property
        def __traceback__(self):  # type: ignore[override]
            raise RuntimeError("no traceback for you")

    error_id = monitor.record_error(Unprintable())
    assert error_id is not None
    assert errors_total(monitor) == 1
    assert monitor.get_statistics()["total_errors"] == 1
    assert dropped(monitor, "capture_failed") == 1


def exemplar_of(monitor: ErrorMonitor, error_type: str) -> tuple[dict[str, str], float]:
    response = Client(wsgi_app(monitor)).get("/metrics", headers={"Accept": OPENMETRICS})
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            if (
                sample.name == "app_errors_total"
                and sample.exemplar is not None
                and sample.labels["error_type"] == error_type
            ):
                return dict(sample.exemplar.labels), float(sample.exemplar.timestamp or 0)
    raise AssertionError("no exemplar")


def test_the_exemplar_follows_the_latest_occurrence_and_its_time(make_monitor):
    monitor = make_monitor()
    times = []
    for _ in range(3):
        before = time.time()
        error_id = monitor.record_error(raised(ValueError("again")))
        times.append((before, time.time()))
        labels, stamp = exemplar_of(monitor, "ValueError")
        assert labels == {"error_id": error_id}
        assert times[-1][0] <= stamp <= times[-1][1]  # the occurrence's time, not the scrape's
        time.sleep(0.05)
    assert len({round(t[0], 3) for t in times}) == 3


def test_one_rule_for_every_rate_per_hour(make_monitor):
    assert per_hour(8, 19) == 8.0
    assert per_hour(8, 7200) == 4.0
    monitor = make_monitor()
    for i in range(8):
        monitor.record_error(raised(ValueError(f"e{i}")))
    assert monitor.flush(10)
    (group,) = monitor.list_groups()
    assert group["frequency_per_hour"] == 8.0
    assert monitor.get_statistics()["average_errors_per_hour"] == 8.0
