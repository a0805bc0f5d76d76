"""The local broker: real Kafka in KRaft mode, used by confluent-kafka and by aiokafka (Faust's client)."""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AIOTopicPartition
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ops.kafka import cli as kafka_cli
from ops.kafka.broker import LocalBroker, free_ports, jvm_options
from pipeline.admin import ensure_topics
from pipeline.client import Client
from pipeline.config import Settings
from pipeline.topics import ALL_TOPICS, MATCHES, UPLOADS, partitions_for

pytestmark = pytest.mark.kafka


def local_broker_only(kafka_broker) -> LocalBroker:
    if not isinstance(kafka_broker, LocalBroker):
        pytest.skip("the session uses the cluster in KAFKA_BOOTSTRAP_SERVERS, not a local broker")
    return kafka_broker


def test_the_session_broker_reports_running(kafka_broker, settings, capsys):
    broker = local_broker_only(kafka_broker)
    assert broker.is_running() and broker.status().startswith(f"running (pid {broker.pid()}) on {broker.bootstrap}")
    # `hmas kafka status` finds it where `hmas kafka start` would have put it.
    local = settings.with_overrides(kafka_bootstrap_servers="", data_dir=broker.data_dir.parent,
                                    kafka_port=broker.port, kafka_controller_port=broker.controller_port)
    assert kafka_cli.run(argparse.Namespace(action="status", brokers=None, node=None), local) == 0
    assert capsys.readouterr().out.startswith("running")


def test_kafka_start_uses_a_configured_cluster_and_starts_nothing(settings, capsys):
    assert kafka_cli.run(argparse.Namespace(action="start", brokers=None, node=None), settings) == 0
    assert settings.kafka_bootstrap_servers in capsys.readouterr().out
    assert not (settings.data_dir / "kafka").exists()


def test_topics_are_created_once_with_their_policies(kafka_broker, settings):
    assert ensure_topics(kafka_broker.bootstrap, settings) == []  # the fixture created them
    fresh = settings.with_overrides(topic_prefix=settings.topic_prefix + "fresh.")
    assert sorted(ensure_topics(kafka_broker.bootstrap, fresh)) == sorted(spec.name(fresh) for spec in ALL_TOPICS)

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    resources = [ConfigResource("topic", spec.name(settings)) for spec in ALL_TOPICS]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    meta = admin.list_topics(timeout=10).topics
    for spec in ALL_TOPICS:
        name = spec.name(settings)
        assert configs[name]["cleanup.policy"].value == ("compact" if spec.compact else "delete"), name
        assert configs[name]["max.message.bytes"].value == spec.config(settings)["max.message.bytes"], name
        assert configs[name]["min.insync.replicas"].value == str(settings.topic_min_isr), name
        assert len(meta[name].partitions) == partitions_for(spec, settings), name
    assert any(spec.compact for spec in ALL_TOPICS) and partitions_for(UPLOADS, settings) == 2


def test_confluent_kafka_round_trip_with_a_committed_group(kafka_broker, settings):
    topic, group = UPLOADS.name(settings), f"g-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    producer.produce(topic, key=b"k", value=b"hello", partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None:
                break
        assert msg is not None and msg.error() is None and (msg.key(), msg.value()) == (b"k", b"hello")
        consumer.commit(message=msg, asynchronous=False)
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        assert committed.offset == 1
    finally:
        consumer.close()


def test_aiokafka_round_trip_with_a_committed_group(kafka_broker, settings):
    topic, group = UPLOADS.name(settings), f"g-{uuid.uuid4().hex[:8]}"

    async def scenario() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"k", partition=1)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
            assert (msg.key, msg.value, msg.partition) == (b"k", b"hello", 1)
            await consumer.commit()
            return await consumer.committed(AIOTopicPartition(topic, 1))
        finally:
            await consumer.stop()

    assert asyncio.run(scenario()) == 1


def test_pipeline_client_round_trip_through_the_codecs(settings):
    client = Client(settings, encoding="avro")
    record = {"content_id": "c1", "content_type": "photo", "signals": {}, "matches": [], "matched_at": 1}
    client.produce(MATCHES, "c1", record)
    client.flush()
    [(key, value)] = list(client.read(MATCHES, max_records=1, timeout_s=30))
    assert key == "c1" and value["matched_at"] == 1 and value["retroactive"] is False


def test_the_broker_jvm_has_kafkas_own_options_unless_the_environment_sets_them(kafka_broker, monkeypatch):
    broker = local_broker_only(kafka_broker)
    running = Path(f"/proc/{broker.pid()}/cmdline").read_bytes().decode().split("\0")
    assert set(jvm_options()) <= set(running)
    monkeypatch.delenv("KAFKA_HEAP_OPTS", raising=False)
    monkeypatch.delenv("KAFKA_JVM_PERFORMANCE_OPTS", raising=False)
    assert jvm_options()[:2] == ["-Xmx1G", "-Xms1G"] and "-XX:+UseG1GC" in jvm_options()
    monkeypatch.setenv("KAFKA_HEAP_OPTS", "-Xmx2G")
    monkeypatch.setenv("KAFKA_JVM_PERFORMANCE_OPTS", "-XX:+UseParallelGC")
    assert jvm_options() == ["-Xmx2G", "-XX:+UseParallelGC"]


def test_a_stale_pid_file_does_not_count_as_a_running_broker(tmp_path):
    broker = LocalBroker(tmp_path / "kafka", *free_ports(2))
    broker.data_dir.mkdir()
    broker.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka broker
    assert not broker.is_running() and broker.status() == "stopped"


def test_a_second_broker_starts_once_keeps_its_data_over_a_restart_and_stops(tmp_path):
    broker = LocalBroker(tmp_path / "kafka", *free_ports(2))
    topic = "kept-over-restart"
    try:
        broker.start()
        assert broker.status().startswith("running") and broker.answers()
        pid = broker.pid()
        broker.start()  # already running: nothing happens
        assert broker.pid() == pid
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        broker.stop()
        assert broker.status() == "stopped" and not broker.pid_file.exists() and not broker.answers(timeout_s=1)
        broker.start()  # the storage is formatted once: the topic is still there
        assert topic in AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics
    finally:
        broker.stop()
    assert broker.status() == "stopped" and not broker.answers(timeout_s=1)


def test_the_local_broker_accepts_what_our_producers_send(kafka_broker):
    broker = local_broker_only(kafka_broker)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    [config] = [f.result() for f in admin.describe_configs([ConfigResource("broker", "1")]).values()]
    assert int(config["message.max.bytes"].value) == Settings().max_request_bytes == broker.message_max_bytes
