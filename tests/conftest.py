"""Shared fixtures: a fresh monitor per test, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.app_process import apps  # noqa: F401 (a fixture: app processes writing one shared store)

from exporter import ErrorMonitor, reset_error_monitor
from exporter.config import HOOKS_OFF

# Other projects' own tests, run by tests/scenarios/test_third_party_suites.py in their own pytest
# process with their own conftest; never collected as part of this suite.
collect_ignore = ["third_party"]

QUIET = HOOKS_OFF


@pytest.fixture
def make_monitor() -> Iterator:
    """Factory for started monitors (hooks off unless asked); all stopped at teardown."""
    made: list[ErrorMonitor] = []

    def factory(**options: object) -> ErrorMonitor:
        settings = {**QUIET, **options}
        monitor = ErrorMonitor(**settings)
        monitor.start()
        made.append(monitor)
        return monitor

    yield factory
    for monitor in made:
        monitor.stop(timeout=2.0)


@pytest.fixture
def monitor(make_monitor):
    return make_monitor()


@pytest.fixture(autouse=True)
def _reset_global_monitor() -> Iterator[None]:
    yield
    reset_error_monitor()
    import exporter.compat as compat

    compat._aggregator = None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A contract test whose ``store`` fixture already ran it in a child process (the
    multiprocess backend: tests/scenarios/test_store_contract.py) is not run again here."""
    store = pyfuncitem.funcargs.get("store")
    if getattr(store, "ran_in_child", False):
        return True
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator:
    """A real PostgreSQL (tests/support/postgres.py), started once for the whole run."""
    from support.postgres import start_server, stop_server

    server = start_server()
    yield server
    stop_server(server)


@pytest.fixture
def pg_url(postgres_server) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    return str(postgres_server.new_database())
