"""The public import paths: what users write stays importable whatever moves inside.

Two nets: the names pinned here (the package's ``__all__`` and the documented modules), and
every ``from exporter... import ...`` line of the README, the docs and the examples, imported
as written. A module moved inside the package breaks neither, a renamed public name breaks
both.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import exporter

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = {
    "Breadcrumb",
    "ConfigError",
    "ErrorAggregator",
    "ErrorMonitor",
    "ErrorMonitoringService",
    "ErrorPattern",
    "ErrorPriority",
    "ErrorRecord",
    "ErrorReport",
    "ErrorSeverity",
    "MonitorConfig",
    "ResourceSnapshot",
    "asgi_app",
    "get_error_aggregator",
    "get_error_monitor",
    "handle_errors",
    "load_config",
    "record_error",
    "reset_error_monitor",
    "wsgi_app",
}

DOCUMENTED = {
    "exporter.config": ["MonitorConfig", "ConfigError", "load_config", "validate_mapping"],
    "exporter.integrations.wsgi": ["WsgiMiddleware", "mount", "current_request_id"],
    "exporter.integrations.asgi": ["AsgiMiddleware"],
    "exporter.integrations.flask": ["instrument_flask"],
    "exporter.integrations.django": ["DjangoMiddleware"],
    "exporter.integrations.celery": ["CeleryIntegration"],
    "exporter.integrations.rq": ["RqIntegration"],
    "exporter.integrations.scope": ["WorkScope"],
    "exporter.integrations.web": ["current_request_id"],
    "exporter.multiprocess": [
        "ENV_VAR",
        "mark_process_dead",
        "multiproc_dir",
        "prepare_dir",
        "fleet_registry",
    ],
}

_IMPORT = re.compile(r"^\s*from (exporter(?:\.\w+)*) import \(?([\w, ]+)\)?\s*$", re.M)


def test_the_package_exports_exactly_its_public_names() -> None:
    assert set(exporter.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(exporter, name) is not None, name


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_every_documented_module_keeps_its_names(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in DOCUMENTED[module] if not hasattr(loaded, name)]
    assert missing == [], f"{module} lost {missing}"


def _documented_imports() -> list[tuple[str, str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "examples").glob("*.py"))
    found = []
    for path in files:
        for module, names in _IMPORT.findall(path.read_text(encoding="utf-8")):
            for name in (n.strip() for n in names.split(",")):
                if name:
                    found.append((str(path.relative_to(ROOT)), module, name.split(" as ")[0]))
    return found


def test_the_docs_show_imports_at_all() -> None:
    assert len(_documented_imports()) >= 20  # the scan below read what it should


@pytest.mark.parametrize(("where", "module", "name"), _documented_imports())
def test_every_import_the_docs_show_works(where: str, module: str, name: str) -> None:
    loaded = importlib.import_module(module)
    if not hasattr(loaded, name):  # ``from exporter.integrations import wsgi``: a submodule
        importlib.import_module(f"{module}.{name}")
