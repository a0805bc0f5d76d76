"""Prometheus metrics of every hmas process: the one place their names, types and labels are declared.

docs/metrics.md documents each one (tests/test_metrics.py checks that the documented names are
what a running worker and API export). Counters count events where they happen; gauges that
describe a process's state (its bank view, its consumer lag, its snapshot) are read from that
state at each scrape through `STATE`, which the services owning the state fill.

The worker and the exchange fetcher serve them on HMAS_METRICS_HOST:HMAS_METRICS_PORT
(`pipeline/services/status_server.py`, with /status for probes); the API on its own /metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Result = TypeVar("Result")
disable_created_metrics()  # no `_created` series beside every counter and histogram
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SEARCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

# -- what the role of a process is (for dashboards: join on instance) -----------------------------
PROCESS_INFO = Gauge("hmas_process_info", "Always 1: the role of this hmas process", ["role", "group", "shard"])

# -- records through the agents (worker) ---------------------------------------------------------
RECORDS_IN = Counter("hmas_records_in_total", "Records read by an agent, per input topic", ["agent", "topic"])
RECORDS_OUT = Counter("hmas_records_out_total", "Records written by an agent, per topic", ["agent", "topic"])
BATCH_RECORDS = Histogram("hmas_batch_records", "Records per micro-batch an agent takes", ["agent"],
                          buckets=BATCH_BUCKETS)
DELIVERY_FAILURES = Counter("hmas_delivery_failures_total", "Records the broker did not take, per topic", ["topic"])
DEAD_LETTERS = Counter("hmas_dead_letters_total", "Inputs sent to the dead letters, per agent and reason",
                       ["agent", "reason"])

# -- hashing and fetching (worker's hasher) -------------------------------------------------------
HASH_SECONDS = Histogram("hmas_hash_seconds", "Time to hash one piece of content, in the hashing process",
                         ["content_type"], buckets=LATENCY_BUCKETS)
FETCH_ERRORS = Counter("hmas_fetch_errors_total", "URL fetches that failed, per reason", ["reason"])

# -- matching (worker's matcher, shard matchers, merger; API lookups) -----------------------------
LOOKUPS = Counter("hmas_lookups_total", "Signals looked up in an index, per signal type", ["signal_type"])
SEARCH_SECONDS = Histogram("hmas_index_search_seconds", "One batched index search, per signal type",
                           ["signal_type"], buckets=SEARCH_BUCKETS)
HITS = Counter("hmas_hits_total", "Hits by the guard's status", ["status"])
ACTIONS = Counter("hmas_actions_total", "Action records written, per bank among their hits and action name",
                  ["bank", "action"])
UPLOAD_TO_MATCH = Histogram("hmas_upload_to_match_seconds", "From submitted_at to the match record",
                            buckets=LATENCY_BUCKETS)

# -- flood guard (worker's flood agent) -----------------------------------------------------------
QUARANTINES = Counter("hmas_quarantines_total", "Signals quarantined for flooding")
FLOOD_REPLAYED_HITS = Counter("hmas_flood_replayed_hits_total", "Flood hits not counted: their event id was counted before")

# -- delivery (worker, exactly-once mode: pipeline/services/delivery.py) ----------------------------
TRANSACTIONS = Counter("hmas_transactions_total", "Worker transactions committed (exactly-once mode)")

# -- bank view snapshots (worker) -----------------------------------------------------------------
SNAPSHOT_FAILURES = Counter("hmas_view_snapshot_failures_total", "Bank view snapshots that could not be written")

# -- HTTP API ------------------------------------------------------------------------------------
API_REQUESTS = Counter("hmas_api_requests_total", "API requests, per route and HTTP status", ["route", "status"])
API_REQUEST_SECONDS = Histogram("hmas_api_request_seconds", "API request latency, per route", ["route"])

# -- exchanges (fetcher) ---------------------------------------------------------------------------
EXCHANGE_RECORDS = Counter("hmas_exchange_records_total", "Exchange records fetched and committed", ["exchange"])
EXCHANGE_FETCHES = Counter("hmas_exchange_fetches_total", "Exchange fetches by outcome", ["exchange", "outcome"])
EXCHANGE_LAST_SUCCESS = Gauge("hmas_exchange_last_success_timestamp_seconds", "Unix time of the last successful fetch",
                              ["exchange"])
EXCHANGE_WRITES = Counter("hmas_exchange_writes_total",
                          "Writes to exchanges (feedback, sharing) by outcome: delivered, skipped, retried, dead_lettered",
                          ["exchange", "outcome"])


@lru_cache(maxsize=None)
def records_out(agent: str, topic: str):
    """The RECORDS_OUT child of one agent and topic (labels() looks it up on every call)."""
    return RECORDS_OUT.labels(agent, topic)


@lru_cache(maxsize=None)
def records_in(agent: str, topic: str):
    """The RECORDS_IN child of one agent and its input topic (a topic suffix)."""
    return RECORDS_IN.labels(agent, topic)


def took_batch(agent: str, topic: str, records: int) -> None:
    """An agent took a micro-batch of `records` from `topic`."""
    records_in(agent, topic).inc(records)
    BATCH_RECORDS.labels(agent).observe(records)


def count_actions(actions: Iterable[dict[str, Any]]) -> None:
    """Action records about to be written: one count per (bank, action) of each record's hits."""
    for action in actions:
        for bank in {hit["bank"] for hit in action["matches"]}:
            ACTIONS.labels(bank, action["action"]).inc()


