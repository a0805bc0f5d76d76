"""What every API request passes, whichever HTTP front serves it (aiohttp, or the lean front of the
lookup routes in pipeline/api/lean_front.py): the role its route needs, the client's rate, errors
answered as upstream's JSON `{"message": ...}`, and the request metrics. One place, so the two
fronts cannot drift apart."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from pipeline import metrics
from pipeline.api.auth import PUBLIC, READ, ApiTokens, allows, bearer_token
from pipeline.api.http import ApiError, Route
from pipeline.api.limits import RateLimits, kind_of
from pipeline.services.output import DeliveryFailed
from pipeline.services.read_back import NotCaughtUp

log = logging.getLogger(__name__)


class Gate:
    """A route's role against the presented token's (401 without a token of ours, 403 with one of
    too weak a role; no tokens configured: every route is open), then the client's rate for the
    route's kind (429 with Retry-After)."""

    def __init__(self, tokens: ApiTokens, open_reads: bool, limits: RateLimits) -> None:
        self.tokens, self.open_reads, self.limits = tokens, open_reads, limits

    def admit(self, route: Route | None, authorization: str, remote: str | None, query: Mapping[str, str]) -> str:
        """The request's client (its token's digest, or its address); ApiError when it may not go on."""
        presented = bearer_token(authorization) if authorization else ""
        role = self.tokens.role_of(presented) if presented and self.tokens.configured else None
        client = ApiTokens.client_id(presented) if role else (remote or "unknown")
        needed = route.needs if route is not None else PUBLIC
        if self.tokens.configured and needed != PUBLIC and not (needed == READ and self.open_reads):
            if role is None:
                raise ApiError(401, f"this route needs `Authorization: Bearer <token>` of role {needed} or above",
                               {"WWW-Authenticate": "Bearer"})
            if not allows(role, needed):
                raise ApiError(403, f"this route needs a token of role {needed} or above; this token's role is {role}")
        kind = kind_of(route.rate, query) if route is not None else ""
        if kind:
            self.limits.take(kind, client)
        return client


def error_answer(exc: Exception, method: str, path: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """An exception as a JSON answer: (status, body, headers); None for an aiohttp redirect or other
    non-error HTTPException, which aiohttp itself answers."""
    if isinstance(exc, ApiError):
        return exc.status, {"message": exc.message}, exc.headers
    if isinstance(exc, (NotCaughtUp, DeliveryFailed)):
        return 503, {"message": str(exc)}, {}
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return 413, {"message": "Content too large"}, {}
    if isinstance(exc, web.HTTPException):
        return (exc.status, {"message": exc.reason}, {}) if exc.status >= 400 else None
    log.error("unhandled API error", exc_info=exc, extra={"path": path, "method": method})
    return 500, {"message": "internal error; see the API log"}, {}


def observe(route: Route | None, status: int, seconds: float) -> None:
    """A request's count (by route and status) and duration (by route) in the metrics."""
    name = route.path if route is not None else "unmatched"
    _counted(name, status).inc()
    _timed(name).observe(seconds)


@functools.lru_cache(maxsize=4096)
def _counted(route: str, status: int):
    """The labelled counter of a route and status, looked up once (labels() costs a lock and a hash)."""
    return metrics.API_REQUESTS.labels(route, str(status))


@functools.lru_cache(maxsize=1024)
def _timed(route: str):
    return metrics.API_REQUEST_SECONDS.labels(route)
