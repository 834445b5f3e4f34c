"""What the monitor costs every request, beside the peers, and what a start costs.

Per request: a Flask app (WSGI callable, no server) and a Starlette app (ASGI callable,
driven by a minimal in-process loop), each variant in its own fresh process so no
instrumentation leaks into another: bare, error-exporter, the metrics-only peer
(prometheus-flask-exporter / starlette-exporter) and sentry-sdk (traces off). Three routes:
``/ok`` (200), ``/handled`` (raise, catch, record: ``record_error`` / the peer's own way of
reporting a handled error) and ``/boom`` (unhandled: a 500). Each figure is the median over
interleaved rounds of microseconds per request; overhead is the variant minus bare in the same
round.

Start-up: ``python -c pass``, ``import exporter``, import + ``start()`` (no server), and
import + ``start()`` with the server, left by ``os._exit`` and through a normal exit (the
difference is what the monitor's exit costs); median over interleaved runs.

The peers are installed only in the bench environment (``make bench`` builds
``.venv-bench``); a peer that is not installed is left out of the table.

    python bench/bench_requests.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROUTES = ("/ok", "/handled", "/boom")
WSGI_VARIANTS = ("bare", "error-exporter", "prometheus-flask-exporter", "sentry-sdk")
ASGI_VARIANTS = ("bare", "error-exporter", "starlette-exporter", "sentry-sdk")

QUIET = (
    "dict(capture_sys_excepthook=False, capture_threading=False, capture_asyncio=False, "
    "capture_logging=False, enable_resource_monitoring=False)"
)

WSGI_CHILD = r"""
import json, logging, sys, time
variant, n = sys.argv[1], int(sys.argv[2])
logging.disable(logging.CRITICAL)  # the frameworks' error logs are not what is measured
from flask import Flask
app = Flask("bench")
record = lambda exc: None
if variant == "sentry-sdk":
    import sentry_sdk
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", traces_sample_rate=None,
                    default_integrations=True, transport=lambda event: None)
    record = sentry_sdk.capture_exception

@app.route("/ok")
def ok():
    return "ok"

@app.route("/handled")
def handled():
    try:
        raise ValueError("handled")
    except ValueError as exc:
        record(exc)
    return "handled"

@app.route("/boom")
def boom():
    raise RuntimeError("boom")

wsgi = app.wsgi_app
if variant == "error-exporter":
    from exporter import ErrorMonitor
    from exporter.integrations.flask import instrument_flask
    monitor = ErrorMonitor(**QUIET).start(serve=False)
    instrument_flask(app, monitor)
    wsgi = app.wsgi_app
    record = monitor.record_error
elif variant == "prometheus-flask-exporter":
    from prometheus_flask_exporter import PrometheusMetrics
    metrics = PrometheusMetrics(app)
    wsgi = app.wsgi_app
    errors = metrics.counter("handled_errors", "handled", labels={"type": lambda: "x"})
    from prometheus_client import Counter
    handled_total = Counter("bench_handled_errors", "handled", ["error_type"])
    record = lambda exc: handled_total.labels(type(exc).__name__).inc()

def environ(path):
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "bench",
            "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "bench", "HTTP_USER_AGENT": "bench", "HTTP_ACCEPT": "*/*",
            "wsgi.input": None, "wsgi.errors": sys.stderr, "wsgi.multithread": False,
            "wsgi.multiprocess": False, "wsgi.run_once": False}

def start_response(status, headers, exc_info=None):
    return None

out = {}
for path in json.loads(sys.argv[3]):
    for _ in range(200):  # warm
        body = wsgi(environ(path), start_response)
        b"".join(body); getattr(body, "close", lambda: None)()
    start = time.perf_counter()
    for _ in range(n):
        body = wsgi(environ(path), start_response)
        b"".join(body); getattr(body, "close", lambda: None)()
    out[path] = (time.perf_counter() - start) / n * 1e6
print(json.dumps(out))
""".replace("QUIET", QUIET)

ASGI_CHILD = r"""
import asyncio, json, logging, sys, time
variant, n = sys.argv[1], int(sys.argv[2])
logging.disable(logging.CRITICAL)
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
record = lambda exc: None
if variant == "sentry-sdk":
    import sentry_sdk
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", traces_sample_rate=None,
                    transport=lambda event: None)
    record = sentry_sdk.capture_exception

async def ok(request):
    return PlainTextResponse("ok")

async def handled(request):
    try:
        raise ValueError("handled")
    except ValueError as exc:
        record(exc)
    return PlainTextResponse("handled")

async def boom(request):
    raise RuntimeError("boom")

app = Starlette(routes=[Route("/ok", ok), Route("/handled", handled), Route("/boom", boom)])
asgi = app
if variant == "error-exporter":
    from exporter import ErrorMonitor
    from exporter.integrations.asgi import AsgiMiddleware
    monitor = ErrorMonitor(**QUIET).start(serve=False)
    asgi = AsgiMiddleware(app, monitor)
    record = monitor.record_error
elif variant == "starlette-exporter":
    from starlette_exporter import PrometheusMiddleware
    app.add_middleware(PrometheusMiddleware)
    from prometheus_client import Counter
    handled_total = Counter("bench_handled_errors", "handled", ["error_type"])
    record = lambda exc: handled_total.labels(type(exc).__name__).inc()

def scope(path):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "server": ("bench", 80),
            "client": ("127.0.0.1", 1234),
            "headers": [(b"host", b"bench"), (b"user-agent", b"bench"), (b"accept", b"*/*")]}

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def send(message):
    return None

