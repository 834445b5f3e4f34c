"""export_to_file: atomic, private (0600), JSON-safe for any context; auto-export on patterns."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import math
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import DEFAULT_SCRUB_KEYS, HOOKS_OFF
from exporter.model import json_text
from exporter.scrub import Scrubber
from exporter.store.json_export import write_atomic


def fail(monitor: Any, kind: type[Exception] = ValueError, **kwargs: Any) -> str:
    try:
        raise kind("export me")
    except kind as exc:
        error_id = monitor.record_error(exc, **kwargs)
        assert error_id is not None
        return error_id


def strict_json(text: str) -> Any:
    """Standard JSON only: NaN / Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_export_to_file_shape_and_permissions(monitor, tmp_path):
    fail(monitor, component="ECUControl", plugin="weather", context={"attempt": 2})
    target = tmp_path / "nested" / "dir" / "errors.json"
    written = monitor.export_to_file(target)
    assert Path(written) == target
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    data = strict_json(target.read_text(encoding="utf-8"))
    assert {"exported_at", "summary", "all_records"} <= set(data)
    dt.datetime.fromisoformat(data["exported_at"])
    assert data["summary"]["total_errors"] == 1
    [record] = data["all_records"]
    assert record["context"] == {"attempt": 2}
    assert record["plugin_id"] == "weather"
    assert data["statistics"]["total_errors"] == 1
    assert leftovers(target.parent) == []


def test_export_replaces_atomically(monitor, tmp_path):
    target = tmp_path / "errors.json"
    target.write_text("old content")
    os.chmod(target, 0o644)
    old_inode = os.stat(target).st_ino
    fail(monitor)
    monitor.export_to_file(target)
    assert os.stat(target).st_ino != old_inode  # a new file renamed over the old one
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert strict_json(target.read_text())["summary"]["total_errors"] == 1
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "errors.json"
    target.write_text('{"previous": true}')

    def chunks():
        yield '{"partial": '
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, chunks())
    assert target.read_text() == '{"previous": true}'
    assert leftovers(tmp_path) == []


def test_export_to_an_unwritable_target_raises_oserror(monitor, tmp_path):
    fail(monitor)
    with pytest.raises(OSError):
        monitor.export_to_file(tmp_path)  # a directory cannot be replaced by a file
    assert leftovers(tmp_path) == []


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def nasty_context() -> dict[Any, Any]:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    items: list[Any] = [1]
    items.append(items)
    return {
        "object": object(),
        "unprintable": Unprintable(),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a"}),
        "tuple": (1, "two", None),
        "bytes": b"\x00\xff raw",
        "bytearray": bytearray(b"abc"),
        "nan": math.nan,
        "inf": -math.inf,
        "huge": 10**100,
        "decimal": decimal.Decimal("1.10"),
        "datetime": dt.datetime(2024, 12, 1, 12, 30),
        "uuid": uuid.UUID(int=1),
        "path": Path("/tmp/tune.json"),
        "cycle": cyclic,
        "list_cycle": items,
        "generator": (i for i in range(3)),
        "function": lambda: None,
        "exception": ValueError("nested"),
        ("tuple", "key"): "non-string key",
        None: "none key",
        42: "int key",
        "surrogate": "bad \udcff text",
        "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": "bottom"}}}}}}}},
    }


def test_any_context_value_exports_as_json(monitor, tmp_path):
    fail(monitor, context=nasty_context(), metadata={"meta": Unprintable(), 1.5: {2, 3}})
    target = monitor.export_to_file(tmp_path / "nasty.json")
    data = strict_json(Path(target).read_text(encoding="utf-8"))
    context = data["all_records"][0]["context"]
    assert context["nan"] == "nan"
    assert context["inf"] == "-inf"
    assert context["huge"] == str(10**100)
    assert sorted(context["set"]) == [1, 2, 3]
    assert context["tuple"] == [1, "two", None]
    assert context["cycle"]["self"] == "[cycle]"
    assert context["list_cycle"][1] == "[cycle]"
    assert context["unprintable"] == "<unrepresentable Unprintable>"
    assert context["None"] == "none key"
    assert context["42"] == "int key"
    assert context["('tuple', 'key')"] == "non-string key"
    assert context["deep"]["a"]["b"]["c"]["d"]["e"] == "[max depth]"
    group = monitor.get_group(data["all_records"][0]["error_id"])
    json.dumps(group)  # the API shape is JSON-safe too


