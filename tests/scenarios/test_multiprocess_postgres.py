"""gunicorn workers on several hosts, one PostgreSQL: multiprocess mode with ``store_url``.

The proof, with real parts: a gunicorn with 2 workers in multiprocess mode writing a real
PostgreSQL; errors raised in both workers add up exactly in one scrape (the directory's
mmap files), while the JSON API of any worker and the sidecar list the fleet's groups from
the database with both workers' counts; the rows are in PostgreSQL; a second "host" (a
single-process server of the same app on the same ``store_url``) sees the same groups, and
a group it raises for the first time there is not "new" again.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.gunicorn import (
    EXAMPLES,
    KINDS,
    PER_KIND,
    TOKEN,
    Gunicorn,
    N,
    api,
    error_totals,
    errors_by_pid,
    free_port,
    get,
    raise_in_workers,
    sample_values,
    wait_for,
)
from support.jobs import Process, clean_env
from support.jobs import wait_for as wait_for_process

pytestmark = pytest.mark.slow
ZERO = {"ZeroDivisionError": PER_KIND}

SIDECAR = [sys.executable, "-m", "exporter", "serve", "--multiproc-dir"]
SECOND_HOST = (
    "from wsgiref.simple_server import make_server; import wsgi_app; "
    "make_server('127.0.0.1', {port}, wsgi_app.app).serve_forever()"
)


@pytest.fixture(params=[False, True], ids=["workers-import-app", "preload"])
def gunicorn_pg(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str
) -> Iterator[tuple[Gunicorn, str]]:
    """2 gunicorn workers, PROMETHEUS_MULTIPROC_DIR and a postgresql:// store_url."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    server = Gunicorn(
        multiproc,
        tmp_path / "gunicorn.log",
        preload=request.param,
        workers=2,
        ERROR_EXPORTER_STORE_URL=pg_url,
        ERROR_EXPORTER_API_TOKEN=TOKEN,
    )
    try:
        wait_for(
            lambda: len(server.workers()) == 2 and get(server.url + "/")[0] == 200,
            what="2 gunicorn workers",
        )
        yield server, pg_url
    except BaseException:
        print((tmp_path / "gunicorn.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        server.stop()


def read(url: str) -> Any:
    """One API read (with the workers' token; a server without one ignores it)."""
    status, body, _ = api(url)
    assert status == 200, (url, status, body)
    return body


def counts(errors: dict[str, Any]) -> dict[str, int]:
    """error_type -> the group's occurrence count, from /api/v1/errors."""
    return {g["error_type"]: g["occurrence_count"] for g in errors["errors"]}


def scrape(url: str) -> str:
    status, body = get(url)
    assert status == 200
    return body.decode()


def new_groups(text: str) -> float:
    return sum(v for _, v in sample_values(text, "app_error_groups_new_total"))


def regressions(text: str) -> float:
    return sum(v for _, v in sample_values(text, "app_error_groups_regressed_total"))


def store_info(text: str) -> list[dict[str, str]]:
    return [labels for labels, _ in sample_values(text, "app_monitor_store_info")]


def answers(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False


def started(args: list[str], log: Path, pg_url: str, cwd: Path, health: str) -> Process:
    """A process of ours on the store (stopped by its PID, by the caller or at exit)."""
    process = Process(args, log, cwd=cwd, env=clean_env(ERROR_EXPORTER_STORE_URL=pg_url))
    try:
        wait_for_process(lambda: answers(health), timeout=60, what=str(args), process=process)
    except BaseException:
        process.stop()
        raise
    return process


def test_gunicorn_workers_write_the_fleets_postgresql(
    gunicorn_pg: tuple[Gunicorn, str], postgres_server: Any, tmp_path: Path
) -> None:
    gunicorn, pg_url = gunicorn_pg
    workers = gunicorn.workers()
    raise_in_workers(gunicorn.url)
    by_pid = errors_by_pid(gunicorn.dir)
    assert set(by_pid) == workers, by_pid  # both workers raised some

    # one scrape: the exact totals of both workers (the directory's files)
    text = scrape(gunicorn.url + "/monitor/metrics")
    assert error_totals(text) == {t: PER_KIND for t in KINDS.values()}

    # the JSON API of any worker: the fleet's groups from the database, both workers' counts
    errors = read(gunicorn.url + "/monitor/api/v1/errors")
    assert counts(errors) == {t: PER_KIND for t in KINDS.values()}
    instances = {i["instance"] for g in errors["errors"] for i in g["instances"]}
    assert {int(name.rsplit(":", 1)[1]) for name in instances} == workers
    for group in errors["errors"]:
        assert sum(i["occurrence_count"] for i in group["instances"]) == PER_KIND
    export = read(gunicorn.url + "/monitor/api/v1/export")
    assert len(export["all_records"]) == N
    assert export["statistics"]["total_errors"] == N
    ids = {g["error_type"]: g["error_id"] for g in errors["errors"]}

    # /metrics says what the database holds, and how far release health reaches
    text = scrape(gunicorn.url + "/monitor/metrics")
    assert sample_values(text, "app_unique_errors") == [({}, 3.0)]
    # once for the fleet, whichever worker wrote first; that worker counts it just after its
    # write commits, and a read settles on the commit (a worker's stored count), not on the
    # count: another worker's new group may be counted a moment after the read
    wait_for(
        lambda: new_groups(scrape(gunicorn.url + "/monitor/metrics")) == 3,
        what="the new groups' count",
    )
    wait_for(  # each worker publishes its gauges every second
        lambda: (
            store_info(scrape(gunicorn.url + "/monitor/metrics"))
            == [{"backend": "postgresql", "release_scope": "fleet"}]
        ),
        what="app_monitor_store_info of the workers",
    )

    # OpenMetrics: each series' exemplar is the latest error id of its labels, from the database
    status, body = get(
        gunicorn.url + "/monitor/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    exemplars = {
        line.split('error_id="')[1].split('"')[0]
        for line in body.decode().splitlines()
        if line.startswith("app_errors_total{") and "# {" in line
    }
    assert exemplars == set(ids.values())
    assert sum(v for _, v in sample_values(text, "app_monitor_internal_errors_total")) == 0

    # the rows are in PostgreSQL
    rows = postgres_server.sql(pg_url, "SELECT error_id, occurrence_count FROM groups")
    assert dict(rows) == {e: PER_KIND for e in ids.values()}
    assert postgres_server.sql(pg_url, "SELECT count(*) FROM records") == [(N,)]

    # a sidecar not given the store_url would serve an empty store: it refuses, naming the key
    refused = subprocess.run(
        [*SIDECAR, str(gunicorn.dir), "--port", str(free_port())],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "store_url: the workers of" in refused.stderr
    assert "give the sidecar the same store_url" in refused.stderr

    # the sidecar: the directory's metrics, the database's groups
    port = free_port()
    sidecar = started(
        [*SIDECAR, str(gunicorn.dir), "--port", str(port)],
        tmp_path / "sidecar.log",
        pg_url,
        gunicorn.dir,
        f"http://127.0.0.1:{port}/healthz",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert counts(read(url + "/api/v1/errors")) == {t: PER_KIND for t in KINDS.values()}
        text = scrape(url + "/metrics")
        assert error_totals(text) == {t: PER_KIND for t in KINDS.values()}
        assert sample_values(text, "app_unique_errors") == [({}, 3.0)]
        assert len(read(url + "/api/v1/export")["all_records"]) == N
    finally:
        sidecar.stop()

    # resolved through a worker's API: in the database, for the fleet
    key = ids["KeyError"]
    status, body, _ = api(gunicorn.url + f"/monitor/api/v1/errors/{key}/resolve", "POST")
    assert (status, body["resolved"]) == (200, True), body
    resolved = "SELECT resolved_at IS NOT NULL, regressed FROM groups WHERE error_id = %s"
    assert postgres_server.sql(pg_url, resolved, (key,)) == [(True, 0)]

    # a second host: the same app, one process, no multiprocess mode, the same store_url
    port = free_port()
    host = started(
        [sys.executable, "-c", SECOND_HOST.format(port=port)],
        tmp_path / "second-host.log",
        pg_url,
        EXAMPLES,
        f"http://127.0.0.1:{port}/",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert counts(read(url + "/monitor/api/v1/errors")) == {t: PER_KIND for t in KINDS.values()}
        assert get(url + "/boom/value")[0] == 500  # its first ValueError: the fleet's group
        assert get(url + "/boom/key")[0] == 500  # resolved by a worker of the other host
        seen = counts(read(url + "/monitor/api/v1/errors"))
        assert seen == {"ValueError": PER_KIND + 1, "KeyError": PER_KIND + 1, **ZERO}
        text = scrape(url + "/monitor/metrics")
        assert new_groups(text) == 0
        assert regressions(text) == 1
        assert store_info(text) == [{"backend": "postgresql", "release_scope": "fleet"}]
    finally:
        host.stop()
    errors = read(gunicorn.url + "/monitor/api/v1/errors")
    assert counts(errors) == {"ValueError": PER_KIND + 1, "KeyError": PER_KIND + 1, **ZERO}
    assert [g["error_type"] for g in errors["errors"] if g["regressed"]] == ["KeyError"]
    assert postgres_server.sql(pg_url, resolved, (key,)) == [(False, 1)]
    text = scrape(gunicorn.url + "/monitor/metrics")
    assert new_groups(text) == 3
    assert regressions(text) == 0  # counted once, where it came back
    rows = postgres_server.sql(pg_url, "SELECT count(*) FROM groups")
    assert rows == [(3,)]


def test_a_database_outage_costs_the_workers_nothing_and_loses_nothing(
    gunicorn_pg: tuple[Gunicorn, str], postgres_server: Any
) -> None:
    gunicorn, pg_url = gunicorn_pg
    stored = "SELECT coalesce(sum(occurrence_count), 0), count(*) FROM groups"
    raise_in_workers(gunicorn.url)
    wait_for(lambda: postgres_server.sql(pg_url, stored) == [(N, 3)], what="the first batch")

    postgres_server.stop_server()
    try:
        raise_in_workers(gunicorn.url)  # the workers answer as before (500s, never a hang)
        # the metrics are the directory's: exact without the database
        text = scrape(gunicorn.url + "/monitor/metrics")
        assert error_totals(text) == {t: 2 * PER_KIND for t in KINDS.values()}
        # a read answers (from what the workers hold) instead of failing or hanging
        status, body, _ = api(gunicorn.url + "/monitor/api/v1/errors")
        assert status == 200, body
        assert {g["error_type"] for g in body["errors"]} <= set(KINDS.values())
    finally:
        postgres_server.start_server()

    # the workers kept what they could not write, and write it once the database is back
    wait_for(
        lambda: postgres_server.sql(pg_url, stored) == [(2 * N, 3)],
        timeout=90,
        what="the batches kept during the outage",
    )
    assert postgres_server.sql(pg_url, "SELECT count(*) FROM records") == [(2 * N,)]
    # a reader that failed to connect answers from memory for RETRY_SECONDS (5 s), then
    # reads the database again
    wait_for(
        lambda: (
            counts(read(gunicorn.url + "/monitor/api/v1/errors"))
            == {t: 2 * PER_KIND for t in KINDS.values()}
        ),
        what="the reads to come from the database again",
    )
    text = scrape(gunicorn.url + "/monitor/metrics")
    dropped = dict(
        (labels.get("reason"), value)
        for labels, value in sample_values(text, "app_error_reports_dropped_total")
    )
    assert dropped.get("store_write_failed", 0) == 0, dropped
    assert new_groups(text) == 3  # the groups were new once, before the outage


def _first_site() -> None:
    raise ValueError("the first site")


def _second_site() -> None:
    raise ValueError("the second site")


def _third_site() -> None:
    raise ValueError("the third site")


def test_the_exemplars_read_only_new_records_yet_miss_none(
    make_monitor: Any, pg_url: str, postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each scrape reads the records numbered above the last one's (less LATE_COMMITS, 2
    here), sees a batch that commits after a later-numbered one, and a full read forgets
    the series whose records are gone."""
    import json

    import psycopg

    from exporter.config import MonitorConfig
    from exporter.multiprocess import postgres_mode
    from exporter.store.durable.fleet_reader import FleetReader

    monkeypatch.setattr(postgres_mode, "LATE_COMMITS", 2)
    writer = make_monitor(store_url=pg_url)

    def highest() -> int:
        return int(postgres_server.sql(pg_url, "SELECT max(seq) FROM records")[0][0])

    def record(site: Any, component: str) -> str:
        try:
            site()
        except ValueError as exc:
            error_id = writer.record_error(exc, component=component)
        assert writer.flush(30)
        return str(error_id)

    def by_component() -> dict[str, str]:
        return {series[1]: entry[0] for series, entry in groups.latest_ids().items()}

    first = record(_first_site, "a")
    other = [record(_second_site, "b") for _ in range(4)][-1]  # one group, 4 records
    reader = FleetReader(pg_url, "app", MonitorConfig())
    asked: list[int] = []
    query = reader.query

    def noted(statement: Any, *args: Any) -> Any:
        asked.append(args[0])
        return query(statement, *args)

    reader.query = noted  # type: ignore[method-assign]
    groups = postgres_mode.PostgresGroups(reader)
    try:
        assert by_component() == {"a": first, "b": other}
        assert asked == [0]  # the first read: everything (the latest 5,000)

        seen = highest()
        latest = record(_third_site, "a")  # a newer group of series "a"
        assert by_component() == {"a": latest, "b": other}
        assert asked[-1] == seen - 2 > 0  # only what is numbered above the last read's

        # a batch that took its number before another's but commits after it: still seen
        [(data,)] = postgres_server.sql(
            pg_url, "SELECT data FROM records WHERE error_id = %s LIMIT 1", (latest,)
        )
        late = json.dumps({**json.loads(data), "component": "late"})
        soon = json.dumps({**json.loads(data), "component": "soon"})
        insert = "INSERT INTO records (app, ts, error_id, data) VALUES ('app', 1, %s, %s)"
        with psycopg.connect(pg_url) as slow, psycopg.connect(pg_url, autocommit=True) as fast:
            slow.execute(insert, (latest, late))  # numbered first, not committed
            fast.execute(insert, (latest, soon))
            assert set(by_component()) == {"a", "b", "soon"}
            slow.commit()
        assert set(by_component()) == {"a", "b", "soon", "late"}
        assert asked[-1] == highest() - 2  # "late" is numbered highest() - 1

        # retention removed every record of "b": the next full read forgets it
        postgres_server.sql(pg_url, "DELETE FROM records WHERE data::jsonb->>'component' = 'b'")
        assert "b" in by_component()  # incremental reads keep what they saw
        groups._full_read_at = 0.0
        assert set(by_component()) == {"a", "soon", "late"}
    finally:
        reader.close()
