"""gunicorn settings for an app monitored by error-exporter with several worker processes.

    export PROMETHEUS_MULTIPROC_DIR=/tmp/error-exporter-mp      # before Python starts
    gunicorn -c examples/gunicorn_conf.py --chdir examples wsgi_app:app
    curl -s localhost:8000/monitor/metrics                      # every worker, one scrape
    curl -s localhost:8000/monitor/api/v1/export                # every worker's reports

    # optional: the same from a process of its own, up while workers restart
    error-exporter serve --multiproc-dir /tmp/error-exporter-mp --port 9718

``PROMETHEUS_MULTIPROC_DIR`` must be in the environment before prometheus_client is first
imported; this file sets a default for the workers it starts, but exporting it yourself also
covers ``--preload`` and other tools reading the directory. When gunicorn starts, the
metric files of the last run are removed (they would add an old run's counts) while the
store file ``error-exporter.sqlite`` is kept (the host's history of groups: what is new in a
version, what was resolved), and each exiting worker is reported, so its live gauges (queue
depth, sessions, patterns...) leave the sums while its counters stay in the totals.
"""

from __future__ import annotations

import os
import tempfile

multiproc_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "error-exporter-mp")
)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "sync"


def on_starting(server: object) -> None:
    """In the master, before any worker: the directory ready for this run."""
    from exporter.multiprocess import prepare_dir

    prepare_dir(multiproc_dir)


def child_exit(server: object, worker: object) -> None:
    """In the master, when a worker exits (crash, timeout, max_requests, reload)."""
    from exporter.multiprocess import mark_process_dead

    mark_process_dead(getattr(worker, "pid"), multiproc_dir)  # noqa: B009
