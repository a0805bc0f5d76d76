"""Wall-clock time as the records carry it: milliseconds since the epoch, one definition for all,
and the one reading of durations a user writes ("30s", "5m", "1.5h", "7d")."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def now_ms() -> int:
    """Now, in the unit of every timestamp field of our schemas (epoch milliseconds)."""
    return int(time.time() * 1000)


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration: a non-negative number and a unit, s, m, h or d ("30s", "1.5h")."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"cannot read duration {text!r}: use a number and s, m, h or d, e.g. 30s, 5m, 2h, 7d")
    return round(float(match.group(1)) * UNIT_SECONDS[match.group(2)] * 1000)


def iso_utc(ms: int) -> str:
    """A timestamp in epoch milliseconds as people read it: 2026-01-31T12:00:00Z."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration_ms(ms: int) -> str:
    """A duration as `parse_duration_ms` reads it, in the largest unit that divides it (90000 -> 90s)."""
    for unit in ("d", "h", "m", "s"):
        size = UNIT_SECONDS[unit] * 1000
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"
