"""Configuration: arguments, YAML file, ERROR_EXPORTER_<NAME> variables, precedence, errors."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from exporter import ConfigError, ErrorMonitor, MonitorConfig, load_config
from exporter.config import (
    DEFAULT_SCRUB_KEYS,
    ENV_PREFIX,
    HOOKS_OFF,
    KNOWN_ENV_NAMES,
    OPTION_NAMES,
    OTHER_ENV_NAMES,
    from_environment,
    validate_mapping,
)

QUIET = HOOKS_OFF


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in OPTION_NAMES:
        monkeypatch.delenv("ERROR_EXPORTER_" + name.upper(), raising=False)
    monkeypatch.delenv("ERROR_EXPORTER_CONFIG", raising=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_include_every_seed_option():
    cfg = load_config(environ={})
    seed_000 = {
        "enable_terminal_output": False,
        "enable_resource_monitoring": True,
        "enable_breadcrumbs": True,
        "max_breadcrumbs": 100,
        "resource_check_interval": 1.0,
        "error_buffer_size": 1000,
        "session_timeout": 3600.0,
    }
    seed_003 = {
        "max_records": 1000,
        "pattern_threshold": 5,
        "pattern_window_minutes": 60.0,
        "export_path": None,
    }
    for name, value in {**seed_000, **seed_003}.items():
        assert getattr(cfg, name) == value, name
    assert cfg.namespace == "app"
    assert cfg.scrub_keys == list(DEFAULT_SCRUB_KEYS)
    assert cfg.pattern_window_seconds == 3600.0


def test_constructor_arguments():
    made = ErrorMonitor(max_breadcrumbs=7, app_version="1.2.3", namespace="tuner", **QUIET)
    assert made.config.max_breadcrumbs == 7
    assert made.config.app_version == "1.2.3"
    assert made.config.namespace == "tuner"
    base = MonitorConfig(max_records=10)
    derived = ErrorMonitor(base, pattern_threshold=2, **QUIET)
    assert (derived.config.max_records, derived.config.pattern_threshold) == (10, 2)
    assert base.pattern_threshold == 5  # the given config is not modified


def test_yaml_file(tmp_path):
    path = write(
        tmp_path / "monitor.yaml",
        """
max_records: 250
pattern_threshold: 3
scrub_keys: [password, vin]
severity_by_type:
  ConnectionError: critical
label_value_limits:
  component: 20
