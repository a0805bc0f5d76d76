"""What the pipeline is doing, for the UI's health page, bank charts and live feed, read from the
topics alone (no worker address is needed, any number of workers is covered):

- per agent, its consumer group's committed offsets against the end offsets of the topic it reads,
  sampled every SAMPLE_EVERY_S: the lag, and the throughput (records committed per second);
- from hma.matches, per minute, a histogram of upload-to-match latencies (matched_at minus
  submitted_at) and the effective matches of each bank;
- the newest matches and actions, pushed to the live feed's subscribers as they are read.

Everything is kept for the last hour only. On start the follower reads back at most that hour
(and at most BACKFILL_PER_PARTITION records a partition), so a restarted API redraws its charts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.state.log_reader import topic_partitions
from schemas.codec import DecodeError

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
HORIZON_MS = 3_600_000
SAMPLE_EVERY_S = 15
BACKFILL_PER_PARTITION = 20_000
FEED_KEPT = 50
SUBSCRIBER_QUEUE = 200
# The worker's agents and the topic each one consumes (pipeline/agents).
AGENT_INPUTS = {"hasher": T.UPLOADS, "matcher": T.HASHES, "actioner": T.RETRO_MATCHES, "flood": T.FLOOD_HITS,
                "feedback": T.FEEDBACK}
# Latency histogram bins: 1 ms to ~17 min, 8 bins a doubling.
LATENCY_EDGES_MS = np.logspace(0, 20, 161, base=2.0)


@dataclass
class Minute:
    """One minute of hma.matches: latency histogram and effective matches per bank."""

    latency: np.ndarray = field(default_factory=lambda: np.zeros(len(LATENCY_EDGES_MS) + 1, np.int64))
    matches: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # event ids counted: a record written twice counts once


@dataclass(frozen=True)
class AgentSample:
    at_ms: int
    committed: dict[str, int]  # agent -> records committed by the worker group (all partitions)
    end: dict[str, int]  # agent -> end offset of its input topic (all partitions)


def percentile_ms(histogram: np.ndarray, q: float) -> float | None:
    """The upper edge of the bin holding the q-th quantile; None for an empty histogram."""
    total = int(histogram.sum())
    if total == 0:
        return None
    i = int(np.searchsorted(np.cumsum(histogram), q * total))
    return float(LATENCY_EDGES_MS[min(i, len(LATENCY_EDGES_MS) - 1)])


def feed_event(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """What the live feed shows of a match record or an action."""
    hits = record["matches"]
    effective = [h for h in hits if h["status"] == "match"] if kind != "action" else hits
    return {
        "kind": kind, "content_id": record["content_id"], "retroactive": bool(record.get("retroactive")),
        "at": record.get("matched_at") or record.get("acted_at") or now_ms(),
        "action": record.get("action"), "banks": sorted({h["bank"] for h in effective}),
        "held_back": sorted({f"{h['bank']}: {h['status']}" for h in hits if h["status"] != "match"}) if kind != "action" else [],
    }


class Activity:
    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings, self.group_id = settings, group_id
        self.minutes: dict[int, Minute] = {}
        self.samples: deque[AgentSample] = deque(maxlen=HORIZON_MS // (SAMPLE_EVERY_S * 1000) + 1)
        self.feed: deque[dict[str, Any]] = deque(maxlen=FEED_KEPT)
        self.subscribers: set[asyncio.Queue] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._specs = {spec.name(settings): spec for spec in (T.MATCHES, T.RETRO_MATCHES, T.ACTIONS)}

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        consumer = kafka_clients.aio_consumer(self.settings, group_id=None, enable_auto_commit=False,
                                              isolation_level="read_committed", client_id="hmas-api-activity")
        await consumer.start()
        partitions = []
        for topic in self._specs:
            partitions += [TopicPartition(topic, p) for p in sorted(await asyncio.to_thread(topic_partitions, self.settings, topic))]
        consumer.assign(partitions)
        since = await consumer.offsets_for_times({tp: now_ms() - HORIZON_MS for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            at = ends[tp] if since[tp] is None else since[tp].offset
            consumer.seek(tp, max(at, ends[tp] - BACKFILL_PER_PARTITION))
        self._consumer = consumer
        self._admin = AIOKafkaAdminClient(**kafka_clients.aiokafka_options(self.settings), client_id="hmas-api-activity")
        await self._admin.start()
        self._tasks = [asyncio.create_task(self._follow(), name="activity-follow"),
                       asyncio.create_task(self._sample_forever(), name="activity-sample")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    # -- hma.matches and hma.actions --------------------------------------------------------------
    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                spec = self._specs[tp.topic]
                for r in records:
                    try:
                        record = spec.codec.decode(r.value)
                    except DecodeError:
                        continue  # not this page's concern: the dead letters are
                    self.observe(spec, record)
            self._forget_before(now_ms() - HORIZON_MS)

    def observe(self, spec: Any, record: dict[str, Any]) -> None:
        """Count one match record or action, and hand it to the live feed."""
        if spec is T.ACTIONS:
            self._publish(feed_event("action", record))
            return
        minute = self._minute(record["matched_at"])
        event_id = record.get("event_id")
        if minute is not None and event_id:
            if event_id in minute.seen:
                return
            minute.seen.add(event_id)
        if minute is not None:
            for bank in {h["bank"] for h in record["matches"] if h["status"] == "match"}:
                minute.matches[bank] = minute.matches.get(bank, 0) + 1
            if not record.get("retroactive") and record.get("submitted_at"):
                latency = max(0, record["matched_at"] - record["submitted_at"])
                minute.latency[int(np.searchsorted(LATENCY_EDGES_MS, latency))] += 1
        if record["matches"]:
            self._publish(feed_event("retro-match" if record.get("retroactive") else "match", record))

    def _minute(self, at_ms: int) -> Minute | None:
        if at_ms < now_ms() - HORIZON_MS:
            return None
        start = at_ms - at_ms % MINUTE_MS
        return self.minutes.setdefault(start, Minute())

    def _forget_before(self, cutoff_ms: int) -> None:
        for start in [s for s in self.minutes if s + MINUTE_MS <= cutoff_ms]:
            del self.minutes[start]

    def _publish(self, event: dict[str, Any]) -> None:
        self.feed.append(event)
        for queue in list(self.subscribers):
            self._offer(queue, event)

    @staticmethod
    def _offer(queue: asyncio.Queue, event: dict[str, Any] | None) -> None:
        if queue.full():
            queue.get_nowait()  # a slow browser misses the oldest, never holds the follower up
        queue.put_nowait(event)

    def end_subscriptions(self) -> None:
        """Tell every subscriber to finish (None), so that open streams do not hold a shutdown up."""
        for queue in list(self.subscribers):
            self._offer(queue, None)

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    # -- consumer group offsets -------------------------------------------------------------------
    async def _sample_forever(self) -> None:
        while True:
            try:
                self.samples.append(await self.sample())
            except Exception as exc:  # the broker may be restarting: the chart shows a gap
                log.warning("agent offsets not sampled", extra={"reason": str(exc)})
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def sample(self) -> AgentSample:
        assert self._admin is not None and self._consumer is not None
        committed_offsets = await self._admin.list_consumer_group_offsets(self.group_id)
        committed: dict[str, int] = {}
        end: dict[str, int] = {}
        for agent, spec in AGENT_INPUTS.items():
            topic = spec.name(self.settings)
            parts = [tp for tp in committed_offsets if tp.topic == topic]
            if not parts:
                parts = [TopicPartition(topic, p) for p in await asyncio.to_thread(topic_partitions, self.settings, topic)]
            ends = await self._consumer.end_offsets(parts)
            end[agent] = sum(ends.values())
            committed[agent] = sum(max(0, committed_offsets[tp].offset) for tp in parts if tp in committed_offsets)
        return AgentSample(now_ms(), committed, end)

    # -- what the pages draw ----------------------------------------------------------------------
    def latency_series(self) -> dict[str, list[tuple[int, float]]]:
        """p50 and p99 upload-to-match latency (ms) per minute of the last hour."""
        out: dict[str, list[tuple[int, float]]] = {"p50": [], "p99": []}
        for start in sorted(self.minutes):
            histogram = self.minutes[start].latency
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                value = percentile_ms(histogram, q)
                if value is not None:
                    out[name].append((start, value))
        return out

    def bank_series(self, bank: str) -> list[tuple[int, float]]:
        """Effective matches of a bank per minute of the last hour (minutes without any: 0)."""
        now = now_ms()
        first = now - HORIZON_MS - (now - HORIZON_MS) % MINUTE_MS
        return [(start, float(self.minutes[start].matches.get(bank, 0)) if start in self.minutes else 0.0)
                for start in range(first + MINUTE_MS, now + 1, MINUTE_MS)]

    def agent_series(self) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[tuple[int, float]]]]:
        """(throughput in records/s, lag in records) per agent over the samples of the last hour."""
        samples = list(self.samples)
        throughput: dict[str, list[tuple[int, float]]] = {a: [] for a in AGENT_INPUTS}
        lag: dict[str, list[tuple[int, float]]] = {a: [] for a in AGENT_INPUTS}
        for before, after in zip(samples, samples[1:]):
            seconds = max(0.001, (after.at_ms - before.at_ms) / 1000)
            for agent in AGENT_INPUTS:
                throughput[agent].append((after.at_ms, max(0, after.committed[agent] - before.committed[agent]) / seconds))
        for s in samples:
            for agent in AGENT_INPUTS:
                lag[agent].append((s.at_ms, float(max(0, s.end[agent] - s.committed[agent]))))
        return throughput, lag

    def newest_feed(self) -> list[dict[str, Any]]:
        """The newest feed events, newest first."""
        return list(reversed(self.feed))
