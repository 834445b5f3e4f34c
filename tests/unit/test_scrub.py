"""Scrubbing: secrets under sensitive keys and in URLs never reach a report or an export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.config import DEFAULT_SCRUB_KEYS
from exporter.scrub import FILTERED, Scrubber, key_words, truncate

SECRET = "hunter2-Zq9"
FULLWIDTH_PASSWORD = "".join(chr(ord(c) + 0xFEE0) for c in "password")  # full-width letters

SENSITIVE_KEYS = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "credential",
    "cookie",
    "session",
    "private_key",
    # keys that contain one of the above
    "client_secret",
    "api_token",
    "db_password",
    "Password",
    "X-Auth-Token",
    "AUTHORIZATION",
    "Set-Cookie",
    "sessionid",
    "user_credentials",
    "PRIVATE_KEY_PEM",
    "refreshToken",
    "OPENAI_APIKEY",
    "X-Api-Key",
    "private-key",
]
PLAIN_KEYS = ["user", "rpm", "config_file", "ecu_type", "host", "port", "message"]


def fail(monitor: Any, message: str = "failed", **kwargs: Any) -> dict[str, Any]:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        error_id = monitor.record_error(exc, **kwargs)
    assert monitor.flush()
    return monitor.get_group(error_id)["report"]


@pytest.fixture
def scrubber() -> Scrubber:
    return Scrubber(DEFAULT_SCRUB_KEYS)


def test_default_keys_are_the_documented_ones():
    assert set(DEFAULT_SCRUB_KEYS) == {
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
    }


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_sensitive_keys_are_filtered(scrubber, key):
    assert scrubber.clean({key: SECRET, "user": "driver"}) == {key: FILTERED, "user": "driver"}


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_plain_keys_are_kept(scrubber, key):
    assert scrubber.clean({key: "visible"}) == {key: "visible"}


def test_nested_values_and_containers_under_sensitive_keys(scrubber):
    cleaned = scrubber.clean(
        {
            "request": {"headers": {"Cookie": SECRET, "Accept": "json"}},
            "attempts": [{"api_token": SECRET}, {"ok": 1}],
            "auth": {"user": "a", "pass": SECRET},  # the whole value under a sensitive key
        }
    )
    assert cleaned == {
        "request": {"headers": {"Cookie": FILTERED, "Accept": "json"}},
        "attempts": [{"api_token": FILTERED}, {"ok": 1}],
        "auth": FILTERED,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"https://driver:{SECRET}@tuner.example/api", f"https://{FILTERED}@tuner.example/api"),
        (f"postgres://admin:{SECRET}@db:5432/tunes", f"postgres://{FILTERED}@db:5432/tunes"),
        ("GET ftp://anon@files.example/x", f"GET ftp://{FILTERED}@files.example/x"),
        (f"password={SECRET}&user=bob", f"password={FILTERED}&user=bob"),
        (f"client_secret: {SECRET}", f"client_secret: {FILTERED}"),
        (f"sent Bearer {SECRET}abc upstream", f"sent Bearer {FILTERED} upstream"),
        ("mail bob@example.com about it", "mail bob@example.com about it"),
        ("https://tuner.example/api?page=2", "https://tuner.example/api?page=2"),
    ],
)
def test_secrets_in_free_text(scrubber, text, expected):
    assert scrubber.text(text) == expected


def test_no_secret_survives_in_header_style_text(scrubber):
    # however the header is split up, the secret itself must go
    for text in (
        f"Authorization: Bearer {SECRET}abc",
        f"X-Api-Key={SECRET}",
        f"token {SECRET}abcd",
        f"cookie: session={SECRET}",
    ):
        assert SECRET not in scrubber.text(text), text


def test_long_strings_are_truncated_with_a_marker():
    scrubber = Scrubber(DEFAULT_SCRUB_KEYS, max_string_length=100)
    cleaned = scrubber.clean({"blob": "x" * 1000, "raw": b"y" * 1000})
    assert cleaned["blob"] == "x" * 100 + "...[truncated 900 chars]"
    assert cleaned["raw"].startswith("y" * 100)
    assert len(cleaned["raw"]) < 200
    assert truncate("short", 100) == "short"


def test_collections_are_capped():
    scrubber = Scrubber(DEFAULT_SCRUB_KEYS, max_items=3)
    assert scrubber.clean(list(range(10))) == [0, 1, 2, "[7 more items]"]
    assert scrubber.clean({str(i): i for i in range(5)}) == {
        "0": 0,
        "1": 1,
        "2": 2,
        "[truncated]": "2 more keys",
    }


def test_report_context_metadata_breadcrumbs_and_message_are_scrubbed(monitor, tmp_path):
    monitor.add_breadcrumb(
        action=f"login https://driver:{SECRET}@tuner.example",
        data={"session_token": SECRET, "screen": "login"},
    )
    report = fail(
        monitor,
        message=f"cannot reach postgres://admin:{SECRET}@db/tunes with password={SECRET}",
        context={"api_key": SECRET, "url": f"https://u:{SECRET}@h/x", "attempt": 2},
        metadata={"private_key": SECRET, "build": "4.2"},
    )
    assert report["context"] == {
        "api_key": FILTERED,
        "url": f"https://{FILTERED}@h/x",
        "attempt": 2,
    }
    assert report["metadata"] == {"private_key": FILTERED, "build": "4.2"}
    assert report["breadcrumbs"][0]["data"] == {"session_token": FILTERED, "screen": "login"}
    assert SECRET not in json.dumps(report)
    assert SECRET not in json.dumps(monitor.get_error_summary())
    assert SECRET not in json.dumps(monitor.list_groups())
    exported = monitor.export_to_file(tmp_path / "e.json")
    assert SECRET not in Path(exported).read_text()


def test_exception_own_context_is_scrubbed(monitor):
    class PluginError(Exception):
        def __init__(self, message: str, context: dict[str, Any]) -> None:
            super().__init__(message)
            self.context = context

    report = fail(monitor)  # a different group first, to check the merge separately
    try:
        raise PluginError("weather api failed", {"api_key": SECRET, "city": "Austin"})
    except PluginError as exc:
        error_id = monitor.record_error(exc, context={"attempt": 3})
    monitor.flush()
    report = monitor.get_group(error_id)["report"]
    assert report["context"] == {"api_key": FILTERED, "city": "Austin", "attempt": 3}


def test_scrub_keys_are_configurable(make_monitor):
    monitor = make_monitor(scrub_keys=["vin", "ssn"])
    report = fail(
        monitor,
        context={"VIN_number": "1HGCM82633A004352", "ssn": "123", "password": "visible now"},
    )
    assert report["context"] == {"VIN_number": FILTERED, "ssn": FILTERED, "password": "visible now"}


def test_scrubbing_can_be_disabled_but_sizes_stay_capped(make_monitor):
    monitor = make_monitor(scrub_enabled=False, max_string_length=50)
    report = fail(
        monitor, context={"password": "plain", "blob": "z" * 500}, message=f"https://u:{SECRET}@h"
    )
    assert report["context"]["password"] == "plain"
    assert report["context"]["blob"] == "z" * 50 + "...[truncated 450 chars]"
    assert SECRET in report["error_message"]


# -- key names however they are spelled ---------------------------------------------------------

# every spelling of a secret's name that must be filtered with the default keys
SPELLINGS = [
    # api_key / apikey
    "api_key",
    "apikey",
    "API_KEY",
    "apiKey",
    "ApiKey",
    "xApiKey",
    "XApiKey",
    "X-Api-Key",
    "x-api-key",
    "X_API_KEY",
    "api.key",
    "Api Key",
    "APIKey",
    "apiKeys",
    "API_KEYS",
    "openaiApiKey",
    "OPENAI_APIKEY",
    "openaiapikey",
    # secrets
    "secret",
    "clientSecret",
    "client_secret",
    "ClientSecret",
    "client-secret",
    "CLIENT_SECRET",
    "clientsecret",
    "secrets",
    "SECRET_KEY",
    "webhookSecret",
    # tokens
    "token",
    "AccessToken",
    "accessToken",
    "access_token",
    "refresh-token",
    "refreshToken",
    "REFRESH_TOKEN",
    "csrftoken",
    "X-CSRFToken",
    "xsrfToken",
    "X-XSRF-TOKEN",
    "id_token",
    "oauth_token",
    "authToken",
    "tokens",
    # passwords and synonyms
    "password",
    "Password",
    "PASSWORD",
    "db_password",
    "dbPassword",
    "dbpassword",
    "passWord",
    "pass_word",
    "passwd",
    "PASSWD",
    "pwd",
    "PWD",
    "mysql_pwd",
    "passphrase",
    "Passphrase",
    "keyPassphrase",
    FULLWIDTH_PASSWORD,
    # private keys
    "private_key",
    "privateKey",
    "PrivateKey",
    "PRIVATE_KEY",
    "private-key",
    "privatekey",
    "PRIVATE_KEY_PEM",
    "rsaPrivateKey",
    # sessions and cookies
    "session",
    "Session",
    "sessionid",
    "sessionId",
    "SESSION_ID",
    "session-id",
    "SESSIONID",
    "user_session",
    "cookie",
    "Cookie",
    "cookies",
    "Set-Cookie",
    "set_cookie",
    "setCookie",
    # credentials, auth, jwt, dsn, csrf
    "credential",
    "credentials",
    "Credentials",
    "userCredentials",
    "aws_credentials",
    "auth",
    "Authorization",
    "AUTHORIZATION",
    "authorization",
    "X-Auth-Token",
    "basicAuth",
    "OAuth",
    "oauth",
    "Proxy-Authorization",
    "authentication",
    "jwt",
    "JWT",
    "jwtToken",
    "JWTs",
    "dsn",
    "DSN",
    "SENTRY_DSN",
    "sentryDsn",
    "databaseDsn",
    "csrf",
    "_csrf",
    "X-CSRF",
    "xsrf",
]
# the same names are fine in free text unless they hold a space or characters that casefold
# does not fold to ASCII (the cheap look before the regex compares case-folded text)
INLINE_SPELLINGS = [k for k in SPELLINGS if " " not in k and k.isascii()]
# names that only look like one of the default keys
LOOKALIKES = [
    "tokenizer",
    "Tokenizer",
    "tokenize",
    "secretary",
    "Secretary",
    "keyboard",
    "monkey",
    "author",
    "Author",
    "authority",
    "authored_by",
    "passage",
    "Passage",
    "bypass",
    "compass",
    "possession",
    "obsession",
    "sessionstorage",
    "design",
    "credit",
    "pass",
    "user",
    "username",
    "rpm",
    "host",
    "port",
    "message",
    "key",
    "sid",
    "id",
]


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("X-Api-Key", ("x", "api", "key")),
        ("XApiKey", ("x", "api", "key")),
        ("xApiKey", ("x", "api", "key")),
        ("API_KEY", ("api", "key")),
        ("APIKeys", ("api", "keys")),
        ("JWTs", ("jwts",)),
        ("HTTPServer", ("http", "server")),
        ("userIDs", ("user", "ids")),
        ("clientSecret", ("client", "secret")),
        ("AccessToken", ("access", "token")),
        ("api.key v2", ("api", "key", "v", "2")),
        ("oauth2_token", ("oauth", "2", "token")),
        ("PRIVATE_KEY_PEM", ("private", "key", "pem")),
        (FULLWIDTH_PASSWORD, ("password",)),
        ("contraseñaUsuario", ("contraseña", "usuario")),
        ("--", ()),
        ("", ()),
    ],
)
def test_key_names_are_split_into_words(key, words):
    assert key_words(key) == words


@pytest.mark.parametrize("key", SPELLINGS)
def test_every_spelling_is_sensitive(scrubber, key):
    assert scrubber.is_sensitive(key)
    assert scrubber.is_sensitive(key)  # cached answer, same answer


@pytest.mark.parametrize("key", LOOKALIKES)
def test_lookalikes_are_not_sensitive(scrubber, key):
    assert not scrubber.is_sensitive(key)
    assert scrubber.clean({key: "visible"}) == {key: "visible"}


@pytest.mark.parametrize("key", SPELLINGS)
def test_every_spelling_is_filtered_in_nested_dicts_and_lists_of_dicts(scrubber, key):
    cleaned = scrubber.clean(
        {
            "request": {"headers": {key: SECRET, "Accept": "json"}},
            "attempts": [{key: SECRET, "n": 1}, {"ok": True}],
            "deep": {"a": {"b": [{"c": {key: [SECRET, SECRET]}}]}},
        }
    )
    assert cleaned == {
        "request": {"headers": {key: FILTERED, "Accept": "json"}},
        "attempts": [{key: FILTERED, "n": 1}, {"ok": True}],
        "deep": {"a": {"b": [{"c": {key: FILTERED}}]}},
    }


@pytest.mark.parametrize("key", SPELLINGS)
def test_every_spelling_is_filtered_in_header_lists_of_tuples(scrubber, key):
    # WSGI start_response / requests style: a list of (name, value) tuples; ASGI: bytes
    cleaned = scrubber.clean(
        {
            "headers": [(key, SECRET), ("Accept", "json")],
            "raw_headers": [(key.encode(), SECRET.encode()), (b"accept", b"json")],
        }
    )
    assert cleaned == {
        "headers": [[key, FILTERED], ["Accept", "json"]],
        "raw_headers": [[key, FILTERED], ["accept", "json"]],
    }


@pytest.mark.parametrize("key", LOOKALIKES)
def test_lookalikes_are_kept_in_header_lists(scrubber, key):
    assert scrubber.clean([(key, "visible")]) == [[key, "visible"]]


def test_only_name_value_tuples_count_as_headers(scrubber):
    # lists of two strings, and tuples of other sizes, are plain data
    assert scrubber.clean([["token", "visible"], ("token", "a", "b")]) == [
        ["token", "visible"],
        ["token", "a", "b"],
    ]


@pytest.mark.parametrize("key", INLINE_SPELLINGS)
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("login failed with {key}={secret}&user=bob", "login failed with {key}={f}&user=bob"),
        ("retry with {key} = {secret}, then give up", "retry with {key} = {f}, then give up"),
        ("{key}: {secret}", "{key}: {f}"),  # a header line
        ("got 401\n{key}: {secret}\nAccept: json", "got 401\n{key}: {f}\nAccept: json"),
        ("bad settings {{'{key}': '{secret}', 'n': 1}}", "bad settings {{'{key}': '{f}', 'n': 1}}"),
        ("GET /v1/charge?page=2&{key}={secret}", "GET /v1/charge?page=2&{key}={f}"),
        ("env {key}={secret};other=1", "env {key}={f};other=1"),
        ("note: {key}={secret}", "note: {key}={f}"),  # after a key that is no secret
    ],
)
def test_every_spelling_is_filtered_in_messages(scrubber, key, template, expected):
    text = template.format(key=key, secret=SECRET)
    assert scrubber.text(text) == expected.format(key=key, f=FILTERED)


@pytest.mark.parametrize("key", INLINE_SPELLINGS)
def test_every_spelling_is_filtered_in_json_in_messages(scrubber, key):
    payload = json.dumps({"user": "bob", key: SECRET, "nested": {key: SECRET, "n": 1}})
    cleaned = scrubber.text(f"bad payload {payload} from upstream")
    assert SECRET not in cleaned
    # quoted values stay quoted: the JSON is still JSON
    start = cleaned.index("{")
    end = cleaned.rindex("}") + 1
    assert json.loads(cleaned[start:end]) == {
        "user": "bob",
        key: FILTERED,
        "nested": {key: FILTERED, "n": 1},
    }


@pytest.mark.parametrize("key", [k for k in LOOKALIKES if k.isascii()])
def test_lookalikes_are_kept_in_messages(scrubber, key):
    for text in (
        f"{key}=visible&page=2",
        f"{key}: visible",
        json.dumps({key: "visible"}),
        f"{{'{key}': 'visible'}}",
    ):
        assert scrubber.text(text) == text


def test_messages_from_the_issue(scrubber):
    assert scrubber.text("clientSecret=abc123") == f"clientSecret={FILTERED}"
    assert scrubber.text('{"privateKey": "-----BEGIN KEY-----"}') == (
        f'{{"privateKey": "{FILTERED}"}}'
    )
    assert scrubber.text("X-Api-Key: abc") == f"X-Api-Key: {FILTERED}"
    assert scrubber.text("pwd=hunter2 passphrase=correct-horse") == (
        f"pwd={FILTERED} passphrase={FILTERED}"
    )
    text = "tokenizer=bpe author: Jane secretary='Bob' passage=3 keyboard: dvorak"
    assert scrubber.text(text) == text


def test_a_value_holding_key_value_pairs(scrubber):
    # the value of a sensitive key goes whole; a plain key's value is looked at on its own
    assert scrubber.text(f"cookie: session={SECRET}; theme=dark") == (
        f"cookie: {FILTERED}; theme=dark"
    )
    assert scrubber.text(f"Header: password={SECRET}") == f"Header: password={FILTERED}"
    assert scrubber.text(f"query: page=2&accessToken={SECRET}") == (
        f"query: page=2&accessToken={FILTERED}"
    )


@pytest.mark.parametrize(
    ("configured", "sensitive", "plain"),
    [
        (
            ["ssn"],
            [
                "ssn",
                "SSN",
                "userSsn",
                "user_ssn",
                "ssn-number",
                "SSN_NUMBER",
                "ssnNumber",
                "patient.ssn",
                "ssns",
            ],
            ["lessnumber", "classname", "password", "token", "assn"],
        ),
        (["vin"], ["VIN_number", "vin", "carVin", "VINs"], ["kevin", "vinyl", "provinces"]),
        (
            ["key"],
            ["key", "api_key", "X-Api-Key", "keyId", "KEYS"],
            ["keyboard", "monkey", "turkey", "apikey"],
        ),
        (["pass"], ["pass", "db_pass", "PASS", "userPass"], ["passage", "bypass", "compass"]),
        (
            ["sessionToken"],
            ["session_token", "X-Session-Token", "SESSIONTOKEN", "sessiontoken"],
            ["session", "token"],
        ),
        (
            ["account-number"],
            ["accountNumber", "ACCOUNT_NUMBER", "bankAccountNumber"],
            ["account", "number"],
        ),
    ],
)
def test_configured_keys_match_the_same_way(configured, sensitive, plain):
    scrubber = Scrubber(configured)
    for key in sensitive:
        assert scrubber.is_sensitive(key), key
        assert scrubber.clean({key: SECRET}) == {key: FILTERED}, key
        if key.isascii():
            assert scrubber.text(f"{key}={SECRET}") == f"{key}={FILTERED}", key
    for key in plain:
        assert not scrubber.is_sensitive(key), key
        assert scrubber.text(f"{key}=visible") == f"{key}=visible", key


def test_configured_ssn_through_the_monitor(make_monitor):
    monitor = make_monitor(scrub_keys=["ssn"])
    report = fail(
        monitor,
        message="lookup failed for userSsn=123-45-6789",
        context={"SSN": "123", "patient": {"userSsn": "456", "ssn-number": "789", "lessnumber": 3}},
    )
    assert report["context"] == {
        "SSN": FILTERED,
        "patient": {"userSsn": FILTERED, "ssn-number": FILTERED, "lessnumber": 3},
    }
    assert report["error_message"] == f"lookup failed for userSsn={FILTERED}"


def test_keys_without_letters_or_digits_match_nothing():
    scrubber = Scrubber(["", "--", "token"])
    assert scrubber.clean({"user": "bob", "token": SECRET}) == {"user": "bob", "token": FILTERED}
    assert scrubber.text("user=bob") == "user=bob"


def test_the_key_cache_is_bounded():
    scrubber = Scrubber(DEFAULT_SCRUB_KEYS)
    for i in range(10_000):
        scrubber.is_sensitive(f"field_{i}")
    scrubber.is_sensitive("x" * 10_000 + "_token")
    assert 0 < len(scrubber._cache) <= 4096
    assert all(len(key) <= 256 for key in scrubber._cache)
    assert scrubber.is_sensitive("x" * 10_000 + "_token")
    assert scrubber.is_sensitive("clientSecret") and not scrubber.is_sensitive("field_1")


@pytest.mark.timeout(60)  # a hang guard: each text takes milliseconds, a quadratic search minutes
def test_long_runs_in_text_do_not_hang(scrubber):
    # adversarial text for the key=value search: long runs of key characters, many keys, many
    # values running to the end of the text
    for text in (
        "a-" * 50_000 + "=x",
        "token" * 20_000 + ":",
        "a." * 50_000,
        "password" + "_" * 100_000 + "=x",
        "password:" * 20_000,
        "a:" * 50_000 + "token",
        'password:"' * 20_000,
        "x" * 100_000 + "_token=" + SECRET,
    ):
        cleaned = scrubber.text(text, limit=10**6)
        assert SECRET not in cleaned


def test_disabled_scrubber_keeps_header_tuples():
    scrubber = Scrubber(DEFAULT_SCRUB_KEYS, enabled=False)
    assert scrubber.clean([("Authorization", "plain")]) == [["Authorization", "plain"]]
    assert scrubber.text("clientSecret=plain") == "clientSecret=plain"
