"""The producer adapter on the test broker: batches land where a plain send would put them, and a
delivery the broker refuses is noticed (counted, kept, reported) although no send waits for it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import metrics
from pipeline import topics as T
from pipeline.services.content_ids import ContentIds, claim_content_ids
from pipeline.services.output import DeliveryFailed, Output, new_producer
from pipeline.uploads import new_upload

pytestmark = pytest.mark.kafka


def failures(spec: T.TopicSpec) -> float:
    return metrics.DELIVERY_FAILURES.labels(spec.suffix)._value.get()


async def with_output(settings, use):
    """Run `use(output, reported)` with an Output on a producer of its own; `reported` collects failures."""
    producer = new_producer(settings)
    await producer.start()
    reported: list[DeliveryFailed] = []
    try:
        return await use(Output(settings, lambda: producer, reported.append), producer, reported)
    finally:
        await producer.stop()


def oversized_upload(settings, content_id: str) -> dict:
    """An upload whose record is over the topic's max.message.bytes (but within the producer's request size)."""
    return new_upload(content_id, "photo", content=b"x" * settings.max_message_bytes)


async def partitions_of_keys(settings, spec: T.TopicSpec, count: int) -> dict[str, set[int]]:
    """The partitions that the first `count` records of a topic landed on, by key."""
    topic = spec.name(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        landed: dict[str, set[int]] = {}
        seen = 0
        while seen < count:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    landed.setdefault(record.key.decode(), set()).add(tp.partition)
                    seen += 1
        return landed
    finally:
        await consumer.stop()


def test_batches_go_to_the_partitions_of_a_plain_send(settings):
    keys = [f"key-{i}" for i in range(200)]

    async def use(output, producer, reported):
        await output.send_many(T.UPLOADS, [(k, new_upload(k, "photo", signals={"pdq": "0" * 64})) for k in keys])
        for k in keys:  # the same keys again, one plain send each
            await producer.send(T.UPLOADS.name(settings), b"{}", key=k.encode())
        await producer.flush()
        return await partitions_of_keys(settings, T.UPLOADS, 2 * len(keys)), reported

    landed, reported = asyncio.run(with_output(settings, use))
    assert not reported
    assert set(landed) == set(keys)
    assert all(len(partitions) == 1 for partitions in landed.values())  # batch and plain send agree
    assert {p for partitions in landed.values() for p in partitions} == {0, 1}


@pytest.mark.parametrize("how", ["send", "send_many"])
def test_a_refused_delivery_is_noticed(settings, how):
    before = failures(T.UPLOADS)

    async def use(output, producer, reported):
        small = new_upload("small", "photo", signals={"pdq": "0" * 64})
        if how == "send":
            await output.send(T.UPLOADS, "big", oversized_upload(settings, "big"))
        else:
            await output.send_many(T.UPLOADS, [("small", small), ("big", oversized_upload(settings, "big"))])
        await producer.flush()  # what Faust does before it commits offsets
        await asyncio.sleep(0)
        return reported, output.failure

    reported, failure = asyncio.run(with_output(settings, use))
    assert len(reported) == 1 and isinstance(reported[0], DeliveryFailed)
    assert failure is reported[0] and "uploads" in str(failure)
    assert failures(T.UPLOADS) == before + 1


def test_a_refused_write_that_is_waited_for_raises(settings):
    async def use(output, producer, reported):
        with pytest.raises(DeliveryFailed):
            await output.deliver([(T.UPLOADS, "big", oversized_upload(settings, "big"))])

    asyncio.run(with_output(settings, use))


def test_the_blocking_client_reports_a_refused_delivery(settings):
    """Tools (hmas bank, replay) produce through Client: a record the broker refuses raises at flush."""
    from confluent_kafka import KafkaException

    from pipeline.client import Client

    client = Client(settings)
    client.produce(T.UPLOADS, "big", oversized_upload(settings, "big"))
    with pytest.raises(KafkaException, match="not delivered"):
        client.flush()
    client.produce(T.UPLOADS, "small", new_upload("small", "photo", content=b"x"))
    client.flush()  # reported once: later deliveries are judged on their own


def test_the_blocking_client_reads_to_the_end_of_every_partition(settings):
    """`read(to_end=True)` has no idle time to wait out: it stops once each partition (the empty
    ones too) is read to its end, with every record written before it began. Were an end not
    noticed, the read would never return (no other limit is given)."""
    from pipeline.client import Client

    client = Client(settings)
    assert list(client.read(T.DEAD_LETTERS, to_end=True)) == []  # every partition empty
    ids = {f"end-{i}" for i in range(40)}
    for cid in sorted(ids):
        client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": "0" * 64}))
    client.flush()
    assert sorted(key for key, _ in client.read(T.UPLOADS, to_end=True, raw=True)) == sorted(ids)


def test_a_delivery_in_several_batches_reports_where_each_record_landed(settings):
    """Records to two topics, more than one batch holds: each one's offset, in the order given."""
    big = "x" * 4000  # a few records fill a default 16 kB batch

    async def use(output, producer, reported):
        writes = [(T.CONTENT_IDS, "BANK_A", {"bank": "BANK_A", "claimed_at": i}) if i % 3 else
                  (T.EXCHANGE_FETCH, f"X{i}", {"exchange": f"X{i}", "api": big}) for i in range(30)]
        return await output.deliver(writes), await output.deliver_offsets(writes)

    landed, offsets = asyncio.run(with_output(settings, use))
    claims = [m.offset for m in landed if m.topic == T.CONTENT_IDS.name(settings)]
    statuses = [m.offset for m in landed if m.topic == T.EXCHANGE_FETCH.name(settings)]
    assert claims == list(range(20)) and statuses == list(range(10))
    assert offsets == [m.offset + (20 if m.topic == T.CONTENT_IDS.name(settings) else 10) for m in landed]


def test_content_ids_count_up_for_every_writer(settings):
    async def use(output, producer, reported):
        return await ContentIds(output, lambda: 0).claim("BANK_A", 3)

    first = asyncio.run(with_output(settings, use))
    assert first == [1, 2, 3]
    assert claim_content_ids(settings, "BANK_B") == [4]  # a tool's claim continues the same counter


def test_a_lost_delivery_stops_the_worker_and_its_offset_commits(tmp_path):
    """The worker's output reports to its Faust app: the app crashes, and the producer's flush
    (which Faust runs before committing offsets) raises from then on."""
    from pipeline.app import create_app
    from tests.pipeline_env import pipeline_env, settings_from

    settings = settings_from(pipeline_env("127.0.0.1:1", tmp_path / "state"))
    app, services = create_app(settings)

    async def lose_a_delivery():
        services.output.delivery_failed(T.MATCHES.suffix, 3, RuntimeError("broker said no"))
        await asyncio.sleep(0)  # the crash runs as a task
        with pytest.raises(DeliveryFailed, match="3 record"):
            await app.producer.flush()

    app.loop.run_until_complete(lose_a_delivery())
    assert app.crashed and isinstance(app.crash_reason, DeliveryFailed)
    assert isinstance(services.output.failure, DeliveryFailed)
