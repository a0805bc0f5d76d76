"""Wall-clock time as the records carry it: milliseconds since the epoch, one definition for all."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in the unit of every timestamp field of our schemas (epoch milliseconds)."""
    return int(time.time() * 1000)
