"""A blocking Kafka client for tools and tests: produce records through the codecs, read topics."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition

from pipeline import kafka_clients
from pipeline.config import Settings
from pipeline.topics import TopicSpec


class Client:
    def __init__(self, settings: Settings, encoding: str = "json") -> None:
        self.settings = settings
        self.encoding = encoding
        self._producer: Producer | None = None
        self._delivery_errors: list[str] = []  # filled by delivery callbacks, raised by produce/flush

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = kafka_clients.producer(self.settings, {
                "enable.idempotence": True,
                "acks": "all",  # idempotence asks for it too: every in-sync replica has the record
                "log_level": 3,  # a new broker's "coordinator load in progress" is retried, not news
                "linger.ms": 5,
                "message.max.bytes": self.settings.max_request_bytes,
            })
        return self._producer

    def produce(self, spec: TopicSpec, key: str | None, record: dict[str, Any] | None) -> None:
        """Produce one record (None = tombstone), encoded with the topic's codec."""
        value = None if record is None else spec.codec.encode(record, self.encoding)
        self.produce_raw(spec, key, value)

    def produce_raw(self, spec: TopicSpec, key: str | bytes | None, value: bytes | None) -> None:
        """Hand one record to the producer; a delivery that failed since the last check raises."""
        while True:
            try:
                self.producer.produce(spec.name(self.settings), key=key, value=value, on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)
        self._raise_failed_delivery()

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def _raise_failed_delivery(self) -> None:
        """Every delivery's result is looked at: the first failure reported so far raises, once."""
        if self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise KafkaException(f"{len(errors)} record(s) not delivered; first: {errors[0]}")

    def claim_content_id(self, bank: str) -> int:
        """A new bank content id (pipeline/services/content_ids.py: one counter for every writer)."""
        from pipeline.services.content_ids import claim_content_ids

        [content_id] = claim_content_ids(self.settings, bank)
        return content_id

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record is delivered; raises if one was not (or the time ran out)."""
        if self._producer is not None and self._producer.flush(timeout_s) > 0:
            raise TimeoutError(f"records still unsent after {timeout_s}s")
        self._raise_failed_delivery()

    def read(
        self,
        spec: TopicSpec | str,
        from_beginning: bool = True,
        idle_timeout_s: float | None = None,
        max_records: int | None = None,
        raw: bool = False,
        timeout_s: float | None = None,
        to_end: bool = False,
    ) -> Iterator[tuple[str | None, Any]]:
        """Yield (key, decoded value) from every partition; a topic given by name (not one of the
        pipeline's specs) yields raw values. Reads committed records only (isolation level
        read_committed): what a transaction aborted is never seen.

        Stops after max_records, after idle_timeout_s without a record, after timeout_s in all, or
        (`to_end`) once every partition has been read to its end: what was written before the
        read, without waiting out an idle time to know that nothing more is there.
        """
        if isinstance(spec, str):
            topic, raw = spec, True
        else:
            topic = spec.name(self.settings)
        consumer = kafka_clients.consumer(self.settings, {
            "group.id": f"hmas-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": to_end,  # an event at each partition's end (its last committed record)
        })
        try:
            meta = consumer.list_topics(topic, timeout=10)
            parts = list(meta.topics[topic].partitions)
            not_at_end = set(parts)
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            consumer.assign([TopicPartition(topic, p, start) for p in parts])
            seen = 0
            last = time.monotonic()
            deadline = None if timeout_s is None else last + timeout_s
            while max_records is None or seen < max_records:
                if deadline is not None and time.monotonic() > deadline:
                    return
                msg = consumer.poll(0.2)
                if msg is None:
                    if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                        return
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(msg.error())
                    not_at_end.discard(msg.partition())
                    if not not_at_end:
                        return
                    continue
                last = time.monotonic()
                seen += 1
                key = msg.key().decode("utf-8", errors="replace") if msg.key() is not None else None
                if raw or msg.value() is None:
                    yield key, msg.value()
                else:
                    yield key, spec.codec.decode(msg.value())  # type: ignore[union-attr]
        finally:
            consumer.close()

    def close(self) -> None:
        self.flush()


def json_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False)
