"""Instructions per request and per error, counted by valgrind's callgrind.

The timed benchmarks print medians of interleaved rounds because this machine is noisy (2
cores shared with other work); a difference of a few microseconds sinks in that noise.
An instruction count does not move with the load, so this script says exactly what a
change saved: each variant runs in its own process under callgrind twice, with ``n`` and
``3n`` iterations, and the difference divided by ``2n`` is the cost of one iteration
without the start-up. Instructions are not time (cache misses, allocation and the GIL do
not show), so the timed tables stay the figures the targets are judged by; this one shows
where the instructions go.

Flask ``/ok`` (WSGI callable, no server): bare, error-exporter, the metrics-only peer
and sentry-sdk (traces off), the peers when installed (``make bench`` installs them).
Capture: the raise and catch alone, the baseline (a 4-label ``Counter.labels().inc()``),
the traceback walk that the exact signature needs, ``record_error`` (one site, a storm; and
200 sites with every occurrence queued), and the whole error (caller and worker) for the
latter. Needs ``valgrind`` (``apt-get install valgrind``); without it, says so and exits 0.

    python bench/bench_instructions.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

FLASK_CHILD = r"""
import logging, sys
variant, n = sys.argv[1], int(sys.argv[2])
logging.disable(logging.CRITICAL)
from flask import Flask
app = Flask("bench")

@app.route("/ok")
def ok():
    return "ok"

if variant == "error-exporter":
    from exporter import ErrorMonitor
    from exporter.config import HOOKS_OFF
    from exporter.integrations.flask import instrument_flask
    instrument_flask(app, ErrorMonitor(**HOOKS_OFF).start(serve=False))
elif variant == "prometheus-flask-exporter":
    from prometheus_flask_exporter import PrometheusMetrics
    PrometheusMetrics(app)
elif variant == "sentry-sdk":
    import sentry_sdk
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", traces_sample_rate=None,
                    transport=lambda event: None)
wsgi = app.wsgi_app

def start_response(status, headers, exc_info=None):
    return None

for _ in range(n):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/ok", "SERVER_NAME": "bench",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_HOST": "bench", "HTTP_USER_AGENT": "bench", "HTTP_ACCEPT": "*/*",
               "wsgi.input": None, "wsgi.errors": sys.stderr}
    body = wsgi(environ, start_response)
    b"".join(body)
    body.close()
"""

CAPTURE_CHILD = r"""
import gc, sys
sys.path.insert(0, BENCH_DIR)
from bench_capture import _make_site, _warm
from prometheus_client import CollectorRegistry, Counter
from exporter import ErrorMonitor
from exporter.config import HOOKS_OFF
variant, n = sys.argv[1], int(sys.argv[2])
many = variant.endswith("200")
sites = [_make_site(i) for i in range(200)] if many else [_make_site(0)]
options = {"backlog_coalescing": False} if many else {}
monitor = ErrorMonitor(queue_size=n + 10, **HOOKS_OFF, **options)  # worker not started
_warm(monitor, sites)
counter = Counter("bench_errors", "baseline", ["a", "b", "c", "d"], registry=CollectorRegistry())
if variant == "raise-catch":
    act = lambda exc: None
elif variant == "baseline":
    act = lambda exc: counter.labels("ValueError", "ECUControl", "weather", "medium").inc()
elif variant == "walk":
    site = monitor.signer.site
    act = lambda exc: site(ValueError, exc.__traceback__)
else:
    act = lambda exc: monitor.record_error(exc, component="ECUControl", plugin="weather")
count = len(sites)
gc.disable()
for i in range(n):
    try:
        sites[i % count](i)
    except ValueError as exc:
        act(exc)
if variant.startswith("whole"):  # and the worker's share: every queued occurrence handled
    monitor.start()
    monitor.flush(timeout=3600)
    monitor.stop()
""".replace("BENCH_DIR", repr(str(HERE)))

FLASK_VARIANTS = ("bare", "error-exporter", "prometheus-flask-exporter", "sentry-sdk")
PEER_MODULES = {
    "prometheus-flask-exporter": "prometheus_flask_exporter",
    "sentry-sdk": "sentry_sdk",
}
CAPTURE_VARIANTS = (
    "raise-catch",
    "baseline",
    "walk",
    "record_error-1",
    "record_error-200",
    "whole-200",
)
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(source: str, variant: str, n: int) -> int:
    """Instructions of one run of ``source`` with ``n`` iterations, every thread counted."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            source,
            variant,
            str(n),
        ],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        timeout=3600,
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{variant}: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_iteration(source: str, variant: str, n: int) -> int:
    return (instructions(source, variant, 3 * n) - instructions(source, variant, n)) // (2 * n)


def installed(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts (apt-get install valgrind)")
        return 0
    n = 300 if args.quick else 1000
    jobs: list[tuple[str, str, str]] = []
    if installed("flask"):
        for variant in FLASK_VARIANTS:
            module = PEER_MODULES.get(variant)
            if module is None or installed(module):
                jobs.append(("flask", FLASK_CHILD, variant))
    else:
        print("Flask is not installed (make bench installs it in .venv-bench)")
    jobs += [("capture", CAPTURE_CHILD, variant) for variant in CAPTURE_VARIANTS]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = list(pool.map(lambda job: per_iteration(job[1], job[2], n), jobs))
    found = {(kind, variant): count for (kind, _, variant), count in zip(jobs, counts, strict=True)}

    print(f"\ninstructions (callgrind), per iteration, n={n} and {3 * n}")
    bare = found.get(("flask", "bare"))
    if bare is not None:
        print("  Flask /ok: per request, and over the bare app")
        for variant in FLASK_VARIANTS:
            count = found.get(("flask", variant))
            if count is not None:
                extra = "" if variant == "bare" else f"  (+{count - bare:,}, {count / bare:.2f}x)"
                print(f"    {variant:<28}{count:>10,}{extra}")
    empty = found[("capture", "raise-catch")]
    base = found[("capture", "baseline")] - empty
    print("  Capture: per error, over raise + catch; ratio to the baseline labels().inc()")
    for variant in CAPTURE_VARIANTS[1:]:
        cost = found[("capture", variant)] - empty
        print(f"    {variant:<28}{cost:>10,}  ({cost / base:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
