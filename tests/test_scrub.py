"""Scrubbing: secrets under sensitive keys and in URLs never reach a report or an export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.config import DEFAULT_SCRUB_KEYS
from exporter.scrub import FILTERED, Scrubber, truncate

SECRET = "hunter2-Zq9"

SENSITIVE_KEYS = [
    "password", "passwd", "secret", "token", "api_key", "apikey", "auth", "credential",
    "cookie", "session", "private_key",
    # keys that contain one of the above
    "client_secret", "api_token", "db_password", "Password", "X-Auth-Token", "AUTHORIZATION",
    "Set-Cookie", "sessionid", "user_credentials", "PRIVATE_KEY_PEM", "refreshToken",
    "OPENAI_APIKEY", "X-Api-Key", "private-key",
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
        "password", "passwd", "secret", "token", "api_key", "apikey", "auth", "credential",
        "cookie", "session", "private_key",
    }


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_sensitive_keys_are_filtered(scrubber, key):
    assert scrubber.clean({key: SECRET, "user": "driver"}) == {key: FILTERED, "user": "driver"}


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_plain_keys_are_kept(scrubber, key):
    assert scrubber.clean({key: "visible"}) == {key: "visible"}


def test_nested_values_and_containers_under_sensitive_keys(scrubber):
    cleaned = scrubber.clean({
        "request": {"headers": {"Cookie": SECRET, "Accept": "json"}},
        "attempts": [{"api_token": SECRET}, {"ok": 1}],
        "auth": {"user": "a", "pass": SECRET},  # the whole value under a sensitive key
    })
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
    for text in (f"Authorization: Bearer {SECRET}abc", f"X-Api-Key={SECRET}",
                 f"token {SECRET}abcd", f"cookie: session={SECRET}"):
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
        "0": 0, "1": 1, "2": 2, "[truncated]": "2 more keys"
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
    assert report["context"] == {"api_key": FILTERED, "url": f"https://{FILTERED}@h/x",
                                 "attempt": 2}
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
    report = fail(monitor, context={"VIN_number": "1HGCM82633A004352", "ssn": "123",
                                    "password": "visible now"})
    assert report["context"] == {"VIN_number": FILTERED, "ssn": FILTERED,
                                 "password": "visible now"}


def test_scrubbing_can_be_disabled_but_sizes_stay_capped(make_monitor):
    monitor = make_monitor(scrub_enabled=False, max_string_length=50)
    report = fail(monitor, context={"password": "plain", "blob": "z" * 500},
                  message=f"https://u:{SECRET}@h")
    assert report["context"]["password"] == "plain"
    assert report["context"]["blob"] == "z" * 50 + "...[truncated 450 chars]"
    assert SECRET in report["error_message"]
