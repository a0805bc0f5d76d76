"""Prometheus metrics of the worker's agents and the exchange fetcher (served on HMAS_METRICS_PORT when it is set)."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECORDS_IN = Counter("hmas_records_in_total", "Records read by an agent", ["agent"])
RECORDS_OUT = Counter("hmas_records_out_total", "Records written by an agent, per topic", ["agent", "topic"])
DELIVERY_FAILURES = Counter("hmas_delivery_failures_total", "Records the broker did not take, per topic", ["topic"])
DEAD_LETTERS = Counter("hmas_dead_letters_total", "Inputs sent to the dead letters", ["agent"])
HITS = Counter("hmas_hits_total", "Hits by status", ["status"])
QUARANTINES = Counter("hmas_quarantines_total", "Signals quarantined for flooding")
FLOOD_REPLAYED_HITS = Counter("hmas_flood_replayed_hits_total", "Flood hits not counted: their event id was counted before")
TRANSACTIONS = Counter("hmas_transactions_total", "Worker transactions committed (exactly-once mode)")
EXCHANGE_RECORDS = Counter("hmas_exchange_records_total", "Exchange records fetched and committed", ["exchange"])
EXCHANGE_FETCHES = Counter("hmas_exchange_fetches_total", "Exchange fetches by outcome", ["exchange", "outcome"])
EXCHANGE_LAST_SUCCESS = Gauge("hmas_exchange_last_success_seconds", "Unix time of the last successful fetch", ["exchange"])
UPLOAD_TO_MATCH = Histogram(
    "hmas_upload_to_match_seconds", "From submitted_at to the match record",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@lru_cache(maxsize=None)
def records_out(agent: str, topic: str):
    """The RECORDS_OUT child of one agent and topic (labels() looks it up on every call)."""
    return RECORDS_OUT.labels(agent, topic)


def serve(port: int) -> None:
    if port > 0:
        start_http_server(port, addr="127.0.0.1")
