"""Readers of the compacted topics that every process builds its views from.

`CompactedTopicFollower` reads from the start of each topic without a consumer group (every
process needs every partition) and keeps following; `ready` is set once it has read up to the end
offsets it saw when it started. `read_to_end` (every record) and `read_latest` (the current value
of each key) are the blocking forms for command-line tools.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable, Iterator, Mapping, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CKTopicPartition

from pipeline import kafka_clients
from pipeline.config import Settings
from pipeline.topics import TopicSpec
from schemas.codec import DecodeError

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10
BULK_FROM = 50_000  # records behind on a topic at start from which it is read in bulk (librdkafka)
BULK_BATCH = 20_000  # records per bulk fetch
Value = TypeVar("Value")
Change = tuple[str, dict | None]  # key, decoded value (None = tombstone)
ApplyBatch = Callable[[TopicSpec, list[Change]], Awaitable[None] | None]
KeyFilter = Callable[[bytes], bool]  # a record's key as read, not decoded


def decode_change(spec: TopicSpec, key: bytes | None, value: bytes | None) -> Change | None:
    """A record of a compacted topic as (key, value); None for a record that cannot be read."""
    if key is None:
        return None
    text_key = key.decode("utf-8", errors="replace")
    if value is None:
        return text_key, None
    try:
        return text_key, spec.codec.decode(value)
    except DecodeError as exc:
        log.warning("skipping unreadable state record", extra={"topic": spec.suffix, "key": text_key, "reason": str(exc)})
        return None


class StalePositions(Exception):
    """Start positions that the topics no longer have (recreated or truncated): read from the start."""


class CompactedTopicFollower:
    def __init__(
        self, settings: Settings, specs: Iterable[TopicSpec], apply: ApplyBatch, name: str = "state",
        start_positions: dict[str, int] | None = None, holds_key: Mapping[TopicSpec, KeyFilter] | None = None,
    ) -> None:
        """`holds_key`: per topic, which keys the reader keeps; the others are skipped before they
        are decoded (a shard worker reads every bank signal's record but keeps one shard's)."""
        self.settings = settings
        self.specs = {spec.name(settings): spec for spec in specs}
        self.holds_key = {spec.name(settings): keep for spec, keep in (holds_key or {}).items()}
        self.apply = apply
        self.name = name
        self.ready = asyncio.Event()
        self.start_positions = dict(start_positions or {})  # single-partition topics: topic -> offset
        self.positions: dict[str, int] = dict(self.start_positions)  # topic -> records consumed (sum of offsets)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._consumer = kafka_clients.aio_consumer(
            self.settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # the exchange fetcher writes its batches in transactions
            client_id=f"hmas-{self.name}",
        )
        await self._consumer.start()
        partitions = []
        for topic in self.specs:
            found = await self._wait_for_partitions(topic)
            partitions.extend(TopicPartition(topic, p) for p in sorted(found))
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._end = await self._consumer.end_offsets(partitions)
        self._single = [tp for tp in partitions if [p.topic for p in partitions].count(tp.topic) == 1]
        if self.start_positions:
            await self._seek_to_start_positions(partitions)
        self._task = asyncio.create_task(self._run(), name=f"follow-{self.name}")

    async def _seek_to_start_positions(self, partitions: list[TopicPartition]) -> None:
        assert self._consumer is not None
        begin = await self._consumer.beginning_offsets(partitions)
        for tp in partitions:
            if tp.topic not in self.start_positions:
                continue
            offset = self.start_positions[tp.topic]
            if tp.partition != 0 or not begin[tp] <= offset <= self._end[tp]:
                await self.stop()
                raise StalePositions(f"{tp.topic}[{tp.partition}] holds offsets {begin[tp]}..{self._end[tp]}, not {offset}")
            self._consumer.seek(tp, offset)

    async def _wait_for_partitions(self, topic: str) -> set[int]:
        return await asyncio.to_thread(topic_partitions, self.settings, topic)

    async def _run(self) -> None:
        assert self._consumer is not None
        if not any(self._end.values()):
            self.ready.set()
        started = last_report = time.monotonic()
        first = sum(self.positions.values())
        await self._catch_up_in_bulk(first, started)
        while True:
            if not self.ready.is_set() and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                last_report = time.monotonic()
                self._report_progress(first, last_report - started)
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batches.items():
                changes = self._changes(tp.topic, records)
                if changes:
                    result = self.apply(self.specs[tp.topic], changes)
                    if asyncio.iscoroutine(result):
                        await result
                self.positions[tp.topic] = records[-1].offset + 1
            if not self.ready.is_set():
                consumed = self.positions if batches else await self._consumed()  # idle: count markers too
                if all(consumed.get(tp.topic, 0) >= end for tp, end in self._end.items() if end):
                    log.info("state caught up", extra={"view": self.name, "positions": dict(self.positions)})
                    self.ready.set()

    def _changes(self, topic: str, records: list) -> list[Change]:
        return self._decoded(topic, [(r.key, r.value) for r in records])

    def _decoded(self, topic: str, pairs: list[tuple[bytes | None, bytes | None]]) -> list[Change]:
        """The changes of (key, value) records, skipping the keys this reader does not hold."""
        spec, keep = self.specs[topic], self.holds_key.get(topic)
        if keep is not None:
            pairs = [(k, v) for k, v in pairs if k is None or keep(k)]
        return [c for c in (decode_change(spec, k, v) for k, v in pairs) if c is not None]

    async def _catch_up_in_bulk(self, first: int, started: float) -> None:
        """Read what a single-partition topic holds past BULK_FROM records behind with librdkafka,
        whose C consumer fetches on a thread while the loop decodes and applies (aiokafka's
        per-record Python costs more than the decoding: 10M bank signals took hours); aiokafka
        then follows on from where this stopped."""
        assert self._consumer is not None
        behind = {tp: end - self.positions.get(tp.topic, 0) for tp, end in self._end.items() if tp in self._single}
        bulk = [tp for tp, records in behind.items() if records > BULK_FROM]
        if not bulk:
            return
        log.info("reading state in bulk", extra={"view": self.name, "records": sum(behind[tp] for tp in bulk)})
        reader = kafka_clients.consumer(self.settings, {
            "group.id": f"hmas-{self.name}-bulk", "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": "read_committed", "fetch.max.bytes": 64 * 2**20,
            "max.partition.fetch.bytes": 16 * 2**20, "queued.min.messages": 200_000,
        })
        pending = {tp.topic for tp in bulk}
        try:
            reader.assign([CKTopicPartition(tp.topic, tp.partition, self.positions.get(tp.topic, OFFSET_BEGINNING))
                           for tp in bulk])
            last_report = time.monotonic()
            while pending:
                messages = await asyncio.to_thread(reader.consume, BULK_BATCH, 0.5)
                by_topic: dict[str, list] = {}
                for msg in messages:
                    if msg.error() is None:
                        by_topic.setdefault(msg.topic(), []).append(msg)
                    elif msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.topic())
                    else:
                        raise RuntimeError(str(msg.error()))
                for topic, records in by_topic.items():
                    spec = self.specs[topic]
                    changes = self._decoded(topic, [(m.key(), m.value()) for m in records])
                    if changes:
                        result = self.apply(spec, changes)
                        if asyncio.iscoroutine(result):
                            await result
                    self.positions[topic] = records[-1].offset() + 1
                if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    self._report_progress(first, last_report - started)
        finally:
            reader.close()
        for tp in bulk:
            self._consumer.seek(tp, self.positions[tp.topic])

    async def _consumed(self) -> dict[str, int]:
        """How far this reader has read each topic: past its records, and past the transaction
        markers after them (they occupy offsets but are no records)."""
        assert self._consumer is not None
        out = dict(self.positions)
        for tp in self._single:
            out[tp.topic] = max(out.get(tp.topic, 0), await self._consumer.position(tp))
        return out

    def _report_progress(self, first: int, elapsed_s: float) -> None:
        """Catching up on a large state topic takes minutes: say how far, how fast, how long still."""
        total = sum(self._end.values())
        done = sum(self.positions.values())
        rate = (done - first) / elapsed_s if elapsed_s > 0 else 0
        log.info("reading state", extra={
            "view": self.name, "records": done, "of": total, "per_s": round(rate),
            "eta_s": round((total - done) / rate) if rate > 0 else None,
        })

    async def end_offsets(self) -> dict[str, int]:
        """The topics' current end offsets (summed over partitions)."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._end))
        out: dict[str, int] = {}
        for tp, end in ends.items():
            out[tp.topic] = out.get(tp.topic, 0) + end
        return out

    async def lag(self) -> dict[str, int]:
        """Records (and transaction markers) not read yet, per topic name, up to the current ends."""
        consumed = await self._consumed()
        return {topic: max(0, end - consumed.get(topic, 0)) for topic, end in (await self.end_offsets()).items()}

    async def behind(self) -> bool:
        """Whether records exist that this view has not read yet."""
        return any((await self.lag()).values())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._consumer is not None:
            await self._consumer.stop()


