"""ErrorStore details not covered elsewhere."""


def test_group_frequency_is_the_rounded_rate_per_hour_in_and_after_the_first_hour() -> None:
    from exporter.classify import per_hour
    from exporter.store.memory import _frequency

    for count in (1, 7, 10, 12345, 2**60):
        for seconds in (0.0, 19.0, 3599.999, 3600.0, 3600.0000000000005, 3600.5, 7200.0, 1e7):
            assert _frequency(count, seconds) == round(per_hour(count, seconds), 3)
