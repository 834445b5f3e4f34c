"""The web configuration file (``--web.config.file``): the Prometheus exporter-toolkit format.

Every Prometheus exporter reads the same file to decide who may read it (TLS, client
certificates, basic auth users with bcrypt hashes, extra response headers), and operators
already have these files and the tooling around them (``promtool check web-config``). So the
monitor reads exactly that format with the same meaning rather than inventing its own:
https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md

This module only parses and validates: a problem is a ConfigError naming the file and the key
(``tls_server_config.client_auth_type: ...``), an unknown key is refused with the closest known
one, because a misspelt ``basic_auth_user`` silently ignored would leave the monitor open while
its owner believes it is protected. Using the result is for ``tls.py`` (contexts) and
``access.py`` (the request gate). Secrets (the bcrypt hashes) never appear in messages.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config import ConfigError, did_you_mean

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's client_auth_type names and what Python's ssl module can do for each. Python cannot ask
# for a certificate without verifying it (there is no verify callback), so the two modes that
# take any certificate unverified differ: RequestClientCert asks for none (an unverified
# certificate decides nothing anyway, so access is the same), RequireAnyClientCert is refused
# rather than silently weakened or strengthened.
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
_UNSUPPORTED_CLIENT_AUTH = {
    "RequireAnyClientCert": "Python's ssl module cannot require a client certificate without "
    "verifying it; use RequireAndVerifyClientCert with client_ca_file",
}
_VERIFYING = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

# Go's cipher suite names (what the toolkit's cipher_suites takes) -> OpenSSL's names. TLS 1.3
# suites are accepted and, as in Go, not configurable (they are always on).
GO_CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")

# The headers the toolkit lets http_server_config.headers set, with the values it allows
# (None: any value).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
}

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
HTTP_KEYS = ("http2", "headers")
# keys of newer toolkits this reader knows but does not implement: refused by name, not as
# unknown, so the message says what to do instead
_NOT_IMPLEMENTED = {
    "tls_server_config.cert": "give the certificate as cert_file",
    "tls_server_config.key": "give the key as key_file",
    "tls_server_config.client_allowed_sans": "not supported here; give the clients' "
    "certificates their own CA (client_ca_file)",
    "rate_limit": "not supported here",
}

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


@dataclass(frozen=True)
class TLSSettings:
    """``tls_server_config`` as validated values (paths are absolute)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    cipher_suites: tuple[str, ...] = ()  # OpenSSL names; empty: OpenSSL's defaults
    prefer_server_cipher_suites: bool = True

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        if self.client_auth_type == "RequireAndVerifyClientCert":
            return ssl.CERT_REQUIRED
        if self.client_auth_type == "VerifyClientCertIfGiven":
            return ssl.CERT_OPTIONAL
        return ssl.CERT_NONE


@dataclass(frozen=True)
class WebConfig:
    """A validated web configuration file; empty (plain HTTP, no users) when none is given."""

    path: str | None = None
    tls: TLSSettings | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    http2: bool = True  # accepted and ignored: the stdlib server speaks HTTP/1.1 only

    @property
    def has_basic_auth(self) -> bool:
        return bool(self.basic_auth_users)


def load_web_config(path: str | Path | None) -> WebConfig:
    """Read and validate the file at ``path`` (None or "": the empty configuration)."""
    if path is None or str(path) == "":
        return WebConfig()
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"web_config_file: cannot read {where} ({exc.strerror or exc})") from None
    import yaml  # only a server given a web config file reads YAML

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{where}{at}: not valid YAML ({getattr(exc, 'problem', None) or 'syntax error'})"
        ) from None
    return parse_web_config(data, where, Path(path).resolve().parent)


def parse_web_config(data: Any, where: str = "web config", base: Path | None = None) -> WebConfig:
    """Validate an already loaded document; every problem at once, each naming its key.

    Relative file names are relative to the file's directory, as in the toolkit.
    """
    base = base or Path.cwd()
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping with the keys {', '.join(TOP_KEYS)}")
    _unknown(data, TOP_KEYS, "", problems)
    tls = _tls(data.get("tls_server_config"), base, problems)
    users = _users(data.get("basic_auth_users"), problems)
    headers, http2 = _http(data.get("http_server_config"), problems)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return WebConfig(where, tls, users, headers, http2)


def _unknown(
    section: dict[Any, Any], known: tuple[str, ...], prefix: str, problems: list[str]
) -> None:
    for key in section:
        name = f"{prefix}{key}"
        if key in known:
            continue
        if name in _NOT_IMPLEMENTED:
            problems.append(f"{name}: {_NOT_IMPLEMENTED[name]}")
        else:
            problems.append(f"{name}: unknown key{did_you_mean(str(key), known, prefix)}")


