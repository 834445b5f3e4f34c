"""The capture path's factory makes the same Occurrence as the class."""

from __future__ import annotations

from exporter.capture.occurrence import Occurrence, new_occurrence


def test_new_occurrence_sets_every_slot_as_the_constructor_does() -> None:
    args = (
        "id",
        KeyError,
        "message",
        object(),
        None,
        "component",
        "plugin",
        "operation",
        "high",
        1.5,
        {"a": 1},
        {"b": 2},
        "user",
        "session",
        "thread",
        ("crumb",),
        False,
        "logging",
        {"x": "1"},
        (1, 2),
    )
    made, built = new_occurrence(*args), Occurrence(*args)
    assert type(made) is Occurrence
    for name in Occurrence.__slots__:
        assert getattr(made, name) == getattr(built, name), name


def test_new_occurrence_takes_the_type_name_given() -> None:
    args = ("id", KeyError, "m", None, None, "", "", "", "low", 1.0, None, None, None, None)
    rest = ("thread", (), True, "record_error", None, None)
    assert new_occurrence(*args, *rest).error_type == "KeyError"
    assert new_occurrence(*args, *rest, "KeyError").error_type == "KeyError"
