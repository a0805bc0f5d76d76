"""Per-client rate limits of the API's costly routes and the UI's pages that do the same work:
lookups, and routes that fetch or hash content.

A token bucket per client and kind of route: `rate` requests a second, bursts of twice that. A
client is its token (by digest) or, without one, its address. Buckets of clients gone quiet are
dropped oldest first past `max_clients`, so a flood of addresses cannot grow memory without bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable, Mapping

from aiohttp import web

from pipeline.api.http import ApiError
from pipeline.config import Settings

LOOKUP, HASH = "lookup", "hash"
CLIENT_KEY = web.RequestKey("client", str)  # the request's client: its token's digest, or its address


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


def kind_of(kind: str, query: Mapping[str, str]) -> str:
    """A request's kind of limit: a lookup given a URL fetches and hashes, so it counts as hashing."""
    return HASH if kind == LOOKUP and "url" in query else kind


class RateLimits:
    """One limiter per kind for one API process, shared by its JSON routes and its UI pages, so a
    client has one budget whichever way it asks."""

    def __init__(self, lookup_rate: float, hash_rate: float) -> None:
        self.limiters = {LOOKUP: RateLimiter(lookup_rate), HASH: RateLimiter(hash_rate)}

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimits":
        return cls(settings.api_lookup_rate, settings.api_hash_rate)

    def take(self, kind: str, client: str) -> None:
        """Count one request of `kind`; a 429 with Retry-After once the client is over its rate."""
        limiter = self.limiters[kind]
        wait = limiter.take(client)
        if wait > 0:
            raise ApiError(429, f"over the rate limit of {limiter.rate:g} {kind} requests/s for this client; "
                           f"retry in {wait:.2f}s", {"Retry-After": retry_after(wait)})