def timed(function: Callable[..., Result], *args: Any) -> tuple[Result, float]:
    """`function(*args)` and the seconds it took, measured where it runs (in a pool's process, so
    the time waiting for the pool is not counted)."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def set_process_role(role: str, group: str = "", shard: str = "") -> None:
    """Export this process's role (worker, shard-worker, api, fetcher) as hmas_process_info."""
    PROCESS_INFO.labels(role, group, shard).set(1)


@dataclass
class ViewReading:
    """A bank view's state as its metrics show it (taken on the event loop, read at scrapes)."""

    ready: bool = False
    lag_records: dict[str, int] = field(default_factory=dict)  # topic -> records not read yet
    behind_seconds: float = 0.0  # how long the view has been behind the topics' ends, 0 when caught up
    signals: dict[str, int] = field(default_factory=dict)  # signal type -> signals in its index
    quarantined: int = 0
    snapshot_age_seconds: float | None = None  # None: this process keeps no snapshot


def bank_view_families(reading: ViewReading) -> list[Metric]:
    """hmas_bank_view_*, hmas_index_signals, hmas_quarantined_signals, hmas_view_snapshot_age_seconds."""
    ready = GaugeMetricFamily("hmas_bank_view_ready", "1 once the bank view has read the topics' ends seen at start",
                              value=int(reading.ready))
    lag = GaugeMetricFamily("hmas_bank_view_lag_records", "Records of a state topic the bank view has not read yet",
                            labels=["topic"])
    for topic, records in sorted(reading.lag_records.items()):
        lag.add_metric([topic], records)
    behind = GaugeMetricFamily("hmas_bank_view_behind_seconds",
                               "How long the bank view has been behind its topics' ends (0: caught up)",
                               value=reading.behind_seconds)
    signals = GaugeMetricFamily("hmas_index_signals", "Signals in this process's index, per signal type",
                                labels=["signal_type"])
    for kind, count in sorted(reading.signals.items()):
        signals.add_metric([kind], count)
    quarantined = GaugeMetricFamily("hmas_quarantined_signals", "Signals quarantined now, in this process's view",
                                    value=reading.quarantined)
    families: list[Metric] = [ready, lag, behind, signals, quarantined]
    if reading.snapshot_age_seconds is not None:
        families.append(GaugeMetricFamily(
            "hmas_view_snapshot_age_seconds",
            "Seconds since the saved bank view snapshot last matched the view (saved, or found current)",
            value=reading.snapshot_age_seconds))
    return families


def consumer_lag_family(group: str, lags: dict[tuple[str, int], int]) -> Metric:
    """hmas_consumer_lag_records: per (topic, partition) this worker is assigned."""
    family = GaugeMetricFamily("hmas_consumer_lag_records",
                               "Records of an assigned input partition past the group's committed offset",
                               labels=["group", "topic", "partition"])
    for (topic, partition), records in sorted(lags.items()):
        family.add_metric([group, topic, str(partition)], records)
    return family


class StateMetrics(Collector):
    """Metric families read from a process's state at each scrape.

    A service that owns some state (the bank view, the consumer-lag watch) sets a source under its
    name while it runs and removes it when it stops; one process has one of each.
    """

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], Iterable[Metric]]] = {}

    def set_source(self, name: str, source: Callable[[], Iterable[Metric]]) -> None:
        self.sources[name] = source

    def remove_source(self, name: str, source: Callable[[], Iterable[Metric]]) -> None:
        if self.sources.get(name) == source:
            del self.sources[name]

    def collect(self) -> Iterable[Metric]:
        for source in list(self.sources.values()):
            yield from source()

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with the process's role: not checked at registration


STATE = StateMetrics()
REGISTRY.register(STATE)