json_keys = st.one_of(st.text(max_size=20), st.integers(), st.none(), st.booleans())
anything = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.binary(),
        st.datetimes(),
        st.decimals(),
        st.uuids(),
        st.complex_numbers(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.frozensets(st.integers(), max_size=5),
        st.dictionaries(json_keys, inner, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=anything)
def test_scrubbed_values_are_always_strict_json(value):
    scrubber = Scrubber(DEFAULT_SCRUB_KEYS)
    cleaned = scrubber.clean({"context": value})
    text = json_text(cleaned, indent=2, ascii_only=False)
    assert strict_json(text) == cleaned


def test_export_filters(monitor, tmp_path):
    fail(monitor, ValueError, component="ECU")
    fail(monitor, MemoryError, component="CAN")
    fail(monitor, MemoryError, component="ECU")
    target = monitor.export_to_file(tmp_path / "f.json", severity="critical", component="ECU")
    data = strict_json(Path(target).read_text())
    assert [(r["error_type"], r["component"]) for r in data["all_records"]] == [
        ("MemoryError", "ECU")
    ]
    assert data["summary"]["total_errors"] == 3  # the summary is not filtered

    page = monitor.export_data(limit=2)
    assert len(page["all_records"]) == 2
    rest = monitor.export_data(cursor=page["next_cursor"])
    assert [r["error_type"] for r in rest["all_records"]] == ["MemoryError"]
    assert rest["next_cursor"] is None


# -- auto-export ------------------------------------------------------------------------------


def auto_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("errors_*.json"))


def test_auto_export_on_pattern_with_a_bound_on_files(make_monitor, tmp_path):
    monitor = make_monitor(export_path=str(tmp_path), pattern_threshold=2, max_export_files=3)
    kinds = [type(f"Fault{i}", (Exception,), {}) for i in range(6)]
    fail(monitor, kinds[0])
    assert monitor.flush()
    assert monitor._callbacks.flush(10)
    assert auto_files(tmp_path) == []  # below the threshold: no pattern, no export
    for kind in kinds:
        fail(monitor, kind)
        fail(monitor, kind)
        assert monitor.flush()
        assert monitor._callbacks.flush(10)
    files = auto_files(tmp_path)
    assert len(files) == 3
    latest = strict_json(files[-1].read_text())
    assert "Fault5" in latest["summary"]["active_patterns"]
    assert latest["summary"]["total_errors"] == 13
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert leftovers(tmp_path) == []


