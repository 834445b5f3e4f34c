"""The shape of the package, checked: one way data flows, one read interface with two
backends, one table of scrape-time families, hooks behind a registry."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from support.imports import cycles, import_graph

from exporter import ErrorMonitor
from exporter.cli import watch
from exporter.config import HOOKS_OFF
from exporter.integrations import BUILT_IN, Hub, enabled_integrations
from exporter.metrics.collectors import StateCollector
from exporter.metrics.families import FAMILIES, RESOURCES, STATE, metric_name
from exporter.multiprocess.publisher import Publisher
from exporter.multiprocess.view import SharedView
from exporter.store.local_view import LocalView
from exporter.store.read_protocol import ErrorReader

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"
QUIET = HOOKS_OFF


def test_no_import_circles_in_the_package():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50  # the whole package was read
    assert cycles(graph) == []


def test_hooks_collectors_and_backends_do_not_import_the_monitor():
    graph = import_graph(PACKAGE)
    downstream = [
        m
        for m in graph
        if m.startswith(("exporter.integrations", "exporter.multiprocess", "exporter.http"))
    ]
    downstream += [
        "exporter.metrics.collectors",
        "exporter.pipeline.ingest",
        "exporter.store.local_view",
        "exporter.capture.front",
        "exporter.metrics.families",
        "exporter.store.memory",
    ]
    assert [m for m in downstream if "exporter.monitor" in graph[m]] == []


def _members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")} | set(
        getattr(protocol, "__annotations__", {})
    )


@pytest.mark.parametrize("backend", [LocalView, SharedView])
def test_both_backends_implement_the_read_interface(backend: type):
    for name in _members(ErrorReader):
        assert hasattr(backend, name) or name in _instance_attributes(backend), name
        wanted = getattr(ErrorReader, name, None)
        if inspect.isfunction(wanted):
            have = inspect.signature(getattr(backend, name))
            assert list(inspect.signature(wanted).parameters) == list(have.parameters), name


def _instance_attributes(backend: type) -> set[str]:
    source = inspect.getsource(backend.__init__)  # type: ignore[misc]
    return set(re.findall(r"self\.(\w+)\s*[:=]", source))


def test_the_monitor_reads_through_the_backend_it_chose():
    monitor = ErrorMonitor(**QUIET)
    assert isinstance(monitor.view, LocalView)
    assert monitor.shared is None
    for name in ("get_statistics", "list_groups", "get_group", "export_data"):
        assert getattr(type(monitor), name).__qualname__.startswith("ReadThroughView.")


def test_the_collector_exposes_exactly_the_table():
    monitor = ErrorMonitor(**{**QUIET, "enable_resource_monitoring": True})
    monitor.resources.sample()
    names = {metric.name for metric in StateCollector(monitor).collect()}
    expected = {metric_name("app", f.name) for f in FAMILIES} | {"app_monitor"}
    assert names == expected


def test_the_publisher_writes_the_published_part_of_the_table():
    monitor = ErrorMonitor(**QUIET)
    publisher = Publisher.__new__(Publisher)  # only the families it would create
    Publisher.__init__(publisher, monitor, shared=None)  # type: ignore[arg-type]
    assert set(publisher.gauges) == {f.name for f in FAMILIES if f.published} - {"sessions"}
    modes = {f.name: f.mode for f in FAMILIES if f.name in publisher.gauges}
    assert {n: g._multiprocess_mode for n, g in publisher.gauges.items()} == modes


def test_watch_shows_the_resource_families_of_the_table():
    assert [name for name, _, _ in watch._RESOURCE_METRICS] == [
        f.name for f in RESOURCES if f.label
    ]
    assert {f.name for f in STATE}.isdisjoint(name for name, _, _ in watch._RESOURCE_METRICS)


def test_built_in_hooks_come_from_one_registry_and_apps_add_their_own():
    class TaskHook:
        installed: list[Hub] = []

        def install(self, hub: Hub) -> None:
            self.installed.append(hub)

        def uninstall(self) -> None:
            self.installed.remove(self.installed[-1])

    config = ErrorMonitor(**QUIET).config
    assert [type(i).__name__ for i in enabled_integrations(config)] == []
    flags = [flag for flag, _ in BUILT_IN]
    assert flags == [
        "capture_sys_excepthook",
        "capture_threading",
        "capture_logging",
        "capture_celery",
        "capture_rq",
    ]
    monitor = ErrorMonitor(integrations=[TaskHook()], **QUIET)
    monitor.start()
    try:
        assert TaskHook.installed == [monitor]
    finally:
        monitor.stop()
    assert TaskHook.installed == []


def test_a_task_queue_hook_reuses_the_unit_of_work_scope(make_monitor):
    from exporter.integrations.scope import WorkScope

    monitor = make_monitor()
    with (
        pytest.raises(ValueError),
        WorkScope(
            monitor,
            component="worker",
            operation="task resize",
            breadcrumb="task resize",
            describe=lambda: {"task_id": "t-1"},
            mechanism="tasks",
        ),
    ):
        raise ValueError("image too large")
    assert monitor.flush(10)
    [group] = monitor.list_groups()
    report = monitor.get_group(group["error_id"])["report"]
    assert report["mechanism"] == "tasks" and report["handled"] is False
    assert report["context"] == {"task_id": "t-1"}
    assert [c["action"] for c in report["breadcrumbs"]] == ["task resize"]
    assert monitor.get_statistics()["sessions"]["ended"]["crashed"] == 1


def test_no_seed_wording_in_the_code():
    hits = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bseed (000|003)\b|\bthe seed\b", line, re.IGNORECASE):
                hits.append(f"{path.name}:{number}: {line.strip()}")
    assert hits == []


def test_the_top_level_stays_small():
    """The top level holds what every stage shares; the rest lives in the folder of the
    path an error takes (capture/, pipeline/, store/, metrics/, http/, integrations/)."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 16, modules
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} >= {
        "capture",
        "pipeline",
        "store",
        "metrics",
        "http",
        "integrations",
        "multiprocess",
        "cli",
    }


def test_no_two_modules_or_classes_share_a_name():
    """A file listing explains itself: one name, one thing."""
    import ast
    from collections import defaultdict

    modules: dict[str, list[str]] = defaultdict(list)
    classes: dict[str, list[str]] = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        where = str(path.relative_to(PACKAGE))
        if path.name not in ("__init__.py", "__main__.py"):
            modules[path.stem].append(where)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                classes[node.name].append(where)
    assert {k: v for k, v in modules.items() if len(v) > 1} == {}
    assert {k: v for k, v in classes.items() if len(v) > 1} == {}


def test_the_whole_package_is_typed_strictly():
    """``make lint`` runs mypy with this configuration: strict, on every module, no
    per-module exceptions."""
    text = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    mypy = text.split("[tool.mypy]", 1)[1].split("\n[", 1)[0]
    assert "strict = true" in mypy and 'packages = ["exporter"]' in mypy
    assert "[[tool.mypy.overrides]]" not in text
