"""Settings: one dataclass, loaded from arguments, a YAML file and the environment.

Every option has a default, a validator and an environment variable
(``ERROR_EXPORTER_<NAME>``). A bad value fails fast with a message that names the key
and what is allowed, because a monitor that silently ignores its configuration is worse
than none.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .dsn import check_url, is_postgres, sqlite_path

ENV_PREFIX = "ERROR_EXPORTER_"
DEFAULT_PORT = 9718
SEVERITIES = ("low", "medium", "high", "critical")

DEFAULT_SCRUB_KEYS = (
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "auth",
    "credential",
    "credentials",
    "cookie",
    "set-cookie",
    "session",
    "sessionid",
    "private_key",
    "jwt",
    "dsn",
    "csrf",
    "xsrf",
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


@dataclass
class MonitorConfig:
    """All options of the monitor. See the README's configuration reference."""

    # ErrorMonitoringService's options
    enable_terminal_output: bool = False
    enable_resource_monitoring: bool = True
    enable_breadcrumbs: bool = True
    max_breadcrumbs: int = 100
    resource_check_interval: float = 1.0
    error_buffer_size: int = 1000
    session_timeout: float = 3600.0
    # ErrorAggregator's options
    max_records: int = 1000
    pattern_threshold: int = 5
    pattern_window_minutes: float = 60.0
    export_path: str | None = None
    # capture
    capture_sys_excepthook: bool = True
    capture_threading: bool = True
    capture_asyncio: bool = True
    capture_logging: bool = True
    capture_log_messages: bool = True
    logging_breadcrumb_level: str = "INFO"
    capture_locals: bool = False
    capture_trace_context: bool = True
    trace_url_template: str | None = None
    in_app_include: list[str] = field(default_factory=list)
    in_app_exclude: list[str] = field(default_factory=list)
    app_version: str | None = None
    # limits
    queue_size: int = 10000
    callback_queue_size: int = 1000
    max_frames: int = 100
    max_chain_depth: int = 10
    max_message_length: int = 8192
    max_string_length: int = 2048
    max_context_depth: int = 6
    max_context_items: int = 100
    max_export_files: int = 20
    max_patterns: int = 1000
    max_users_per_group: int = 1000
    occurrences_per_group: int = 10
    occurrence_budget_per_second: int = 100
    backlog_coalescing: bool = True  # behind a queue backlog, known groups' repeats: counted
    label_value_limit: int = 100
    label_value_limits: dict[str, int] = field(default_factory=dict)
    exit_flush_timeout: float = 2.0
    plugin_health_window: float = 300.0
    plugin_degraded_threshold: int = 1
    plugin_unhealthy_threshold: int = 5
    # durable store of one process (exporter/durable/): unset = memory only
    store_path: str | None = None
    # the shared store (exporter/durable/postgres.py): postgresql://... (or sqlite:///path,
    # the same as store_path); never in reprs or logs (it may hold a password)
    store_url: str | None = field(default=None, repr=False)
    # whose groups these are in a shared store (part of every key); unset: the namespace
    app_name: str | None = None
    store_retention_seconds: float = 7 * 86400.0
    store_max_records: int = 100000
    # classification
    default_severity: str = "medium"
    severity_by_type: dict[str, str] = field(default_factory=dict)
    severity_by_component: dict[str, str] = field(default_factory=dict)
    # scrubbing
    scrub_enabled: bool = True
    scrub_keys: list[str] = field(default_factory=lambda: list(DEFAULT_SCRUB_KEYS))
    # metrics
    namespace: str = "app"
    enable_created_series: bool = False
    # http
    serve: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_token: str | None = field(default=None, repr=False)  # never in reprs or logs
    protect_metrics: bool = False

    def __post_init__(self) -> None:
        problems = validate_mapping(dataclasses.asdict(self))
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def pattern_window_seconds(self) -> float:
        return self.pattern_window_minutes * 60.0

    @property
    def store_app(self) -> str:
        """The app a shared store files this monitor's groups under."""
        return self.app_name or self.namespace or "app"

    @property
    def store_file(self) -> str | None:
        """The SQLite file of ``store_path`` or of a ``sqlite:///`` ``store_url``."""
        if self.store_path is not None:
            return self.store_path
        if self.store_url is not None and check_url(self.store_url) is None \
                and not is_postgres(self.store_url):
            return sqlite_path(self.store_url)
        return None

    def replace(self, **changes: Any) -> MonitorConfig:
        return dataclasses.replace(self, **changes)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _int_at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n