def topic_partitions(settings: Settings, topic: str, timeout_s: float = 10.0) -> set[int]:
    """The partition numbers of a topic; an error naming the topic if it does not exist."""
    consumer = kafka_clients.consumer(settings, {"group.id": "hmas-metadata"})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    finally:
        consumer.close()
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"topic {topic} does not exist; run `hmas topics create` first")
    return set(meta.partitions)


def _watermarks(consumer: Consumer, tp: CKTopicPartition, timeout_s: float) -> tuple[int, int]:
    """Low and high offsets, retried while a new topic's partition is still getting its leader."""
    return _while_leaderless(lambda: consumer.get_watermark_offsets(tp, timeout=timeout_s), timeout_s)


def _while_leaderless(call: Callable[[], Value], timeout_s: float) -> Value:
    """A broker request, retried while a new topic's partition is still getting its leader."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not exc.args[0].retriable() and exc.args[0].code() != KafkaError.NOT_LEADER_FOR_PARTITION:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_to_end(settings: Settings, spec: TopicSpec, timeout_s: float = 30.0) -> list[Change]:
    """Every record of a compacted topic up to its current end, in order (blocking)."""
    return list(iter_to_end(settings, spec, timeout_s))


def iter_to_end(settings: Settings, spec: TopicSpec, timeout_s: float = 30.0, batch: int = 10_000) -> Iterator[Change]:
    """read_to_end's records one at a time, fetched `batch` at a time: a reader that keeps less
    than every record (a digest, a count) never holds them all."""
    topic = spec.name(settings)
    consumer = kafka_clients.consumer(settings, {
        "group.id": "hmas-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        parts = sorted(topic_partitions(settings, topic, timeout_s))
        pending = set()
        for p in parts:
            low, high = _watermarks(consumer, CKTopicPartition(topic, p), timeout_s)
            if high > low:
                pending.add(p)
        consumer.assign([CKTopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        idle_since = time.monotonic()
        while pending:
            messages = consumer.consume(batch, 0.1)  # what arrived within 0.1 s, up to `batch`
            if not messages:
                if time.monotonic() - idle_since > timeout_s:
                    raise TimeoutError(f"no records from {topic} within {timeout_s}s")
                continue
            idle_since = time.monotonic()
            for msg in messages:
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise RuntimeError(str(msg.error()))
                change = decode_change(spec, msg.key(), msg.value())
                if change is not None:
                    yield change
    finally:
        consumer.close()


def read_latest(settings: Settings, spec: TopicSpec, timeout_s: float = 30.0) -> dict[str, dict]:
    """The current value of every key of a compacted topic (blocking): what compaction keeps."""
    latest: dict[str, dict] = {}
    for key, record in read_to_end(settings, spec, timeout_s):
        if record is None:
            latest.pop(key, None)
        else:
            latest[key] = record
    return latest


def read_at(settings: Settings, spec: TopicSpec, positions: list[tuple[int, int]], timeout_s: float = 30.0) -> dict:
    """The decoded records at (partition, offset) positions (blocking): {(partition, offset): record}."""
    topic = spec.name(settings)
    wanted = set(positions)
    found: dict[tuple[int, int], dict] = {}
    consumer = kafka_clients.consumer(settings, {"group.id": "hmas-reader", "enable.auto.commit": False})
    try:
        for partition in sorted({p for p, _ in wanted}):
            offsets = sorted(o for p, o in wanted if p == partition)
            consumer.assign([CKTopicPartition(topic, partition, offsets[0])])
            deadline = time.monotonic() + timeout_s
            while any((partition, o) not in found for o in offsets) and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error():
                    continue
                if (partition, msg.offset()) in wanted:
                    change = decode_change(spec, msg.key(), msg.value())
                    if change is not None and change[1] is not None:
                        found[(partition, msg.offset())] = change[1]
                if msg.offset() >= offsets[-1]:
                    break
                nxt = next((o for o in offsets if o > msg.offset() and (partition, o) not in found), None)
                if nxt is not None and nxt > msg.offset() + 1000:
                    consumer.seek(CKTopicPartition(topic, partition, nxt))
    finally:
        consumer.close()
    return found


def read_tail(settings: Settings, spec: TopicSpec, per_partition: int, timeout_s: float = 30.0) -> tuple[int, list[dict]]:
    """How many records the topic keeps, and the newest `per_partition` of each partition (blocking);
    (0, []) when the topic does not exist. Reads only the tail: never the whole topic."""
    topic = spec.name(settings)
    consumer = kafka_clients.consumer(settings, {"group.id": "hmas-reader", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0, []
        kept, positions = 0, []
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(CKTopicPartition(topic, partition), timeout=timeout_s)
            kept += high - low
            positions += [(partition, o) for o in range(max(low, high - per_partition), high)]
    finally:
        consumer.close()
    found = read_at(settings, spec, positions, timeout_s) if positions else {}
    return kept, [found[p] for p in positions if p in found]


def read_key_near(settings: Settings, spec: TopicSpec, key: str, since_ms: int, until_ms: int,
                  max_records: int = 50_000, timeout_s: float = 30.0) -> list[dict]:
    """The records of one key written between two times (blocking), oldest first: each partition
    is read from the offset for `since_ms` up to `until_ms`, at most `max_records` in all. A look-up
    of a record whose time is about known, never a scan of the whole topic."""
    topic = spec.name(settings)
    wanted = key.encode()
    consumer = kafka_clients.consumer(settings, {"group.id": "hmas-reader", "enable.auto.commit": False,
                                                 "enable.partition.eof": True, "isolation.level": "read_committed"})
    found: list[tuple[int, dict]] = []
    try:
        parts = sorted(topic_partitions(settings, topic, timeout_s))
        starts = _while_leaderless(lambda: consumer.offsets_for_times(
            [CKTopicPartition(topic, p, since_ms) for p in parts], timeout=timeout_s), timeout_s)
        pending = {tp.partition for tp in starts if tp.offset >= 0}
        consumer.assign([tp for tp in starts if tp.offset >= 0])
        read, deadline = 0, time.monotonic() + timeout_s
        while pending and read < max_records and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            read += 1
            if msg.timestamp()[1] > until_ms:
                pending.discard(msg.partition())
                consumer.pause([CKTopicPartition(topic, msg.partition())])
                continue
            if msg.key() == wanted:
                change = decode_change(spec, msg.key(), msg.value())
                if change is not None and change[1] is not None:
                    found.append((msg.timestamp()[1], change[1]))
    finally:
        consumer.close()
    return [record for _, record in sorted(found, key=lambda f: f[0])]


def end_offset(settings: Settings, spec: TopicSpec, timeout_s: float = 30.0) -> int:
    """The topic's end offset, summed over its partitions (blocking): for the one-partition
    hma.content-ids, the offset the next claim gets."""
    topic = spec.name(settings)
    consumer = kafka_clients.consumer(settings, {"group.id": "hmas-reader", "enable.auto.commit": False})
    try:
        parts = sorted(topic_partitions(settings, topic, timeout_s))
        return sum(_watermarks(consumer, CKTopicPartition(topic, p), timeout_s)[1] for p in parts)
    finally:
        consumer.close()
