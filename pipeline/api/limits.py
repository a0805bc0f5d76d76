"""Per-client rate limits of the API's costly routes: lookups, and routes that fetch or hash content.

A token bucket per client and kind of route: `rate` requests a second, bursts of twice that. A
client is its token (by digest) or, without one, its address. Buckets of clients gone quiet are
dropped oldest first past `max_clients`, so a flood of addresses cannot grow memory without bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable

LOOKUP, HASH = "lookup", "hash"


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: float | None = None, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = burst if burst is not None else max(1.0, 2 * rate_per_s)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str) -> float:
        """0 when the client may go ahead (one request counted); else the seconds until it may."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
