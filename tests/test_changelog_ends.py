"""Where a transactional changelog's committed records end, on the session's broker: past the
last committed record, not past the markers and aborted records after it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from confluent_kafka.admin import NewTopic

from pipeline import kafka_clients
from pipeline.state.changelog_ends import LOOKBACK, committed_record_ends

pytestmark = pytest.mark.kafka


def create_topic(settings, name: str, partitions: int) -> None:
    admin = kafka_clients.admin(settings)
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


async def write(settings, topic: str, transactions: list[tuple[int, int, bool]]) -> None:
    """(partition, records, commit) per transaction, in order."""
    producer = kafka_clients.aio_producer(settings, transactional_id=f"{topic}-writer")
    await producer.start()
    try:
        for partition, records, commit in transactions:
            await producer.begin_transaction()
            for i in range(records):
                await producer.send_and_wait(topic, b"value %d" % i, key=b"key %d" % i, partition=partition)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


async def stable_ends(settings, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = kafka_clients.aio_consumer(settings, group_id=None, isolation_level="read_committed")
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()


def test_the_end_is_past_the_last_committed_record(settings):
    topic = f"{settings.topic_prefix}ends-changelog"
    create_topic(settings, topic, 4)
    asyncio.run(write(settings, topic, [
        (0, 3, True),  # records 0-2, marker 3
        (1, 3, True), (1, 2, False),  # records 0-2, marker 3, aborted 4-5, marker 6
        (2, 2, True), (2, LOOKBACK + 10, False),  # the committed record lies further back than LOOKBACK
    ]))  # partition 3: empty
    ends = asyncio.run(stable_ends(settings, topic, 4))
    assert [ends[TopicPartition(topic, p)] for p in range(4)] == [4, 7, LOOKBACK + 14, 0]

    found = asyncio.run(committed_record_ends(settings, ends))
    assert [found[TopicPartition(topic, p)] for p in range(4)] == [3, 3, LOOKBACK + 14, 0]
