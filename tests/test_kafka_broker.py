"""The local broker: real Kafka in KRaft mode, used by confluent-kafka and by aiokafka (Faust's client)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ops.kafka.broker import LocalBroker, free_port
from pipeline.admin import ensure_topics
from pipeline.client import Client
from pipeline.topics import ALL_TOPICS, BANKS, MATCHES, UPLOADS
from tests.pipeline_env import pipeline_env, settings_from

pytestmark = pytest.mark.kafka


def test_topics_are_created_once_with_their_policies(kafka_broker, tmp_path):
    settings = settings_from(pipeline_env(kafka_broker.bootstrap, tmp_path))
    created = ensure_topics(kafka_broker.bootstrap, settings)
    assert sorted(created) == sorted(spec.name(settings) for spec in ALL_TOPICS)
    assert ensure_topics(kafka_broker.bootstrap, settings) == []
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    resources = [ConfigResource("topic", BANKS.name(settings)), ConfigResource("topic", UPLOADS.name(settings))]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    assert configs[BANKS.name(settings)]["cleanup.policy"].value == "compact"
    assert configs[UPLOADS.name(settings)]["cleanup.policy"].value == "delete"
    meta = admin.list_topics(timeout=10).topics
    assert len(meta[BANKS.name(settings)].partitions) == 1 and len(meta[UPLOADS.name(settings)].partitions) == 2


def test_confluent_kafka_round_trip_through_the_codecs(kafka_broker, tmp_path):
    settings = settings_from(pipeline_env(kafka_broker.bootstrap, tmp_path))
    ensure_topics(kafka_broker.bootstrap, settings)
    client = Client(settings, encoding="avro")
    record = {"content_id": "c1", "content_type": "photo", "signals": {}, "matches": [], "matched_at": 1}
    client.produce(MATCHES, "c1", record)
    client.flush()
    [(key, value)] = list(client.read(MATCHES, max_records=1, timeout_s=30))
    assert key == "c1" and value["matched_at"] == 1 and value["retroactive"] is False


def test_aiokafka_round_trip_with_a_committed_group(kafka_broker):
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"

    async def scenario() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        await producer.send_and_wait(topic, b"hello", key=b"k")
        await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
            assert msg.value == b"hello"
            await consumer.commit()
            return await consumer.committed(next(iter(consumer.assignment())))
        finally:
            await consumer.stop()

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    assert asyncio.run(scenario()) == 1


def test_a_broker_starts_once_and_stops(tmp_path):
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    try:
        broker.start()
        assert broker.status().startswith("running") and broker.answers()
        broker.start()  # already running: nothing happens
        assert broker.is_running()
    finally:
        broker.stop()
    assert broker.status() == "stopped" and not broker.answers(timeout_s=1)
