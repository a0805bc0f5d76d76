"""Time as records carry it, and the durations users write."""

from __future__ import annotations

import time

import pytest

from pipeline.clock import now_ms, parse_duration_ms


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