def _mapping(value: Any, name: str, problems: list[str]) -> dict[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a mapping, got {type(value).__name__}")
        return None
    return value


def _file(section: dict[Any, Any], key: str, base: Path, problems: list[str]) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    name = f"tls_server_config.{key}"
    if not isinstance(value, str):
        problems.append(f"{name}: must be a file name, got {type(value).__name__}")
        return None
    path = (base / value).resolve()
    if not path.is_file():
        problems.append(f"{name}: {value} is not a readable file")
        return None
    return str(path)


def _version(
    section: dict[Any, Any], key: str, default: ssl.TLSVersion, problems: list[str]
) -> ssl.TLSVersion:
    value = section.get(key)
    if value is None or value == "":
        return default
    if value not in TLS_VERSIONS:
        problems.append(
            f"tls_server_config.{key}: must be one of {', '.join(TLS_VERSIONS)}, got {value!r}"
        )
        return default
    return TLS_VERSIONS[value]


def _tls(value: Any, base: Path, problems: list[str]) -> TLSSettings | None:
    section = _mapping(value, "tls_server_config", problems)
    if not section:
        return None
    _unknown(section, TLS_KEYS, "tls_server_config.", problems)
    cert = _file(section, "cert_file", base, problems)
    key = _file(section, "key_file", base, problems)
    ca = _file(section, "client_ca_file", base, problems)
    auth = section.get("client_auth_type") or "NoClientCert"
    if auth not in CLIENT_AUTH_TYPES:
        problems.append(
            f"tls_server_config.client_auth_type: must be one of "
            f"{', '.join(CLIENT_AUTH_TYPES)}, got {auth!r}"
            f"{did_you_mean(str(auth), CLIENT_AUTH_TYPES)}"
        )
    elif auth in _UNSUPPORTED_CLIENT_AUTH:
        problems.append(
            f"tls_server_config.client_auth_type: {auth}: {_UNSUPPORTED_CLIENT_AUTH[auth]}"
        )
    elif auth in _VERIFYING and "client_ca_file" not in section:
        problems.append(
            f"tls_server_config.client_ca_file: {auth} needs the CA that signs "
            "the clients' certificates"
        )
    if section.get("client_ca_file") and auth == "NoClientCert":
        problems.append(
            "tls_server_config.client_auth_type: client_ca_file is set but "
            "client_auth_type is NoClientCert (as the toolkit: a CA without a "
            "client auth policy is a mistake); use RequireAndVerifyClientCert"
        )
    for key_name in ("cert_file", "key_file"):
        if not section.get(key_name):
            problems.append(
                f"tls_server_config.{key_name}: missing (TLS needs both cert_file and key_file)"
            )
    low = _version(section, "min_version", ssl.TLSVersion.TLSv1_2, problems)
    high = _version(section, "max_version", ssl.TLSVersion.TLSv1_3, problems)
    if low > high:
        problems.append("tls_server_config.max_version: is lower than min_version")
    ciphers: list[str] = []
    suites = section.get("cipher_suites") or []
    if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
        problems.append("tls_server_config.cipher_suites: must be a list of cipher suite names")
        suites = []
    for suite in suites:
        if suite not in GO_CIPHER_SUITES:
            problems.append(
                f"tls_server_config.cipher_suites: unknown cipher suite {suite!r}"
                f"{did_you_mean(suite, GO_CIPHER_SUITES)}"
            )
        elif GO_CIPHER_SUITES[suite]:
            ciphers.append(str(GO_CIPHER_SUITES[suite]))
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.append("tls_server_config.prefer_server_cipher_suites: must be true or false")
        prefer = True
    curves = section.get("curve_preferences") or []  # accepted; OpenSSL picks the curve
    if not isinstance(curves, list) or any(c not in CURVES for c in curves):
        problems.append(
            f"tls_server_config.curve_preferences: must be a list of {', '.join(CURVES)}"
        )
    if cert is None or key is None:
        return None
    return TLSSettings(cert, key, ca, str(auth), low, high, tuple(ciphers), bool(prefer))


def _users(value: Any, problems: list[str]) -> dict[str, str]:
    section = _mapping(value, "basic_auth_users", problems)
    users: dict[str, str] = {}
    for user, hashed in (section or {}).items():
        if not isinstance(user, str) or user == "" or ":" in user:
            problems.append(
                f"basic_auth_users: {user!r} is not a valid user name "
                "(a non-empty string without ':')"
            )
            continue
        if (
            not isinstance(hashed, str)
            or not hashed.startswith(BCRYPT_PREFIXES)
            or len(hashed) != 60
        ):
            # the value is a secret (a hash, or worse a clear-text password): never shown
            problems.append(
                f"basic_auth_users.{user}: must be a bcrypt hash ($2y$..., "
                "60 characters; e.g. htpasswd -nBC 10 '' | tr -d ':\\n'), "
                "not a password"
            )
            continue
        users[user] = hashed
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            problems.append(
                "basic_auth_users: checking bcrypt hashes needs the bcrypt "
                "package: pip install 'error-exporter[auth]'"
            )
    return users


def _http(value: Any, problems: list[str]) -> tuple[tuple[tuple[str, str], ...], bool]:
    section = _mapping(value, "http_server_config", problems)
    if not section:
        return (), True
    _unknown(section, HTTP_KEYS, "http_server_config.", problems)
    http2 = section.get("http2", True)
    if not isinstance(http2, bool):
        problems.append("http_server_config.http2: must be true or false")
        http2 = True
    headers = _mapping(section.get("headers"), "http_server_config.headers", problems) or {}
    found: list[tuple[str, str]] = []
    for name, text in headers.items():
        allowed = {h.lower(): h for h in ALLOWED_HEADERS}
        canonical = allowed.get(str(name).lower())
        if canonical is None:
            problems.append(
                f"http_server_config.headers: {name!r} cannot be set; allowed: "
                f"{', '.join(ALLOWED_HEADERS)}"
            )
            continue
        values = ALLOWED_HEADERS[canonical]
        if (
            not isinstance(text, str)
            or (values and text.lower() not in values)
            or "\n" in text
            or "\r" in text
        ):
            want = " or ".join(values) if values else "a one-line string"
            problems.append(f"http_server_config.headers.{canonical}: must be {want}")
            continue
        found.append((canonical, text))
    return tuple(found), bool(http2)
