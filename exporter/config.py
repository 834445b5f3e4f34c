"""Settings: one dataclass, loaded from arguments, a YAML file and the environment.

Every option has a default, a validator and an environment variable
(``ERROR_EXPORTER_<NAME>``). A bad value fails fast with a message that names the key
and what is allowed, because a monitor that silently ignores its configuration is worse
than none. For the same reason a mistyped name says so at once: an unknown argument or YAML
key is a ConfigError with the closest option, an unknown ``ERROR_EXPORTER_*`` variable a
WARNING with the closest variable (the environment is shared with other programs, so it is
not refused).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter._process_events import ForkSafeLock
from exporter.store.dsn import check_url, is_postgres, sqlite_path

ENV_PREFIX = "ERROR_EXPORTER_"
MULTIPROC_ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's: multiprocess mode
# ERROR_EXPORTER_* variables that are read somewhere else than as an option: a variable with
# the prefix that is neither is a typo (say, MAX_BREADCRUMB for MAX_BREADCRUMBS): a warning.
OTHER_ENV_NAMES = frozenset(
    {
        ENV_PREFIX + "CONFIG",  # the YAML file load_config() reads
        ENV_PREFIX + "URL",  # the CLI's default --url (exporter/cli/client.py)
        ENV_PREFIX + "STORE_URL",  # the shared store's URL
        ENV_PREFIX + "INSTANCE",  # this process's name in the shared store (durable/rows.py)
        ENV_PREFIX + "WEB_CONFIG_FILE",  # the web server's configuration file
        # the stack's database (docker-compose.yml, deploy/): the app role's password and name
        ENV_PREFIX + "DB_PASSWORD",
        ENV_PREFIX + "DB",
        # the stack's scrape password (docker-compose.yml, deploy/tls-init.py)
        ENV_PREFIX + "SCRAPE_PASSWORD",
        # the command line's TLS and basic auth client settings (exporter/cli/client.py)
        ENV_PREFIX + "CA_FILE",
        ENV_PREFIX + "CLIENT_CERT_FILE",
        ENV_PREFIX + "CLIENT_KEY_FILE",
        ENV_PREFIX + "BASIC_AUTH_USER",
        ENV_PREFIX + "BASIC_AUTH_PASSWORD_FILE",
        ENV_PREFIX
        + "STORM_SECONDS",  # durations of the load tests (tests/scenarios/test_storms_and_soak.py)
        ENV_PREFIX + "SOAK_SECONDS",
    }
)
DEFAULT_PORT = 9718
SEVERITIES = ("low", "medium", "high", "critical")
# A monitor inside another tool (ErrorAggregator's own, the offline CLI, a benchmark, a test):
# no process-wide hook, no sampler thread. ``ErrorMonitor(**HOOKS_OFF)``.
HOOKS_OFF: Mapping[str, Any] = MappingProxyType(
    {
        "capture_sys_excepthook": False,
        "capture_threading": False,
        "capture_logging": False,
        "capture_asyncio": False,
        "capture_celery": False,
        "capture_rq": False,
        "enable_resource_monitoring": False,
    }
)

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


log = logging.getLogger("exporter")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


def did_you_mean(name: str, known: Iterable[str], shown_prefix: str = "") -> str:
    """`` (did you mean X?)`` for the known name closest to a mistyped one, else ``""``.

    One helper for every place a name can be mistyped (keyword arguments, YAML keys,
    environment variables), so they all suggest alike; difflib finds a dropped or doubled
    letter and a swapped word part, where a shared first word (``max_``) would suggest a
    dozen options.
    """
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {shown_prefix}{close[0]}?)" if close else ""


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
    capture_celery: bool = True  # when celery is importable (exporter/integrations/celery.py)
    capture_rq: bool = True  # when rq is importable (exporter/integrations/rq.py)
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
    # durable store of one process (exporter/store/durable/): unset = memory only
    store_path: str | None = None
    # the shared store (exporter/store/durable/postgres_store.py): postgresql://... (or sqlite:///path,
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
    # who may read the standalone server: a Prometheus exporter-toolkit web config file (TLS,
    # basic auth; exporter/http/web_config.py) and the Host names a loopback bind also answers
    web_config_file: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)

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
        if (
            self.store_url is not None
            and check_url(self.store_url) is None
            and not is_postgres(self.store_url)
        ):
            return sqlite_path(self.store_url)
        return None

    def replace(self, **changes: Any) -> MonitorConfig:
        """A copy with ``changes``; an unknown name is a ConfigError like load_config's (not
        the TypeError of ``dataclasses.replace``), so ``ErrorMonitor(config, max_breadcrumb=5)``
        says the same as ``ErrorMonitor(max_breadcrumb=5)``."""
        unknown = [name for name in changes if name not in _FIELD_TYPES]
        if unknown:
            raise ConfigError("; ".join(_unknown_option(name) for name in unknown))
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
    return isinstance(v, dict) and all(isinstance(k, str) and s in SEVERITIES for k, s in v.items())


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
    "trace_url_template": (
        _trace_url_template,
        "null or a URL containing {trace_id} (and optionally {span_id})",
    ),
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
    "store_path": (
        lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
        "a file path (its directory must exist) or null",
    ),
    "store_url": (
        lambda v: v is None or (isinstance(v, str) and check_url(v) is None),
        "a postgresql:// or sqlite:/// URL, or null",
    ),
    "app_name": (
        lambda v: v is None or (isinstance(v, str) and 0 < len(v.strip()) <= 200),
        "a non-empty name (at most 200 characters) or null",
    ),
    "store_retention_seconds": (_number_above(0), "a number of seconds > 0"),
    "store_max_records": (_int_at_least(1), "an integer >= 1"),
    "default_severity": (lambda v: v in SEVERITIES, "one of " + ", ".join(SEVERITIES)),
    "severity_by_type": (
        _severity_map,
        "a mapping of exception type name to a severity (" + ", ".join(SEVERITIES) + ")",
    ),
    "severity_by_component": (
        _severity_map,
        "a mapping of component to a severity (" + ", ".join(SEVERITIES) + ")",
    ),
    "scrub_keys": (_str_list, "a list of key fragments"),
    "namespace": (_namespace, "a metric name prefix: letters, digits and _"),
    "host": (lambda v: isinstance(v, str) and v != "", "a host name or IP address"),
    "port": (_port, "an integer from 0 to 65535"),
    # an empty token is not "no token": a variable meant to hold it came out empty, and the
    # API would be open to anyone while its owner believes it is protected
    "api_token": (
        lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
        "a non-empty string or null (unset it for no token)",
    ),
    "web_config_file": (
        _optional_str,
        "the path of a web config file (exporter-toolkit "
        "format: tls_server_config, basic_auth_users) or null",
    ),
    "allowed_hosts": (
        lambda v: _str_list(v) and all(x.strip() for x in v),
        "a list of host names (the Host header values a loopback-bound server also answers)",
    ),
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
            problems.append(_unknown_option(str(key)))
            continue
        check, allowed = rule
        if key == "store_url" and isinstance(value, str) and check_url(value) is not None:
            problems.append(f"{key}: {check_url(value)}")  # never the URL: a password
            continue
        if not check(value):
            problems.append(f"{key}: must be {allowed}, got {_shown(str(key), value)}")
    if not problems:
        degraded = data.get("plugin_degraded_threshold", 1)
        unhealthy = data.get("plugin_unhealthy_threshold", 5)
        if degraded > unhealthy:
            problems.append(
                "plugin_unhealthy_threshold: must be >= plugin_degraded_threshold "
                f"({unhealthy} < {degraded})"
            )
    return problems


def _unknown_option(key: str) -> str:
    return f"{key}: unknown option{did_you_mean(key, OPTION_NAMES)}"


_SECRETS = frozenset({"api_token"})


def _shown(key: str, value: Any) -> str:
    """The rejected value as the message shows it; a secret's only by its kind."""
    if key not in _SECRETS:
        return repr(value)
    if isinstance(value, str):
        return "an empty string" if value == "" else "a string of only whitespace"
    return f"a value of type {type(value).__name__}"


