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
from typing import Any, Callable, Sequence

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


class DeliveryFailed(Exception):
    """A record the broker did not take: the process must not count its input as done."""


def _key_bytes(key: Key) -> bytes | None:
    return key.encode("utf-8") if isinstance(key, str) else key


def new_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer of the API and tools: every replica acknowledges, no duplicates on retries."""
    return kafka_clients.aio_producer(
        settings, acks="all", enable_idempotence=True, max_request_size=settings.max_request_bytes,
    )


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
        producer = self._producer()
        topic = spec.name(self.settings)
        partitions = sorted(await producer.partitions_for(topic))
        encoding = self.settings.output_encoding
        batches: dict[int, Any] = {}
        counts: dict[int, int] = {}
        for key, record in records:
            if isinstance(key, str):
                key = key.encode("utf-8")
            value = spec.codec.encode(record, encoding)
            partition = PARTITIONER(key, partitions, partitions)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
                counts[partition] = 0
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                await self._send_batch(producer, batch, spec, partition, counts[partition])
                batch = batches[partition] = producer.create_batch()
                counts[partition] = 0
                if batch.append(key=key, value=value, timestamp=None) is None:  # larger than a batch
                    sent = await producer.send(topic, value, key=key, partition=partition)
                    sent.add_done_callback(self._checker(spec, 1))
                    continue
            counts[partition] += 1
        for partition, batch in batches.items():
            if counts[partition]:
                await self._send_batch(producer, batch, spec, partition, counts[partition])
        metrics.records_out(stage, spec.suffix).inc(len(records))

    async def _send_batch(self, producer: AIOKafkaProducer, batch: Any, spec: T.TopicSpec, partition: int,
                          count: int) -> None:
        sent = await producer.send_batch(batch, spec.name(self.settings), partition=partition)
        sent.add_done_callback(self._checker(spec, count))

    async def deliver(self, writes: Sequence[Write], encoding: str = "json") -> list[RecordMetadata]:
        """Send records (None = tombstone) and wait for their delivery: where each one landed."""
        producer = self._producer()
        pending = []
        for spec, key, record in writes:
            value = None if record is None else spec.codec.encode(record, encoding)
            pending.append(await producer.send(spec.name(self.settings), value, key=_key_bytes(key)))
        try:
            return list(await asyncio.gather(*pending))
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