def _number_above(n: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > n


def _optional_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _severity_map(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and s in SEVERITIES for k, s in v.items()
    )


def _limits_map(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and _int_at_least(1)(n) for k, n in v.items()
    )


def _port(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535


def _namespace(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    return v == "" or (v.replace("_", "a").isalnum() and v.isascii() and not v[0].isdigit())


def _trace_url_template(v: Any) -> bool:
    return v is None or (isinstance(v, str) and "{trace_id}" in v)


def _log_level(v: Any) -> bool:
    return isinstance(v, str) and v.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


_BOOL = (_is_bool, "true or false")
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_breadcrumbs": (_int_at_least(1), "an integer >= 1"),
    "resource_check_interval": (_number_above(0), "a number of seconds > 0"),
    "error_buffer_size": (_int_at_least(1), "an integer >= 1"),
    "session_timeout": (_number_above(0), "a number of seconds > 0"),
    "max_records": (_int_at_least(1), "an integer >= 1"),
    "pattern_threshold": (_int_at_least(1), "an integer >= 1"),
    "pattern_window_minutes": (_number_above(0), "a number of minutes > 0"),
    "export_path": (_optional_str, "a directory path or null"),
    "logging_breadcrumb_level": (_log_level, "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    "in_app_include": (_str_list, "a list of module prefixes"),
    "in_app_exclude": (_str_list, "a list of module prefixes"),
    "app_version": (_optional_str, "a string or null"),
    "trace_url_template": (_trace_url_template,
                           "null or a URL containing {trace_id} (and optionally {span_id})"),
    "queue_size": (_int_at_least(1), "an integer >= 1"),
    "callback_queue_size": (_int_at_least(1), "an integer >= 1"),
    "max_frames": (_int_at_least(2), "an integer >= 2"),
    "max_chain_depth": (_int_at_least(1), "an integer >= 1"),
    "max_message_length": (_int_at_least(16), "an integer >= 16"),
    "max_string_length": (_int_at_least(16), "an integer >= 16"),
    "max_context_depth": (_int_at_least(1), "an integer >= 1"),
    "max_context_items": (_int_at_least(1), "an integer >= 1"),
    "max_export_files": (_int_at_least(1), "an integer >= 1"),
    "max_patterns": (_int_at_least(1), "an integer >= 1"),
    "max_users_per_group": (_int_at_least(1), "an integer >= 1"),
    "occurrences_per_group": (_int_at_least(1), "an integer >= 1"),
    "occurrence_budget_per_second": (_int_at_least(1), "an integer >= 1"),
    "backlog_coalescing": _BOOL,
    "label_value_limit": (_int_at_least(1), "an integer >= 1"),
    "label_value_limits": (_limits_map, "a mapping of label name to an integer >= 1"),
    "exit_flush_timeout": (_number_above(-1e-9), "a number of seconds >= 0"),
    "plugin_health_window": (_number_above(0), "a number of seconds > 0"),
    "plugin_degraded_threshold": (_int_at_least(1), "an integer >= 1"),
    "plugin_unhealthy_threshold": (_int_at_least(1), "an integer >= 1"),
    "store_path": (lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
                   "a file path (its directory must exist) or null"),
    "store_url": (lambda v: v is None or (isinstance(v, str) and check_url(v) is None),
                  "a postgresql:// or sqlite:/// URL, or null"),
    "app_name": (lambda v: v is None or (isinstance(v, str) and 0 < len(v.strip()) <= 200),
                 "a non-empty name (at most 200 characters) or null"),
    "store_retention_seconds": (_number_above(0), "a number of seconds > 0"),
    "store_max_records": (_int_at_least(1), "an integer >= 1"),
    "default_severity": (lambda v: v in SEVERITIES, "one of " + ", ".join(SEVERITIES)),
    "severity_by_type": (_severity_map, "a mapping of exception type name to a severity ("
                         + ", ".join(SEVERITIES) + ")"),
    "severity_by_component": (_severity_map, "a mapping of component to a severity ("
                              + ", ".join(SEVERITIES) + ")"),
    "scrub_keys": (_str_list, "a list of key fragments"),
    "namespace": (_namespace, "a metric name prefix: letters, digits and _"),
    "host": (lambda v: isinstance(v, str) and v != "", "a host name or IP address"),
    "port": (_port, "an integer from 0 to 65535"),
    "api_token": (_optional_str, "a string or null"),
}
_FIELD_TYPES = {f.name: f.type for f in fields(MonitorConfig)}
for _name, _type in _FIELD_TYPES.items():
    if _type == "bool":
        _RULES.setdefault(_name, _BOOL)
assert set(_RULES) == set(_FIELD_TYPES), set(_FIELD_TYPES) ^ set(_RULES)

OPTION_NAMES: tuple[str, ...] = tuple(_FIELD_TYPES)


def validate_mapping(data: Mapping[str, Any]) -> list[str]:
    """Every problem with a settings mapping, each naming its key. Empty when valid."""
    if not isinstance(data, Mapping):
        return [f"configuration must be a mapping of option: value, got {type(data).__name__}"]
    problems = []
    for key, value in data.items():
        rule = _RULES.get(str(key))
        if rule is None:
            close = [n for n in OPTION_NAMES if n.split("_")[0] == str(key).split("_")[0]]
            hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
            problems.append(f"{key}: unknown option{hint}")
            continue
        check, allowed = rule
        if key == "store_url" and isinstance(value, str) and check_url(value) is not None:
            problems.append(f"{key}: {check_url(value)}")  # never the URL: a password
            continue
        if not check(value):
            problems.append(f"{key}: must be {allowed}, got {value!r}")
    if not problems:
        degraded = data.get("plugin_degraded_threshold", 1)
        unhealthy = data.get("plugin_unhealthy_threshold", 5)
        if degraded > unhealthy:
            problems.append(
                "plugin_unhealthy_threshold: must be >= plugin_degraded_threshold "
                f"({unhealthy} < {degraded})"
            )
    return problems


def _parse_env_value(name: str, raw: str) -> Any:
    """Environment values are strings; read them as YAML scalars of the option's type."""
    type_name = _FIELD_TYPES[name]
    if type_name in ("str", "str | None"):
        return None if raw == "" and "None" in type_name else raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: environment value {raw!r} is not valid ({exc})") from None


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Options set as ``ERROR_EXPORTER_<NAME>`` variables."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in OPTION_NAMES:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            found[name] = _parse_env_value(name, raw)
    return found


def _yaml_problem(path: str | Path, exc: yaml.YAMLError) -> str:
    """'FILE, line L, column C: not valid YAML: what (while what, from line L)'."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return f"{path}: not valid YAML ({exc})"
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        problem += f" ({context} from line {start.line + 1})"
    elif context:
        problem += f" ({context})"
    return f"{where}: not valid YAML: {problem}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Options from a YAML file (a mapping, optionally under a top-level ``error_exporter`` key)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    if data is None:
        return {}
    if isinstance(data, dict) and set(data) == {"error_exporter"}:
        data = data["error_exporter"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must contain a mapping of option: value")
    return data


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> MonitorConfig:
    """Defaults < YAML file < environment < keyword arguments."""
    merged: dict[str, Any] = {}
    if path is None:
        env_path = (os.environ if environ is None else environ).get(ENV_PREFIX + "CONFIG")
        path = env_path or None
    if path is not None:
        merged.update(read_yaml(path))
    merged.update(from_environment(environ))
    merged.update(overrides)
    problems = validate_mapping(merged)
    if problems:
        raise ConfigError("; ".join(problems))
    return MonitorConfig(**merged)
