"""The one Kafka producer adapter of every process: records encoded by their topic's codec, sent
alone or in batches, dead letters, and each delivery's result checked.

The worker's flavour sits on the aiokafka producer inside Faust's (Faust flushes it before it
commits the offsets of what was consumed); the API's on an AIOKafkaProducer of its own. Both go
through aiokafka's public producer API: `send`, `create_batch`/`send_batch`, `partitions_for`,
and `aiokafka.partitioner.DefaultPartitioner` (the Java client's murmur2, the one `send` uses), so
a key lands on the partition `send` would pick and tables keyed by it stay co-partitioned.

No send waits for its delivery: each delivery future gets a done-callback that counts, logs and
reports a failure (`on_failure`; the worker stops on it, so the input's offsets are not committed
past a lost output). Callers that need the record's offset use `deliver`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from pipeline import kafka_clients, metrics
from pipeline import topics as T
from pipeline.config import Settings
from pipeline.deadletters import dead_letter

log = logging.getLogger(__name__)

Key = str | bytes | None
KeyedRecord = tuple[Key, dict[str, Any]]
Write = tuple[T.TopicSpec, Key, dict[str, Any] | None]  # None: a tombstone
PARTITIONER = DefaultPartitioner()
PRODUCER_BATCH_BYTES = 1 << 20  # a producer that sends records in bulk hands over one batch per partition


class DeliveryFailed(Exception):
    """A record the broker did not take: the process must not count its input as done."""


def _key_bytes(key: Key) -> bytes | None:
    return key.encode("utf-8") if isinstance(key, str) else key


def new_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """A producer of the API and tools: every replica acknowledges, no duplicates on retries."""
    return kafka_clients.aio_producer(
        settings, acks="all", enable_idempotence=True, max_request_size=settings.max_request_bytes, **options,
    )


def bulk_options(settings: Settings) -> dict[str, Any]:
    """Options of a producer that sends thousands of records at once (`deliver`, `send_many`)."""
    return {"max_batch_size": min(PRODUCER_BATCH_BYTES, settings.max_request_bytes)}


class Output:
    """Encoding, batching and checked delivery to the topics of one process."""

    def __init__(self, settings: Settings, producer: Callable[[], AIOKafkaProducer],
                 on_failure: Callable[[DeliveryFailed], None] | None = None) -> None:
        self.settings = settings
        self._producer = producer  # called at each send: Faust makes its producer when the worker starts
        self._on_failure = on_failure
        self.failure: DeliveryFailed | None = None  # the first delivery that failed

    async def send(self, spec: T.TopicSpec, key: Key, record: dict[str, Any], stage: str = "") -> None:
        """Encode and hand one record to the producer (aiokafka's batching); its delivery is checked."""
        value = spec.codec.encode(record, self.settings.output_encoding)
        topic = spec.name(self.settings)
        sent = await self._producer().send(topic, value, key=_key_bytes(key))
        sent.add_done_callback(self._checker(spec, 1))
        metrics.records_out(stage, spec.suffix).inc()

    async def send_many(self, spec: T.TopicSpec, records: Sequence[KeyedRecord], stage: str = "") -> None:
        """Encode records and hand them to the producer in one batch per partition.

        aiokafka's per-message send costs a future, a partitioner call and an accumulator append
        each; a batch per partition costs one future, whose delivery is checked.
        """
        if not records:
            return
        encoding = self.settings.output_encoding
        batches = Batches(self._producer(), self.settings)
        await batches.add_all((spec, key, spec.codec.encode(record, encoding)) for key, record in records)
        for sent in await batches.close():
            sent.future.add_done_callback(self._checker(sent.spec, len(sent.positions)))
        metrics.records_out(stage, spec.suffix).inc(len(records))

    async def deliver(self, writes: Sequence[Write], encoding: str = "json") -> list[RecordMetadata]:
        """Send records (None = tombstone), in batches per partition, and wait for their delivery:
        where each one landed, in the order of `writes`."""
        landed: list[RecordMetadata | None] = [None] * len(writes)
        for batch, first in await self._delivered(writes, encoding):
            for i, position in enumerate(batch.positions):  # a batch's records have consecutive offsets
                landed[position] = first._replace(offset=first.offset + i)
        return landed  # type: ignore[return-value]

    async def deliver_offsets(self, writes: Sequence[Write], encoding: str = "json") -> list[int]:
        """`deliver`, for a caller that needs only the offsets (a claim's) or nothing (a
        transaction's records): no metadata object per record."""
        offsets = [0] * len(writes)
        for batch, first in await self._delivered(writes, encoding):
            for offset, position in enumerate(batch.positions, first.offset):
                offsets[position] = offset
        return offsets

    async def _delivered(self, writes: Sequence[Write], encoding: str) -> list[tuple[SentBatch, RecordMetadata]]:
        """The batches that carried `writes` and the metadata of each one's first record, once
        delivered. A run of the same record object (identical claims) is encoded once."""
        if not writes:
            return []
        encoded: list[tuple[T.TopicSpec, Key, bytes | None]] = []
        last: tuple[T.TopicSpec, Any, bytes | None] = (writes[0][0], None, None)
        for spec, key, record in writes:
            if record is not last[1] or spec is not last[0]:
                last = (spec, record, None if record is None else spec.codec.encode(record, encoding))
            encoded.append((spec, key, last[2]))
        try:
            batches = Batches(self._producer(), self.settings)
            await batches.add_all(encoded)
            sent = await batches.close()
            return list(zip(sent, await asyncio.gather(*(b.future for b in sent))))
        except Exception as exc:
            raise self._lost(writes[0][0].suffix, len(writes), exc) from exc

    async def send_dead_letter(self, message: Any, reason: str, stage: str, kind: str = "undecodable") -> None:
        """A hma.dead-letters record for a consumed message (a Faust Message) that could not be
        processed; `kind` is the reason's class, for hmas_dead_letters_total."""
        record = dead_letter(
            message.topic, message.partition, message.offset, message.key, message.value, reason, stage,
            max_value_bytes=self.settings.max_message_bytes,
        )
        metrics.DEAD_LETTERS.labels(stage, kind).inc()
        await self.send(T.DEAD_LETTERS, message.key, record, stage)

    def _checker(self, spec: T.TopicSpec, records: int) -> Callable[[asyncio.Future], None]:
        def check(sent: asyncio.Future) -> None:
            if sent.cancelled():
                exc: BaseException = asyncio.CancelledError()
            elif sent.exception() is None:
                return
            else:
                exc = sent.exception()  # type: ignore[assignment]
            self.delivery_failed(spec.suffix, records, exc)
        return check

    def delivery_failed(self, topic: str, records: int, exc: BaseException) -> None:
        """Report a lost delivery of `records` to a topic (its suffix) that nothing waits for; the
        first one is kept in `failure`."""
        failure = self._lost(topic, records, exc)
        if self.failure is None:
            self.failure = failure
        if self._on_failure is not None:
            self._on_failure(failure)

    @staticmethod
    def _lost(topic: str, records: int, exc: BaseException) -> DeliveryFailed:
        """Count and log (no payload) a lost delivery; the error to raise or report."""
        metrics.DELIVERY_FAILURES.labels(topic).inc(records)
        log.error("delivery failed", extra={"topic": topic, "records": records, "error": type(exc).__name__,
                                            "reason": str(exc)})
        failure = DeliveryFailed(f"{records} record(s) to {topic} not delivered: {type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        return failure


@dataclass
class SentBatch:
    """A batch handed to the producer: its delivery future (the first record's metadata) and the
    positions of its records among those added."""

    spec: T.TopicSpec
    future: asyncio.Future
    positions: list[int]


class Batches:
    """Encoded records gathered into one aiokafka batch per topic partition (another when one is
    full) and handed to the producer with `send_batch`: one future per batch, not per record. A
    one-partition topic needs no partitioner call."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.producer = producer
        self.settings = settings
        self._added = 0
        self._open: dict[tuple[str, int], tuple[T.TopicSpec, Any, list[int]]] = {}
        self._partitions: dict[str, list[int]] = {}
        self._sent: list[SentBatch] = []

    async def add(self, spec: T.TopicSpec, key: Key, value: bytes | None) -> None:
        if self._append(spec, key, value):
            return
        topic = spec.name(self.settings)
        if topic not in self._partitions:
            self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        partition = self._partition(topic, _key_bytes(key))
        if (topic, partition) in self._open:  # full: send it, start another
            await self._send(topic, partition)
        self._new(spec, topic, partition)
        if not self._append(spec, key, value):  # larger than a batch: alone
            future = await self.producer.send(topic, value, key=_key_bytes(key), partition=partition)
            self._sent.append(SentBatch(spec, future, [self._added]))
            self._added += 1

    async def add_all(self, records: Iterable[tuple[T.TopicSpec, Key, bytes | None]]) -> None:
        """`add` of each record, in order; a record that fits the open batch of its partition
        costs no coroutine."""
        for spec, key, value in records:
            if not self._append(spec, key, value):
                await self.add(spec, key, value)

    def _append(self, spec: T.TopicSpec, key: Key, value: bytes | None) -> bool:
        """The record appended to its partition's open batch; False if none is open or it is full."""
        topic = spec.name(self.settings)
        if topic not in self._partitions:
            return False
        key = _key_bytes(key)
        entry = self._open.get((topic, self._partition(topic, key)))
        if entry is None or entry[1].append(key=key, value=value, timestamp=None) is None:
            return False
        entry[2].append(self._added)
        self._added += 1
        return True

    def _partition(self, topic: str, key: bytes | None) -> int:
        partitions = self._partitions[topic]
        return partitions[0] if len(partitions) == 1 else PARTITIONER(key, partitions, partitions)

    async def close(self) -> list[SentBatch]:
        """Sends the batches still open; every batch sent, in the order sent."""
        for topic, partition in list(self._open):
            await self._send(topic, partition)
        return self._sent

    def _new(self, spec: T.TopicSpec, topic: str, partition: int) -> tuple[T.TopicSpec, Any, list[int]]:
        entry = self._open[topic, partition] = (spec, self.producer.create_batch(), [])
        return entry

    async def _send(self, topic: str, partition: int) -> None:
        spec, batch, positions = self._open.pop((topic, partition))
        if positions:
            future = await self.producer.send_batch(batch, topic, partition=partition)
            self._sent.append(SentBatch(spec, future, positions))
