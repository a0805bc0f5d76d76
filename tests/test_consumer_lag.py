"""A consumer group's lag, computed in one place for the worker's metric and the API's charts: the
records after the group's committed offset on each partition, on the real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.services.consumer_lag import PartitionLag, group_lag

pytestmark = pytest.mark.kafka


def test_the_lag_is_what_follows_the_groups_committed_offset(settings):
    topic = T.UPLOADS.name(settings)
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    assert T.partitions_for(T.UPLOADS, settings) >= 2

    async def run() -> tuple[dict, dict]:
        producer = kafka_clients.aio_producer(settings)
        await producer.start()
        try:
            for tp, count in ((first, 5), (second, 3)):
                for i in range(count):
                    await producer.send_and_wait(topic, b"x", key=f"{tp.partition}-{i}".encode(), partition=tp.partition)
        finally:
            await producer.stop()
        committer = kafka_clients.aio_consumer(settings, group_id="lag-group", enable_auto_commit=False)
        await committer.start()
        admin = AIOKafkaAdminClient(**kafka_clients.aiokafka_options(settings))
        await admin.start()
        try:
            committer.assign([first, second])
            await committer.commit({first: 2})  # the group has read 2 of partition 0, nothing of partition 1
            lags = await group_lag(admin, "lag-group", [first, second], committer.end_offsets)
            unknown = await group_lag(admin, "no-such-group", [first], committer.end_offsets)
        finally:
            await admin.close()
            await committer.stop()
        return lags, unknown

    lags, unknown = asyncio.run(run())
    assert lags == {first: PartitionLag(committed=2, end=5), second: PartitionLag(committed=0, end=3)}
    assert [lags[first].lag, lags[second].lag] == [3, 3]
    assert unknown[first].lag == 5  # a group that committed nothing is behind by the whole partition


def test_a_lag_is_never_negative():
    assert PartitionLag(committed=7, end=5).lag == 0  # the end was read before a newer commit
    assert PartitionLag(committed=0, end=0).lag == 0