app_version: "2.0"
""",
    )
    cfg = load_config(path, environ={})
    assert cfg.max_records == 250
    assert cfg.pattern_threshold == 3
    assert cfg.scrub_keys == ["password", "vin"]
    assert cfg.severity_by_type == {"ConnectionError": "critical"}
    assert cfg.label_value_limits == {"component": 20}
    assert cfg.app_version == "2.0"


def test_yaml_file_under_a_top_level_key_and_empty_file(tmp_path):
    nested = write(tmp_path / "app.yaml", "error_exporter:\n  max_breadcrumbs: 12\n")
    assert load_config(nested, environ={}).max_breadcrumbs == 12
    empty = write(tmp_path / "empty.yaml", "")
    assert load_config(empty, environ={}) == MonitorConfig()


def test_yaml_file_from_the_environment(tmp_path):
    path = write(tmp_path / "c.yaml", "max_records: 77\n")
    cfg = load_config(environ={"ERROR_EXPORTER_CONFIG": str(path)})
    assert cfg.max_records == 77


def test_environment_variables():
    env = {
        "ERROR_EXPORTER_MAX_RECORDS": "50",
        "ERROR_EXPORTER_ENABLE_TERMINAL_OUTPUT": "true",
        "ERROR_EXPORTER_RESOURCE_CHECK_INTERVAL": "2.5",
        "ERROR_EXPORTER_SCRUB_KEYS": "[token, vin]",
        "ERROR_EXPORTER_SEVERITY_BY_COMPONENT": "{ECUControl: high}",
        "ERROR_EXPORTER_APP_VERSION": "1.10",  # stays a string, not the float 1.1
        "ERROR_EXPORTER_NAMESPACE": "tuner",
        "ERROR_EXPORTER_EXPORT_PATH": "",
        "UNRELATED": "ignored",
    }
    assert from_environment(env) == {
        "max_records": 50,
        "enable_terminal_output": True,
        "resource_check_interval": 2.5,
        "scrub_keys": ["token", "vin"],
        "severity_by_component": {"ECUControl": "high"},
        "app_version": "1.10",
        "namespace": "tuner",
        "export_path": None,
    }
    cfg = load_config(environ=env)
    assert cfg.max_records == 50
    assert cfg.app_version == "1.10"


def test_the_monitor_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("ERROR_EXPORTER_MAX_BREADCRUMBS", "9")
    monkeypatch.setenv("ERROR_EXPORTER_APP_VERSION", "9.9.9")
    monitor = ErrorMonitor(**QUIET)
    assert monitor.config.max_breadcrumbs == 9
    assert monitor.builder._environment["app_version"] == "9.9.9"


def test_precedence_defaults_yaml_environment_arguments(tmp_path):
    path = write(tmp_path / "c.yaml", "max_records: 10\npattern_threshold: 10\nqueue_size: 10\n")
    env = {"ERROR_EXPORTER_PATTERN_THRESHOLD": "20", "ERROR_EXPORTER_QUEUE_SIZE": "20"}
    cfg = load_config(path, environ=env, queue_size=30)
    assert cfg.max_records == 10  # yaml over default
    assert cfg.pattern_threshold == 20  # environment over yaml
    assert cfg.queue_size == 30  # argument over environment
    assert cfg.max_breadcrumbs == 100  # default


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("max_breadcrumbs", 0, "an integer >= 1"),
        ("max_breadcrumbs", "100", "an integer >= 1"),
        ("max_records", True, "an integer >= 1"),
        ("resource_check_interval", 0, "a number of seconds > 0"),
        ("session_timeout", -5.0, "a number of seconds > 0"),
        ("enable_breadcrumbs", "yes", "true or false"),
        ("default_severity", "urgent", "one of low, medium, high, critical"),
        ("severity_by_type", {"ValueError": "fatal"}, "a mapping of exception type name"),
        ("scrub_keys", "password", "a list of key fragments"),
        ("namespace", "my-app", "a metric name prefix"),
        ("port", 70000, "an integer from 0 to 65535"),
        ("logging_breadcrumb_level", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("max_frames", 1, "an integer >= 2"),
        ("label_value_limits", {"component": 0}, "a mapping of label name"),
        ("export_path", 42, "a directory path or null"),
    ],
)
def test_bad_values_fail_fast_naming_the_key(key, value, allowed):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, **{key: value})
    message = str(caught.value)
    assert message.startswith(f"{key}: must be ")
    assert allowed in message
    assert repr(value) in message
    with pytest.raises(ConfigError, match=f"^{key}: "):
        ErrorMonitor(**{**QUIET, key: value})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError):
        MonitorConfig(max_records=0)


def test_every_problem_is_listed():
    problems = validate_mapping({"max_records": 0, "port": -1, "bogus": 1})
    assert [p.split(":")[0] for p in problems] == ["max_records", "port", "bogus"]


def test_unknown_option_with_a_hint():
    with pytest.raises(ConfigError, match=r"max_breadcrumb: unknown option \(did you mean"):
        load_config(environ={}, max_breadcrumb=5)


def test_threshold_order_is_checked():
    with pytest.raises(ConfigError, match="plugin_unhealthy_threshold: must be >= "):
        load_config(environ={}, plugin_degraded_threshold=6, plugin_unhealthy_threshold=5)


def test_bad_environment_value_names_the_key():
    with pytest.raises(ConfigError, match=r"^max_records: must be an integer >= 1, got 'many'"):
        load_config(environ={"ERROR_EXPORTER_MAX_RECORDS": "many"})
    with pytest.raises(ConfigError, match=r"^scrub_keys: environment value"):
        load_config(environ={"ERROR_EXPORTER_SCRUB_KEYS": "[unclosed"})


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="max_records: must be an integer >= 1, got -3"):
        load_config(write(tmp_path / "a.yaml", "max_records: -3\n"), environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "b.yaml", "max_records: [1,\n"), environ={})
    with pytest.raises(ConfigError, match="must contain a mapping"):
        load_config(write(tmp_path / "c.yaml", "- a\n- b\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml", environ={})


def test_every_option_has_an_environment_variable():
    defaults = MonitorConfig()
    for field in dataclasses.fields(MonitorConfig):
        assert field.name in OPTION_NAMES
        value = getattr(defaults, field.name)
        if isinstance(value, bool) or value is None:
            continue
        raw = str(value) if not isinstance(value, (list, dict)) else repr(value)
        found = from_environment({"ERROR_EXPORTER_" + field.name.upper(): raw})
        assert found[field.name] == value, field.name


# -- issue 19: a mistyped name, an empty token say what is wrong, at once -------------------
# Typo'd variable names are built from ENV_PREFIX so the scan below does not take them for
# variables the project reads.


def env_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "exporter"
        and r.levelno == logging.WARNING
        and "environment variable" in r.getMessage()
    ]


def test_a_mistyped_environment_variable_is_warned_with_the_real_name(caplog):
    typo = ENV_PREFIX + "MAX_BREADCRUMB"
    with caplog.at_level(logging.WARNING, logger="exporter"):
        cfg = load_config(environ={typo: "5"})
    assert cfg.max_breadcrumbs == 100  # still ignored: only a warning
    [message] = env_warnings(caplog)
    assert typo in message and "did you mean ERROR_EXPORTER_MAX_BREADCRUMBS?" in message


def test_the_warning_comes_once_per_process_per_variable(caplog, monkeypatch):
    """Every monitor of a process reads the same environment: one line says it."""
    typo, other = ENV_PREFIX + "PATERN_THRESHOLD", ENV_PREFIX + "QUEUE_SIZES"
    monkeypatch.setenv(typo, "3")
    with caplog.at_level(logging.WARNING, logger="exporter"):
        ErrorMonitor(**QUIET)
        ErrorMonitor(**QUIET)
        load_config(environ={typo: "3", other: "1"})
    warned = env_warnings(caplog)
    assert len(warned) == 2, warned
    assert "did you mean ERROR_EXPORTER_PATTERN_THRESHOLD?" in warned[0]
    assert "did you mean ERROR_EXPORTER_QUEUE_SIZE?" in warned[1]


def test_a_variable_far_from_every_name_is_warned_without_a_guess(caplog):
    with caplog.at_level(logging.WARNING, logger="exporter"):
        from_environment({ENV_PREFIX + "ZZZ": "1"})
    [message] = env_warnings(caplog)
    assert "did you mean" not in message


def test_variables_read_elsewhere_are_not_warned_about(caplog):
    environ = {name: "x" for name in OTHER_ENV_NAMES}
    for name in (
        "ERROR_EXPORTER_STORE_URL",
        "ERROR_EXPORTER_WEB_CONFIG_FILE",
        "ERROR_EXPORTER_URL",
        "ERROR_EXPORTER_CONFIG",
    ):
        assert name in environ
    environ.update({ENV_PREFIX + n.upper(): "" for n in ("app_version", "export_path")})
    environ["NOT_OURS_MAX_BREADCRUMB"] = "1"
    with caplog.at_level(logging.WARNING, logger="exporter"):
        from_environment(environ)
    assert env_warnings(caplog) == []


def test_every_variable_the_project_reads_is_known():
    """The known list stays complete: any ERROR_EXPORTER_* name written in the package, the
    tests, the docs or the Makefile is an option's variable or listed in OTHER_ENV_NAMES."""
    root = Path(__file__).resolve().parents[2]
    texts = [root / "README.md", root / "Makefile"]
    for folder in ("exporter", "tests", "docs", "examples", "deploy"):
        texts += [
            p
            for p in (root / folder).rglob("*")
            if p.suffix in (".py", ".md", ".yml", ".yaml", ".sh")
        ]
    named = set()
    for path in texts:
        text = path.read_text("utf-8")
        # the README's example of the warning shows a mistyped name: not one that is read
        text = re.sub(r"ERROR_EXPORTER_\w+ \.\.\. \(did\s+you\s+mean", "", text)
        named |= set(re.findall(r"\bERROR_EXPORTER_[A-Z][A-Z0-9_]*", text))
    assert len(named) > 20
    assert named - KNOWN_ENV_NAMES == set()


