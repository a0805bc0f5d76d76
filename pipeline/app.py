"""The Faust application: topics as raw bytes (our codecs decode them), agents, shared context."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import faust

from pipeline import metrics, transport
from pipeline import topics as T
from pipeline.banks import content_id_from_offset
from pipeline.config import Settings
from pipeline.deadletters import dead_letter
from pipeline.logs import log_handler
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import Change, CompactedTopicFollower, StalePositions
from pipeline.state.snapshot import export_snapshot, read_snapshot, snapshot_path, write_snapshot
from schemas.codec import DecodeError

log = logging.getLogger(__name__)
VIEW_STATS_EVERY_S = 60
PRODUCER_BATCH_BYTES = 1 << 20  # send_many hands over one batch per partition of an agent's batch


@dataclass
class PipelineContext:
    """What every agent of one worker shares: settings, topics, the bank view, executors."""

    settings: Settings
    app: faust.App
    topics: dict[str, faust.TopicT]
    view: BankView = field(default_factory=BankView)
    _follower: CompactedTopicFollower | None = None
    _view_lock: asyncio.Lock | None = None
    _snapshot_task: asyncio.Task | None = None
    _stats_task: asyncio.Task | None = None
    _snapshot_positions: dict[str, int] = field(default_factory=dict)  # of the newest snapshot
    _hash_pool: ProcessPoolExecutor | None = None
    _fetch_pool: ThreadPoolExecutor | None = None
    _index_pool: ThreadPoolExecutor | None = None

    def topic(self, spec: T.TopicSpec) -> faust.TopicT:
        return self.topics[spec.suffix]

    async def send(self, spec: T.TopicSpec, key: str | bytes | None, record: dict[str, Any], stage: str = "") -> None:
        """Encode and hand one record to the producer.

        Straight to Faust's producer (aiokafka's batching), without a per-message future of its
        own: Faust flushes the producer before it commits the offsets of what was consumed, so a
        record is on the broker before its input counts as processed.
        """
        value = spec.codec.encode(record, self.settings.output_encoding)
        metrics.records_out(stage, spec.suffix).inc()
        if isinstance(key, str):
            key = key.encode("utf-8")
        await self.app.producer.send(spec.name(self.settings), key, value, None, None, None)

    async def send_many(self, spec: T.TopicSpec, records: Sequence[tuple[str | bytes | None, dict[str, Any]]],
                        stage: str = "") -> None:
        """Encode records and hand them to the producer in one batch per partition.

        aiokafka's per-message send costs a future, a partitioner call and an accumulator append
        each; a batch per partition costs one future. Keys go to the partitions send() would pick
        (the Java client's murmur2), so tables keyed by them stay co-partitioned. As with send(),
        Faust flushes the producer before it commits the offsets of what was consumed.
        """
        if not records:
            return
        producer = self.app.producer._ensure_producer()
        topic = spec.name(self.settings)
        await producer.client._wait_on_metadata(topic)
        partitions = sorted(producer.client.cluster.partitions_for_topic(topic))
        encoding = self.settings.output_encoding
        batches: dict[int, Any] = {}
        for key, record in records:
            if isinstance(key, str):
                key = key.encode("utf-8")
            value = spec.codec.encode(record, encoding)
            partition = producer._partitioner(key, partitions, partitions)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                await producer.send_batch(batch, topic, partition=partition)
                batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:  # larger than a batch
                    await producer.send(topic, value, key=key, partition=partition)
        for partition, batch in batches.items():
            await producer.send_batch(batch, topic, partition=partition)
        metrics.records_out(stage, spec.suffix).inc(len(records))

    async def claim_content_id(self, bank: str) -> int:
        """A new bank content id (see ApiState.next_content_id: one counter for every writer)."""
        value = T.CONTENT_IDS.codec.encode({"bank": bank, "claimed_at": int(time.time() * 1000)})
        sent = await self.topic(T.CONTENT_IDS).send(key=bank.encode(), value=value)
        meta = await sent
        return content_id_from_offset(meta.offset, self.view.content_id_base)

    async def send_dead_letter(self, event: faust.EventT, reason: str, stage: str) -> None:
        msg = event.message
        record = dead_letter(
            msg.topic, msg.partition, msg.offset, msg.key, msg.value, reason, stage,
            max_value_bytes=self.settings.max_message_bytes,
        )
        metrics.DEAD_LETTERS.labels(stage).inc()
        await self.send(T.DEAD_LETTERS, msg.key, record, stage)

    async def decode_events(
        self, events: list[faust.EventT], spec: T.TopicSpec, stage: str, dead_letters: bool = True
    ) -> tuple[list[faust.EventT], list[dict[str, Any]]]:
        """The events of a batch that decode, with their records; the others go to the dead letters.

        Consumers that read the same records in several groups (shard workers) let one of them
        write the dead letter.
        """
        good, records = [], []
        metrics.RECORDS_IN.labels(stage).inc(len(events))
        for event in events:
            try:
                records.append(spec.codec.decode(event.value))
                good.append(event)
            except DecodeError as exc:
                if dead_letters:
                    await self.send_dead_letter(event, str(exc), stage)
        return good, records

    async def records(
        self, stream: faust.StreamT, spec: T.TopicSpec, stage: str
    ) -> AsyncIterator[tuple[faust.EventT, dict[str, Any]]]:
        """Decoded records of a stream, one at a time; undecodable ones go to the dead letters."""
        async for event in stream.events():
            metrics.RECORDS_IN.labels(stage).inc()
            try:
                record = spec.codec.decode(event.value)
            except DecodeError as exc:
                await self.send_dead_letter(event, str(exc), stage)
                continue
            yield event, record

    async def bank_view(self) -> BankView:
        """The bank view, following hma.banks and hma.bank-signals; waits until it has caught up.

        It starts from the local snapshot when there is one, reading only the records after it.
        """
        if self._view_lock is None:
            self._view_lock = asyncio.Lock()
        async with self._view_lock:
            if self._follower is None:
                self._follower = await self._start_follower()
                if self.settings.view_snapshot_interval_s > 0:
                    self._snapshot_task = asyncio.create_task(self._keep_snapshots(), name="view-snapshots")
                self._stats_task = asyncio.create_task(self._log_view_stats(), name="view-stats")
        await self._follower.ready.wait()
        return self.view

    # -- view snapshots ------------------------------------------------------------------------
    @property
    def _view_topics(self) -> dict[str, str]:
        return {spec.suffix: spec.name(self.settings) for spec in T.VIEW_TOPICS}

    @property
    def _snapshot_path(self) -> Path:
        return snapshot_path(self.settings, faust_app_id(self.settings))

    async def _start_follower(self) -> CompactedTopicFollower:
        started = time.monotonic()
        snap = None
        if self.settings.view_snapshot_interval_s > 0:
            snap = await asyncio.to_thread(read_snapshot, self._snapshot_path, self.settings, self._view_topics)
        if snap is not None:
            await asyncio.to_thread(self.view.load, snap.arrays, snap.meta)
            log.info("bank view loaded from snapshot", extra={
                "signals": self.view.signal_count(), "seconds": round(time.monotonic() - started, 1),
                "age_s": round(time.time() - snap.created_at), "positions": snap.positions})
            self._snapshot_positions = dict(snap.positions)
            follower = CompactedTopicFollower(self.settings, T.VIEW_TOPICS, self._apply_state, name="worker-state",
                                              start_positions=snap.positions)
            try:
                await follower.start()
                return follower
            except StalePositions as exc:
                log.warning("view snapshot does not fit the topics; reading them from the start",
                            extra={"reason": str(exc)})
                self.view.load(*BankView(shard=self.settings.shard).export())
                self._snapshot_positions = {}
        follower = CompactedTopicFollower(self.settings, T.VIEW_TOPICS, self._apply_state, name="worker-state")
        await follower.start()
        return follower

    async def _keep_snapshots(self) -> None:
        """Save the view once caught up (when the saved one is behind), then every interval."""
        assert self._follower is not None
        await self._follower.ready.wait()
        while True:
            await self.save_view_snapshot()
            await asyncio.sleep(self.settings.view_snapshot_interval_s)

    async def _log_view_stats(self) -> None:
        """Once a minute, the view's sizes: rows that should follow the signals, under churn too."""
        assert self._follower is not None
        await self._follower.ready.wait()
        while True:
            log.info("bank view", extra=self.view.stats())
            await asyncio.sleep(VIEW_STATS_EVERY_S)

    async def save_view_snapshot(self) -> None:
        """Write a snapshot if the view moved since the last one (a copy here, the writing on a thread)."""
        follower = self._follower
        if follower is None or not follower.ready.is_set() or follower.positions == self._snapshot_positions:
            return
        started = time.monotonic()
        snap = export_snapshot(self.view, follower.positions)
        await asyncio.to_thread(write_snapshot, snap, self._snapshot_path, self.settings, self._view_topics)
        self._snapshot_positions = snap.positions
        log.info("bank view snapshot saved", extra={
            "signals": self.view.signal_count(), "seconds": round(time.monotonic() - started, 1),
            "path": str(self._snapshot_path)})

    def _apply_state(self, spec: T.TopicSpec, changes: list[Change]) -> None:
        self.view.apply(spec, changes)

    @property
    def hash_pool(self) -> ProcessPoolExecutor:
        """Hashing runs in worker processes so that both cores hash while the loop stays free."""
        if self._hash_pool is None:
            self._hash_pool = ProcessPoolExecutor(self.settings.hash_workers, mp_context=get_context("spawn"))
        return self._hash_pool

    @property
    def index_pool(self) -> ThreadPoolExecutor:
        """One thread for index searches (see agents/matcher.py: lookup)."""
        if self._index_pool is None:
            self._index_pool = ThreadPoolExecutor(1, thread_name_prefix="index")
        return self._index_pool

    @property
    def fetch_pool(self) -> ThreadPoolExecutor:
        if self._fetch_pool is None:
            self._fetch_pool = ThreadPoolExecutor(8, thread_name_prefix="fetch")
        return self._fetch_pool

    async def close(self) -> None:
        for task in (self._snapshot_task, self._stats_task):
            if task is not None:
                task.cancel()
        if self._follower is not None:
            try:
                await self.save_view_snapshot()
            except Exception:  # a failed snapshot must not stop the shutdown
                log.exception("view snapshot not saved at shutdown")
            await self._follower.stop()
        for pool in (self._hash_pool, self._fetch_pool, self._index_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


# RocksDB options of every table partition. Faust's defaults (a 2 GB block cache and three 64 MB
# memtables per partition) let a worker's memory grow for hours towards gigabytes; these tables
# hold little (sketch chunks, pending shard partials, tallies).
ROCKSDB_OPTIONS = {"write_buffer_size": 8 << 20, "max_write_buffer_number": 2, "block_cache_size": 16 << 20}


def state_table(app: faust.App, name: str, **kwargs: Any) -> faust.Table:
    """A Faust table on RocksDB with bounded memory (ROCKSDB_OPTIONS)."""
    return app.Table(name, options=ROCKSDB_OPTIONS, **kwargs)


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Topics carry bytes; the codecs decode them, so bad records become dead letters, not crashes."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def faust_app_id(settings: Settings) -> str:
    """The consumer group: shared by the main workers; each index shard has its own."""
    shard = f"-shard-{settings.index_shard}" if settings.shard is not None else ""
    return f"{settings.topic_prefix}{settings.app_id}{shard}"


def worker_agents(settings: Settings) -> list[Any]:
    """The agent modules a worker runs: by role (replica, shard mode's main worker, shard worker)."""
    from pipeline.agents import actioner, feedback, flood, hasher, matcher, merger, recent, shard_matcher

    if settings.shard is not None:
        return [shard_matcher]
    return [hasher, matcher if settings.index_shards == 1 else merger, actioner, flood, feedback, recent]


def create_app(settings: Settings) -> tuple[faust.App, PipelineContext]:
    """The worker's Faust app with the agents of its role registered."""
    data_dir = settings.data_dir / ("worker" if settings.shard is None else f"worker-shard-{settings.index_shard}")
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        faust_app_id(settings),
        broker=[f"{transport.SCHEME}://{server}" for server in settings.bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.worker_web_port > 0,
        web_port=max(settings.worker_web_port, 1),
        web_bind="127.0.0.1",
        producer_acks=-1,
        producer_max_request_size=settings.max_request_bytes,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        autodiscover=False,
        loghandlers=[log_handler()],
    )
    topics = {spec.suffix: raw_topic(app, spec.name(settings)) for spec in T.ALL_TOPICS}
    ctx = PipelineContext(settings=settings, app=app, topics=topics, view=BankView(shard=settings.shard))

    @app.on_before_shutdown.connect
    async def close_context(app: faust.App, **kwargs: Any) -> None:
        await ctx.close()

    for module in worker_agents(settings):
        module.register(app, ctx)
    return app, ctx
