"""How the fetcher and the writer wait before trying an exchange again, and which failures of a
fetch are worth trying again at once (a rate limit) rather than at the next interval."""

from __future__ import annotations

from pipeline.config import Settings

RETRIED_FETCH_STATUSES = frozenset({429})


def backoff_s(settings: Settings, failed_attempts: int) -> float:
    """The wait before the next attempt: HMAS_EXCHANGE_BACKOFF_S, doubled per failed attempt,
    capped at HMAS_EXCHANGE_BACKOFF_MAX_S."""
    return min(settings.exchange_backoff_s * 2 ** (failed_attempts - 1), settings.exchange_backoff_max_s)


def rate_limited(exc: BaseException) -> bool:
    """An HTTP answer that asks to come back later (python-threatexchange's clients raise
    requests' HTTPError; the ThreatExchange client does not retry it itself)."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) in RETRIED_FETCH_STATUSES
