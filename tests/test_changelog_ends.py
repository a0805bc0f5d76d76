"""Where a table changelog's readable records end, on the session's broker: past the last
committed record (read_committed) or the last record (read_uncommitted), not past the transaction
markers after it; and a Faust app at least once recovers a changelog written in transactions."""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka import TopicPartition
from confluent_kafka.admin import NewTopic

from pipeline import kafka_clients, transport
from pipeline import topics as T
from pipeline.state.changelog_ends import LOOKBACK, record_ends
from pipeline.state.tables import raw_topic

pytestmark = pytest.mark.kafka


def create_topic(settings, name: str, partitions: int) -> None:
    admin = kafka_clients.admin(settings)
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


async def write(settings, topic: str, transactions: list[tuple[int, int, bool]]) -> None:
    """(partition, records, commit) per transaction, in order; keys and values in JSON, as a table's."""
    producer = kafka_clients.aio_producer(settings, transactional_id=f"{topic}-writer")
    await producer.start()
    try:
        for partition, records, commit in transactions:
            await producer.begin_transaction()
            for i in range(records):
                await producer.send_and_wait(topic, b'"value %d"' % i, key=b'"key %d"' % i, partition=partition)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


async def end_offsets(settings, topic: str, partitions: int,
                      isolation_level: str = "read_committed") -> dict[TopicPartition, int]:
    consumer = kafka_clients.aio_consumer(settings, group_id=None, isolation_level=isolation_level)
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
    ends = asyncio.run(end_offsets(settings, topic, 4))
    assert [ends[TopicPartition(topic, p)] for p in range(4)] == [4, 7, LOOKBACK + 14, 0]

    found = asyncio.run(record_ends(settings, ends))
    assert [found[TopicPartition(topic, p)] for p in range(4)] == [3, 3, LOOKBACK + 14, 0]

    # read_uncommitted (an at-least-once worker): past the aborted records too, not past the markers
    ends = asyncio.run(end_offsets(settings, topic, 4, "read_uncommitted"))
    assert [ends[TopicPartition(topic, p)] for p in range(4)] == [4, 7, LOOKBACK + 14, 0]
    found = asyncio.run(record_ends(settings, ends, "read_uncommitted"))
    assert [found[TopicPartition(topic, p)] for p in range(4)] == [3, 6, LOOKBACK + 13, 0]


def test_an_at_least_once_app_recovers_a_changelog_written_in_transactions(settings):
    """A worker switched from exactly once to at least once recovers its tables from changelogs
    that end in transaction markers: before record_ends its recovery waited for the marker's
    offset for good, and its agents never ran."""
    app = faust.App(f"{settings.topic_prefix}recover-at-least-once", broker=f"{transport.SCHEME}://{settings.bootstrap_servers}",
                    store="memory://", web_enabled=False, autodiscover=False, consumer_auto_offset_reset="earliest",
                    topic_partitions=settings.topic_partitions)
    transport.use_settings(app, settings)
    table = app.Table("cells", partitions=settings.topic_partitions)
    changelog = table.changelog_topic.get_topic_name()
    create_topic(settings, changelog, settings.topic_partitions)
    asyncio.run(write(settings, changelog, [(0, 3, True), (1, 2, True), (1, 1, False)]))
    seen: list[str] = []
    ran = asyncio.Event()

    @app.agent(raw_topic(app, T.FLOOD_HITS.name(settings)))
    async def read(stream):
        async for value in stream:
            seen.extend(sorted(table.keys()))
            ran.set()

    async def main():
        await app.start()
        try:
            await app.producer.send(T.FLOOD_HITS.name(settings), b"k", b"v", None, None, None)
            await asyncio.wait_for(ran.wait(), timeout=120)
        finally:
            await app.stop()

    app.loop.run_until_complete(main())
    assert {"key 0", "key 1", "key 2"} <= set(seen)
