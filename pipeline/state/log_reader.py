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
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Iterable, Iterator, Mapping, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CKTopicPartition

from pipeline import kafka_clients
from pipeline.config import Settings
from pipeline.topics import TopicSpec
from schemas.codec import DecodeError

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10
BATCH = 20_000  # records per fetch from the reader, at most
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


Partition = tuple[str, int]  # topic, partition


class CompactedTopicFollower:
    """One librdkafka consumer per follower, for the catch-up and the live tail alike: its C client
    fetches and parses on threads of its own, and the event loop gets a batch of records as one
    list. (aiokafka, which followed the tail before, built a Python object per record on the loop:
    a fifth of a worker's CPU while an exchange fetch grew its bank, BENCHMARKS.md.)"""

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
        self._reader: Consumer | None = None
        self._fetching: ThreadPoolExecutor | None = None  # the one thread that calls the reader's consume
        self._end: dict[Partition, int] = {}  # the ends seen at start: `ready` once read up to them
        self._reached: dict[Partition, int] = {}  # past records and transaction markers (the ends reported)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._reader = kafka_clients.consumer(self.settings, {
            "group.id": f"hmas-{self.name}", "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": True,  # an end reached is reported, transaction markers included
            "isolation.level": "read_committed",  # the exchange fetcher writes its batches in transactions
            "client.id": f"hmas-{self.name}", "fetch.max.bytes": 64 * 2**20,
            "max.partition.fetch.bytes": 16 * 2**20, "queued.min.messages": 200_000,
        })
        self._fetching = ThreadPoolExecutor(1, thread_name_prefix=f"follow-{self.name}")
        partitions: list[Partition] = []
        for topic in self.specs:
            found = await asyncio.to_thread(topic_partitions, self.settings, topic)
            partitions.extend((topic, p) for p in sorted(found))
        marks = await asyncio.to_thread(self._offset_ranges, partitions)
        self._end = {tp: high for tp, (_, high) in marks.items()}
        topics = [topic for topic, _ in partitions]
        self._single = {tp for tp in partitions if topics.count(tp[0]) == 1}
        for (topic, partition), (low, high) in marks.items():
            offset = self.start_positions.get(topic)
            if offset is not None and (partition != 0 or not low <= offset <= high):
                await self.stop()
                raise StalePositions(f"{topic}[{partition}] holds offsets {low}..{high}, not {offset}")
        self._reader.assign([CKTopicPartition(topic, p, self.start_positions.get(topic, OFFSET_BEGINNING))
                             for topic, p in partitions])
        behind = sum(self._end.values()) - sum(self.positions.values())
        if behind > 0:
            log.info("reading state", extra={"view": self.name, "records": behind})
        self._task = asyncio.create_task(self._run(), name=f"follow-{self.name}")

    def _offset_ranges(self, partitions: list[Partition], timeout_s: float = 10.0) -> dict[Partition, tuple[int, int]]:
        """Low and high offsets (the high one: the last stable offset, as the reader reads committed)."""
        assert self._reader is not None
        return {(topic, p): _watermarks(self._reader, CKTopicPartition(topic, p), timeout_s) for topic, p in partitions}

    def _fetch(self) -> list:
        """Records already fetched, up to BATCH; else the first to come within 0.2 s and what came with it."""
        assert self._reader is not None
        messages = self._reader.consume(BATCH, 0)
        if not messages:
            messages = self._reader.consume(1, 0.2)
            if messages:
                messages += self._reader.consume(BATCH - 1, 0)
        return messages

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if not any(self._end.values()):
            self.ready.set()
        started = last_report = time.monotonic()
        first = sum(self.positions.values())
        while True:
            if not self.ready.is_set() and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                last_report = time.monotonic()
                self._report_progress(first, last_report - started)
            messages = await loop.run_in_executor(self._fetching, self._fetch)
            by_topic: dict[str, list] = {}
            for msg in messages:
                error = msg.error()
                if error is None:
                    by_topic.setdefault(msg.topic(), []).append(msg)
                    if self._reached:  # a record past an end reported before: that end is behind
                        self._reached.pop((msg.topic(), msg.partition()), None)
                elif error.code() == KafkaError._PARTITION_EOF:
                    self._reached[msg.topic(), msg.partition()] = msg.offset()
                elif error.fatal():
                    raise KafkaException(error)
                else:  # librdkafka retries on its own (a broker down, a leader moving): say so, go on
                    log.warning("state read error", extra={"view": self.name, "reason": error.str()})
            for topic, records in by_topic.items():
                changes = self._decoded(topic, [(m.key(), m.value()) for m in records])
                if changes:
                    result = self.apply(self.specs[topic], changes)
                    if asyncio.iscoroutine(result):
                        await result
                self.positions[topic] = records[-1].offset() + 1
            if not self.ready.is_set():
                consumed = self._consumed()
                if all(consumed.get(tp, 0) >= end for tp, end in self._end.items() if end):
                    log.info("state caught up", extra={"view": self.name, "positions": dict(self.positions)})
                    self.ready.set()

    def _decoded(self, topic: str, pairs: list[tuple[bytes | None, bytes | None]]) -> list[Change]:
        """The changes of (key, value) records, skipping the keys this reader does not hold."""
        spec, keep = self.specs[topic], self.holds_key.get(topic)
        if keep is not None:
            pairs = [(k, v) for k, v in pairs if k is None or keep(k)]
        return [c for c in (decode_change(spec, k, v) for k, v in pairs) if c is not None]

    def _consumed(self) -> dict[Partition, int]:
        """How far this reader has read each partition: past its records, and past the transaction
        markers after them (they occupy offsets but are no records) once it reached the end."""
        assert self._reader is not None
        out = dict(self._reached)
        for tp in self._reader.position([CKTopicPartition(t, p) for t, p in self._end]):
            if tp.offset >= 0:
                out[tp.topic, tp.partition] = max(out.get((tp.topic, tp.partition), 0), tp.offset)
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

    async def _current_ends(self) -> dict[Partition, int]:
        marks = await asyncio.to_thread(self._offset_ranges, list(self._end))
        return {tp: high for tp, (_, high) in marks.items()}

    async def end_offsets(self) -> dict[str, int]:
        """The topics' current end offsets (summed over partitions)."""
        out: dict[str, int] = {}
        for (topic, _), end in (await self._current_ends()).items():
            out[topic] = out.get(topic, 0) + end
        return out

    async def lag(self) -> dict[str, int]:
        """Records (and transaction markers) not read yet, per topic name, up to the current ends."""
        consumed = self._consumed()
        out: dict[str, int] = {}
        for tp, end in (await self._current_ends()).items():
            out[tp[0]] = out.get(tp[0], 0) + max(0, end - consumed.get(tp, 0))
        return out

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
        if self._fetching is not None:  # a consume under way ends within 0.2 s; the reader closes after it
            await asyncio.get_running_loop().run_in_executor(None, self._fetching.shutdown, True)
            self._fetching = None
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await asyncio.to_thread(reader.close)


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
