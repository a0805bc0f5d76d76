"""`hmas bench faults-cluster`: a broker of a three-node local cluster (replication 3,
min.insync.replicas 2) stopped while uploads flow and started again later; every upload is
accounted for, and the time matching stalled is measured.

Uploads are produced at a steady rate (half near-duplicates of banked codes, which the bank acts
on). `stop_after_s` into the stream, the node leading hma.uploads partition 0 is stopped (SIGTERM,
a controlled shutdown); `down_s` later it is started again and catches up. The stall is the
longest time no match record came out while uploads kept arriving, and the slowest upload's trip.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ops.bench.accounting import account_uploads, nothing_lost
from ops.bench.e2e_bench import _uploads, _wait_acted, _wait_matched, load_bank
from ops.bench.harness import BenchPipeline, log
from ops.bench.index_bench import machine
from ops.kafka.cluster import LocalCluster
from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.client import Client
from pipeline.clock import now_ms
from pipeline.config import Settings

BROKERS = 3
PREFIX = "cf"


def leader_of(settings: Settings, spec: T.TopicSpec, partition: int = 0) -> int:
    """The node id leading a topic's partition now."""
    topic = spec.name(settings)
    meta = kafka_clients.admin(settings).list_topics(topic, timeout=10).topics[topic]
    return meta.partitions[partition].leader


def replication_of(settings: Settings, spec: T.TopicSpec) -> dict[str, int]:
    """A topic's replicas per partition and min.insync.replicas as the cluster reports them."""
    from confluent_kafka.admin import ConfigResource

    topic = spec.name(settings)
    admin = kafka_clients.admin(settings)
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
    resource = ConfigResource("topic", topic)
    config = admin.describe_configs([resource])[resource].result(10)
    return {"replicas": min(len(p.replicas) for p in partitions),
            "min_insync_replicas": int(config["min.insync.replicas"].value)}


class BrokerOutage(threading.Thread):
    """Stops one node of the cluster at `stop_at` (perf_counter), starts it again `down_s` later,
    and keeps the times it did so (seconds from `origin`)."""

    def __init__(self, cluster: LocalCluster, node: int, origin: float, stop_at: float, down_s: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.node, self.origin, self.stop_at, self.down_s = cluster, node, origin, stop_at, down_s
        self.times: dict[str, float] = {}
        self.error: BaseException | None = None

    def _mark(self, what: str) -> None:
        self.times[what] = round(time.perf_counter() - self.origin, 1)
        log(f"faults-cluster: node {self.node} {what.replace('_', ' ')} at {self.times[what]}s")

    def run(self) -> None:
        try:
            time.sleep(max(0.0, self.stop_at - time.perf_counter()))
            self._mark("stopping")
            self.cluster.stop_node(self.node)
            self._mark("stopped")
            time.sleep(self.down_s)
            self._mark("restarting")
            self.cluster.start_node(self.node)
            self._mark("answering_again")
        except BaseException as exc:  # raised again by the bench, not lost in the thread
            self.error = exc


def stall(settings: Settings, ids: set[str], origin_ms: int, outage_s: tuple[float, float]) -> dict[str, Any]:
    """The longest gap between consecutive match records of the run (and when it began, in seconds
    from `origin_ms`, to set beside the outage's times), the longest that began while the node was
    down or coming back (`outage_s`: from, to), and the uploads' trip times."""
    matched_at, trip_ms = [], []
    for key, record in Client(settings).read(T.MATCHES, to_end=True):
        if key in ids:
            matched_at.append(record["matched_at"])
            trip_ms.append(record["matched_at"] - record["submitted_at"])
    times = np.sort(np.array(matched_at, dtype=float))
    gaps = np.diff(times)
    trips = np.array(trip_ms, dtype=float)
    longest = int(gaps.argmax()) if len(gaps) else None
    began_s = (times[:-1] - origin_ms) / 1000
    during = gaps[(began_s >= outage_s[0]) & (began_s <= outage_s[1])]
    return {
        "longest_gap_during_outage_s": round(float(during.max()) / 1000, 2) if len(during) else None,
        "longest_gap_between_matches_s": None if longest is None else round(float(gaps[longest]) / 1000, 2),
        "longest_gap_began_s_from_start": None if longest is None else round(float(times[longest] - origin_ms) / 1000, 1),
        "upload_to_match_ms_p50": round(float(np.percentile(trips, 50)), 1),
        "upload_to_match_ms_p99": round(float(np.percentile(trips, 99)), 1),
        "upload_to_match_s_max": round(float(trips.max()) / 1000, 2),
    }


def run_cluster_faults(n: int, uploads: int, rate: int, stop_after_s: float, down_s: float) -> dict[str, Any]:
    """The scenario on a cluster of its own; the report holds the accounting and the stall."""
    rng = np.random.default_rng(21)
    with BenchPipeline(brokers=BROKERS) as p:
        assert isinstance(p.broker, LocalCluster)
        codes = load_bank(p.settings, n)
        p.start_worker()
        ready_s = p.wait_until_matching(codes[0].tobytes().hex())
        log(f"faults-cluster: worker matching after {ready_s:,.0f}s on {BROKERS} brokers")
        node = leader_of(p.settings, T.UPLOADS)
        batch = _uploads(codes, uploads, PREFIX, rng)
        ids = {u["content_id"] for u in batch}
        acted = {u["content_id"] for i, u in enumerate(batch) if i % 2 == 0}  # the near-duplicates
        start, start_ms = time.perf_counter(), now_ms()
        outage = BrokerOutage(p.broker, node, start, start + stop_after_s, down_s)
        outage.start()
        for i, upload in enumerate(batch):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            upload["submitted_at"] = now_ms()
            p.client.produce(T.UPLOADS, upload["content_id"], upload)
        p.client.flush(300)
        produced_s = time.perf_counter() - start
        outage.join()
        if outage.error is not None:
            raise outage.error
        log(f"faults-cluster: {uploads:,} uploads produced in {produced_s:,.0f}s; accounting")
        _wait_matched(p.settings, ids, 600, "faults-cluster")  # then the counts are final (or something is lost)
        _wait_acted(p.settings, acted, 120)
        accounting = account_uploads(p.settings, ids, acted)
        report = {
            "banked_signals": n, "machine": machine(), "brokers": BROKERS,
            "uploads_topic": replication_of(p.settings, T.UPLOADS),
            "uploads": uploads, "rate_per_s": rate, "produced_in_s": round(produced_s, 1),
            "node_stopped": node, "outage_s_from_start": outage.times,
            **stall(p.settings, ids, start_ms, (outage.times["stopping"], outage.times["answering_again"])), "accounting": accounting, "nothing_lost": nothing_lost(accounting),
        }
    return report