def test_no_auto_export_without_export_path(monitor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(10):
        fail(monitor)
    monitor.flush()
    assert monitor._callbacks.flush(10)
    assert list(tmp_path.iterdir()) == []


def test_failed_auto_export_is_counted_not_raised(make_monitor, tmp_path, caplog):
    """A directory that was fine at construction and is a file by the first pattern."""
    blocker = tmp_path / "not-a-dir"
    blocker.mkdir()
    monitor = make_monitor(export_path=str(blocker), pattern_threshold=2)
    blocker.rmdir()
    blocker.write_text("a file where the export directory should be")
    with caplog.at_level(logging.WARNING, logger="exporter"):
        fail(monitor)
        fail(monitor)
        assert monitor.flush()
        assert monitor._callbacks.flush(10)
    assert (
        monitor.registry.get_sample_value(
            "app_error_reports_dropped_total", {"reason": "export_failed"}
        )
        == 1
    )
    assert monitor.get_statistics()["total_errors"] == 2
    [warning] = [r.getMessage() for r in caplog.records if "auto-export" in r.getMessage()]
    assert f"cannot write export to {blocker}/errors_" in warning, warning
    assert f"{blocker} is not a directory" in warning and ".tmp" not in warning


# -- issue 19: an export path that cannot work says so, naming what the user named ----------

QUIET = HOOKS_OFF
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self").is_dir(), reason="needs Linux's /proc")


def blocked_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """export_path values no auto-export could use, with the reason the error must give."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = {
        "a file": (a_file, f"{a_file} is not a directory"),
        "under a file": (a_file / "exports", f"{a_file} is not a directory"),
    }
    if (PROC / "self").is_dir():
        cases["/proc"] = (PROC, "the directory /proc does not accept new files")
        cases["under /proc"] = (
            PROC / "exports",
            "cannot create the directory /proc/exports: "
            "the directory /proc does not accept new files",
        )
    if os.geteuid() != 0:  # root writes anywhere: no read-only directory for it
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        cases["read-only"] = (locked, f"no permission to create files in {locked}")
    return cases


def test_an_unusable_export_path_is_a_config_error_at_construction(tmp_path, monkeypatch):
    """Like store_path: refused when the monitor is built, not a counted drop hours later."""
    from exporter import ConfigError, ErrorMonitor

    for name, (path, reason) in blocked_paths(tmp_path).items():
        with pytest.raises(ConfigError) as caught:
            ErrorMonitor(export_path=str(path), **QUIET)
        message = str(caught.value)
        assert message.startswith(f"export_path: auto-exports cannot be written to {path}: "), (
            name,
            message,
        )
        assert reason in message, (name, message)
        monkeypatch.setenv("ERROR_EXPORTER_EXPORT_PATH", str(path))
        with pytest.raises(ConfigError, match=r"^export_path: "):
            ErrorMonitor(**QUIET)
        monkeypatch.delenv("ERROR_EXPORTER_EXPORT_PATH")


def test_a_missing_export_directory_that_can_be_made_is_accepted_untouched(make_monitor, tmp_path):
    """The first auto-export creates it (as the aggregator did); the check leaves no trace."""
    before = sorted(tmp_path.iterdir())
    make_monitor(export_path=str(tmp_path / "new" / "exports"))
    make_monitor(export_path=str(tmp_path))
    assert sorted(tmp_path.iterdir()) == before  # no probe file left, nothing created


def test_export_to_file_names_the_file_asked_for_and_the_cause(monitor, tmp_path):
    from exporter.store.json_export import ExportWriteError

    fail(monitor)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = {
        tmp_path: f"{tmp_path} is a directory; name a file in it",
        a_file / "x.json": f"{a_file} is not a directory",
    }
    if (PROC / "self").is_dir():
        cases[PROC / "x.json"] = (
            "the directory /proc does not accept new files (No such file or directory)"
        )
    for target, reason in cases.items():
        with pytest.raises(OSError) as caught:
            monitor.export_to_file(target)
        assert isinstance(caught.value, ExportWriteError), caught.value
        assert ".tmp" not in str(caught.value)
        assert str(caught.value).startswith(f"cannot write export to {target}: {reason}")
        assert caught.value.filename == str(target)
    missing = tmp_path / "missing" / "x.json"
    with pytest.raises(
        FileNotFoundError,
        match=f"^cannot write export to {missing}: the directory {missing.parent} does not exist$",
    ):
        write_atomic(missing, "{}", make_parents=False)  # the CLI's -o: no new directories
    assert leftovers(tmp_path) == []


@needs_proc
def test_the_cli_export_of_a_store_names_the_file_and_the_cause(make_monitor, tmp_path):
    import subprocess
    import sys

    store = tmp_path / "errors.sqlite"
    monitor = make_monitor(store_path=str(store))
    fail(monitor)
    assert monitor.flush()
    monitor.stop()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ERROR_EXPORTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "export", "--store", str(store), "-o", "/proc/x.json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 1, done.stderr
    assert (
        "error: cannot write /proc/x.json: the directory /proc does not accept new files "
        "(No such file or directory)"
    ) in done.stderr
    assert ".tmp" not in done.stderr and "Traceback" not in done.stderr