def _parse_env_value(name: str, raw: str) -> Any:
    """Environment values are strings; read them as YAML scalars of the option's type.

    An empty variable unsets an optional string (``ERROR_EXPORTER_EXPORT_PATH=``), except
    the token: ``ERROR_EXPORTER_API_TOKEN=$TOKEN`` with ``$TOKEN`` unset must not open the API.
    """
    type_name = _FIELD_TYPES[name]
    if type_name in ("str", "str | None"):
        empty_is_none = "None" in type_name and name not in _SECRETS
        return None if raw == "" and empty_is_none else raw
    import yaml  # only when a setting comes from the environment

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: environment value {raw!r} is not valid ({exc})") from None


OPTION_ENV_NAMES = frozenset(ENV_PREFIX + name.upper() for name in OPTION_NAMES)
KNOWN_ENV_NAMES = OPTION_ENV_NAMES | OTHER_ENV_NAMES
_warned_env: set[str] = set()
_warned_env_lock = ForkSafeLock()


def multiproc_dir() -> str | None:
    """The directory named by ``PROMETHEUS_MULTIPROC_DIR`` (or its deprecated lower-case
    name): multiprocess mode. Read here, so a single process never imports the multiprocess
    package to learn it is not in it."""
    return os.environ.get(MULTIPROC_ENV_VAR) or os.environ.get(MULTIPROC_ENV_VAR.lower()) or None


def warn_unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """WARNING (on the ``exporter`` logger) for each ``ERROR_EXPORTER_*`` variable that no
    option or command reads, with the closest real name; returns the names warned about now.

    A mistyped variable is otherwise ignored without a word and its setting silently left
    at the default. Once per process per name: every monitor of the process reads the same
    environment, and one line says it.
    """
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in KNOWN_ENV_NAMES)
    with _warned_env_lock:
        fresh = [name for name in unknown if name not in _warned_env]
        _warned_env.update(fresh)
    # compared without the prefix every name shares, which would make any two names "close"
    suffixes = sorted(known[len(ENV_PREFIX) :] for known in KNOWN_ENV_NAMES)
    for name in fresh:
        hint = did_you_mean(name[len(ENV_PREFIX) :].upper(), suffixes, ENV_PREFIX)
        log.warning(
            "error-exporter: the environment variable %s is not a setting and is ignored%s",
            name,
            hint,
        )
    return fresh


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Options set as ``ERROR_EXPORTER_<NAME>`` variables (unknown ones: a warning)."""
    environ = os.environ if environ is None else environ
    warn_unknown_environment(environ)
    found = {}
    for name in OPTION_NAMES:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            found[name] = _parse_env_value(name, raw)
    return found


def _yaml_problem(path: str | Path, exc: Exception) -> str:
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
    import yaml  # only when a configuration file is read

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
    from_file = read_yaml(path) if path is not None else {}
    merged.update(from_file)
    from_env = from_environment(environ)
    merged.update(from_env)
    merged.update(overrides)
    problems = validate_mapping(merged)
    if problems:
        # a key that came from the file: say which file, the user may have several
        in_file = {str(k) for k in from_file if k not in from_env and k not in overrides}
        problems = [f"{path}: {p}" if p.split(":", 1)[0] in in_file else p for p in problems]
        raise ConfigError("; ".join(problems))
    return MonitorConfig(**merged)