def test_a_mistyped_yaml_key_names_the_file_and_the_real_option(tmp_path):
    path = write(tmp_path / "monitor.yaml", "max_breadcrumb: 5\npatern_threshold: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (
        f"{path}: max_breadcrumb: unknown option (did you mean max_breadcrumbs?); "
        f"{path}: patern_threshold: unknown option (did you mean pattern_threshold?)"
    )
    assert validate_mapping({"patern_threshold": 2}) == [  # check-config's rules: the same
        "patern_threshold: unknown option (did you mean pattern_threshold?)"
    ]


def test_a_mistyped_argument_beside_a_config_is_a_config_error():
    """``ErrorMonitor(config, typo=...)`` used to be dataclasses.replace's TypeError."""
    with pytest.raises(
        ConfigError,
        match=r"^max_breadcrumb: unknown option \(did you mean "
        r"max_breadcrumbs\?\)$",
    ):
        ErrorMonitor(MonitorConfig(), max_breadcrumb=5, **QUIET)
    with pytest.raises(ConfigError, match=r"^max_breadcrumb: .*\(did you mean max_breadcrumbs"):
        ErrorMonitor(max_breadcrumb=5, **QUIET)


@pytest.mark.parametrize("token", ["", "   ", "\t\n"])
def test_an_empty_api_token_is_refused_from_every_source(tmp_path, token):
    """An empty token is a variable that came out empty, not a wish for an open API."""
    with pytest.raises(ConfigError, match=r"^api_token: must be a non-empty string"):
        ErrorMonitor(api_token=token, **QUIET)
    with pytest.raises(ConfigError, match=r"^api_token: "):
        load_config(environ={ENV_PREFIX + "API_TOKEN": token})
    path = write(tmp_path / "c.yaml", f"api_token: {token!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=r"api_token: must be a non-empty string"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"^api_token: "):
        MonitorConfig(api_token=token)


def test_a_refused_token_is_never_echoed(tmp_path):
    path = write(tmp_path / "c.yaml", "api_token: 918273645\n")  # a number, not a string
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "918273645" not in str(caught.value)
    assert "api_token: must be a non-empty string or null" in str(caught.value)


def test_no_token_is_still_null():
    assert load_config(environ={}).api_token is None
    assert MonitorConfig(api_token=None).api_token is None
    assert load_config(environ={ENV_PREFIX + "API_TOKEN": "s3cret"}).api_token == "s3cret"
