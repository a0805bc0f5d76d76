"""Time as records carry it, and the durations users write."""

from __future__ import annotations

import time

import pytest

from pipeline.clock import format_duration_ms, iso_utc, now_ms, parse_duration_ms


def test_now_is_epoch_milliseconds():
    before = int(time.time() * 1000)
    assert before <= now_ms() <= int(time.time() * 1000)


@pytest.mark.parametrize("text, ms", [
    ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), ("7d", 604_800_000),
    ("1.5h", 5_400_000), ("0s", 0), (" 10m ", 600_000), ("0.5s", 500),
])
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "5", "m", "-5m", "5 m", "5w", "1h30m", "forever", "1e3s"])
def test_unreadable_durations_raise(text):
    with pytest.raises(ValueError, match="cannot read duration"):
        parse_duration_ms(text)


@pytest.mark.parametrize("ms, text", [(600_000, "10m"), (3_600_000, "1h"), (90_000, "90s"), (1_500, "1.5s"),
                                      (172_800_000, "2d"), (0, "0d")])
def test_durations_are_written_as_they_are_read(ms, text):
    assert format_duration_ms(ms) == text and parse_duration_ms(text) == ms


def test_timestamps_read_as_utc():
    assert iso_utc(1_767_225_600_000) == "2026-01-01T00:00:00Z"