async def one(path):
    try:
        await asgi(scope(path), receive, send)
    except Exception:
        pass  # /boom: the server would answer 500

async def main():
    out = {}
    for path in json.loads(sys.argv[3]):
        for _ in range(200):
            await one(path)
        start = time.perf_counter()
        for _ in range(n):
            await one(path)
        out[path] = (time.perf_counter() - start) / n * 1e6
    return out

print(json.dumps(asyncio.run(main())))
""".replace("QUIET", QUIET)

STARTS = {
    "python -c pass": "pass",
    "import exporter": "import exporter",
    "import + start() (no server)": "import exporter; exporter.ErrorMonitor().start(serve=False)",
    "import + start() with the server, no exit (os._exit)": (
        "import os, exporter; exporter.ErrorMonitor(port=0).start(); os._exit(0)"
    ),
    "import + start() with the server, through exit": (
        "import exporter; exporter.ErrorMonitor(port=0).start()"
    ),
}
SERVER_NO_EXIT = "import + start() with the server, no exit (os._exit)"


def installed(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def run_child(source: str, variant: str, n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", source, variant, str(n), json.dumps(ROUTES)],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant}: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def requests_table(kind: str, source: str, variants: tuple[str, ...], n: int, rounds: int) -> None:
    per: dict[str, dict[str, list[float]]] = {v: {r: [] for r in ROUTES} for v in variants}
    for _ in range(rounds):
        results = {v: run_child(source, v, n) for v in variants}
        for variant in variants[1:]:
            for route in ROUTES:
                per[variant][route].append(results[variant][route] - results["bare"][route])
        for route in ROUTES:
            per["bare"][route].append(results["bare"][route])
    median = statistics.median
    print(
        f"\n{kind}: us per request (bare) and overhead over bare, median of {rounds} "
        f"interleaved rounds, n={n}"
    )
    print(f"{'route':<10}" + "".join(f"{v:>28}" for v in variants))
    for route in ROUTES:
        cells = [f"{median(per['bare'][route]):>28.1f}"]
        cells += [f"{median(per[v][route]):>+28.1f}" for v in variants[1:]]
        print(f"{route:<10}" + "".join(cells))


def start_table(rounds: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in STARTS}
    for _ in range(rounds):
        for name, code in STARTS.items():
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", code], check=True, cwd=HERE.parent, capture_output=True
            )
            times[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(times["python -c pass"])
    print(f"\nstart-up: ms for the whole process, median of {rounds} interleaved runs")
    for name, values in times.items():
        value = statistics.median(values)
        extra = "" if name == "python -c pass" else f"  (+{value - base:.0f} ms over bare)"
        if name.endswith("through exit"):  # the monitor's exit: stop the server, flush
            extra += f"; the exit adds {value - statistics.median(times[SERVER_NO_EXIT]):.0f} ms"
        print(f"  {name:<48}{value:>8.1f}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    args = parser.parse_args()
    n, rounds = (500, 3) if args.quick else (3000, 7)
    peers = {
        "prometheus-flask-exporter": "prometheus_flask_exporter",
        "starlette-exporter": "starlette_exporter",
        "sentry-sdk": "sentry_sdk",
    }
    if installed("flask"):
        wsgi = tuple(v for v in WSGI_VARIANTS if v not in peers or installed(peers[v]))
        requests_table("WSGI (Flask)", WSGI_CHILD, wsgi, n, rounds)
    else:
        print("WSGI: flask is not installed (make bench installs it in .venv-bench)")
    if installed("starlette"):
        asgi = tuple(v for v in ASGI_VARIANTS if v not in peers or installed(peers[v]))
        requests_table("ASGI (Starlette)", ASGI_CHILD, asgi, n, rounds)
    else:
        print("ASGI: starlette is not installed (make bench installs it in .venv-bench)")
    start_table(rounds * 3)


if __name__ == "__main__":
    main()
