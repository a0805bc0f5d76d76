"""The worker's Faust transport: fetched messages delivered in place, and the rest of a delivery
that waits run as a task that a rebalance can still interrupt; only on the versions it was written
for; and a producer whose flush fails once a delivery failed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from pipeline import topics as T
from pipeline import transport
from pipeline.client import Client
from pipeline.services.output import DeliveryFailed
from pipeline.state.faust_cells import FaustTableCellStore, in_partition_of
from pipeline.state.tables import raw_topic


@pytest.fixture
def consumer():
    app = faust.App("transport-test", broker=f"{transport.SCHEME}://127.0.0.1:1", autodiscover=False)
    return app.consumer


def run(consumer, coro):
    """Run on the consumer's own event loop, as the worker does (Faust's waits are bound to it)."""
    return consumer.loop.run_until_complete(coro)


def test_the_app_gets_the_in_place_consumer(consumer):
    assert isinstance(consumer, transport.Consumer)


def test_a_delivery_that_does_not_wait_runs_in_place(consumer):
    ran = []

    async def deliver():
        ran.append(asyncio.current_task())
        return "delivered"

    async def main():
        tasks_before = len(asyncio.all_tasks())
        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        return result, tasks_before, len(asyncio.all_tasks())

    result, before, after = run(consumer, main())
    assert result.results == ["delivered"] and not result.stopped
    assert before == after  # no task for the delivery, none left waiting on suspend_flow
    assert ran[0] is not None  # it ran inside the caller's task


def test_a_delivery_that_fails_at_once_raises(consumer):
    async def deliver():
        raise KeyError("no callback for this partition")

    async def main():
        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    with pytest.raises(KeyError):
        run(consumer, main())


def test_a_delivery_that_waits_finishes_as_a_task(consumer):
    async def main():
        room = asyncio.get_running_loop().create_future()

        async def deliver():
            await asyncio.sleep(0)  # a bare yield
            value = await room  # like a put into a full stream buffer
            return value * 2

        asyncio.get_running_loop().call_later(0.05, room.set_result, 21)
        return await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    assert run(consumer, main()).results == [42]


def test_errors_of_a_waiting_delivery_propagate(consumer):
    async def main():
        room = asyncio.get_running_loop().create_future()

        async def deliver():
            await room

        asyncio.get_running_loop().call_later(0.01, room.set_exception, ValueError("no room"))
        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    with pytest.raises(ValueError, match="no room"):
        run(consumer, main())


def test_a_rebalance_interrupts_a_waiting_delivery(consumer):
    cleaned_up = []

    async def main():
        room = asyncio.get_running_loop().create_future()

        async def deliver():
            try:
                await room
            finally:
                cleaned_up.append(room.cancelled())

        asyncio.get_running_loop().call_later(0.05, consumer.stop_flow)  # what Faust does on a rebalance
        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

        async def cleanup_ran() -> None:
            while not cleaned_up:
                await asyncio.sleep(0)  # the cancelled delivery runs its `finally` on a later turn of the loop

        await asyncio.wait_for(cleanup_ran(), timeout=5)
        return result

    result = run(consumer, main())
    assert result.results == [True]  # suspend_flow.wait() won, as with Faust's own wait_first
    assert cleaned_up == [True]  # the delivery was cancelled and what it waited for with it


def test_other_waits_go_to_faust(consumer):
    async def main():
        async def slow():
            await asyncio.sleep(0.01)
            return "slow"

        return await consumer.wait_first(slow(), timeout=1.0)

    assert run(consumer, main()).results == ["slow"]


# -- after a rebalance: stream partitions read from their committed offsets only ---------------------

def test_stream_partitions_resumed_before_the_seek_are_fetched_only_after_it(consumer, monkeypatch):
    """Faust's recovery resumes the stream partitions and then seeks them to their committed
    offsets; records fetched in between reached the agents from the earlier position (a
    restarted worker processed some uploads twice and skipped others). Until the seek is done the
    stream partitions stay out of the fetched set; changelog partitions are resumed at once."""
    uploads, hashes = faust.types.TP("hma.uploads", 0), faust.types.TP("hma.hashes", 1)
    changelog = faust.types.TP("app-flood-cells-changelog", 0)
    fetched_during_seek = []

    async def assigned(self, assigned, generation_id=0):  # Faust's rebalance handling, not run here
        return None

    async def seek_to_committed():
        fetched_during_seek.append(set(consumer._get_active_partitions()))
        return {uploads: 7, hashes: 3}

    monkeypatch.setattr(faust.transport.consumer.Consumer, "on_partitions_assigned", assigned)
    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)

    async def main():
        await consumer.on_partitions_assigned({uploads, hashes, changelog}, 2)
        consumer.pause_partitions({uploads, hashes, changelog})
        consumer.resume_partitions({changelog})  # recovery reads the changelog
        consumer.resume_partitions({uploads, hashes})  # recovery done, before the seek
        after_resume = set(consumer._get_active_partitions())
        consumer.on_buffer_drop(uploads)  # a stream buffer draining does not resume it either
        after_drop = set(consumer._get_active_partitions())
        await consumer.perform_seek()
        return after_resume, after_drop, set(consumer._get_active_partitions())

    after_resume, after_drop, after_seek = run(consumer, main())
    assert after_resume == after_drop == {changelog}
    assert fetched_during_seek == [{changelog}]
    assert after_seek == {uploads, hashes, changelog}
    assert consumer._read_offset[uploads] == 7 and consumer._read_offset[hashes] == 3

    consumer.pause_partitions({uploads})
    consumer.resume_partitions({uploads})  # later resumes (no rebalance since the seek) are not held
    assert uploads in consumer._get_active_partitions()


# -- the producer: no offset commit past a lost delivery -------------------------------------------

def test_the_producer_flush_raises_once_a_delivery_failed(consumer):
    producer = consumer.app.producer
    assert isinstance(producer, transport.Producer)
    run(consumer, producer.flush())  # nothing failed: flushes quietly
    producer.fail(DeliveryFailed("1 record(s) to matches not delivered"))
    with pytest.raises(DeliveryFailed):
        run(consumer, producer.flush())  # Faust flushes before each offset commit: the commit fails


def test_the_producer_flush_drains_faust_buffer_however_slow_its_sends(consumer):
    """Faust's buffer flush returns after 0.1 s without a send; the producer's flush (before
    every commit) waits until the table changelog writes in the buffer are all handed over."""
    producer = consumer.app.producer
    sent = []

    class SlowChannel:  # stands for the changelog topic: each send takes longer than Faust waits
        async def publish_message(self, fut, wait=False):
            await asyncio.sleep(0.25)
            sent.append(fut)

    async def main():
        await producer.buffer.start()
        try:
            for i in range(3):
                producer.buffer.put(SimpleNamespace(message=SimpleNamespace(channel=SlowChannel()), i=i))
            await producer.flush()
            return producer.buffer.size
        finally:
            await producer.buffer.stop()

    assert run(consumer, main()) == 0
    assert [fut.i for fut in sent] == [0, 1, 2]


# -- the versions the in-place delivery was written for --------------------------------------------

def test_the_pinned_versions_are_the_installed_ones():
    assert transport.installed_versions() == transport.WRITTEN_FOR
    assert transport.in_place_delivery_supported()


@pytest.mark.parametrize("other", [{"faust-streaming": "0.16.0"}, {"aiokafka": "0.15.1"},
                                   {"aiokafka": "not installed"}])
def test_other_versions_fall_back_to_faust_stock_consumer(monkeypatch, caplog, other):
    installed = {**transport.WRITTEN_FOR, **other}
    assert not transport.in_place_delivery_supported(installed)
    assert "stock consumer" in caplog.text

    monkeypatch.setattr(transport, "installed_versions", lambda: installed)
    app = faust.App("transport-fallback-test", broker=f"{transport.SCHEME}://127.0.0.1:1", autodiscover=False)
    assert type(app.consumer) is faust_aiokafka.Consumer
    assert isinstance(app.producer, transport.Producer)  # the checked flush stays: it uses Faust's public API


# -- Faust's real fetch loop -----------------------------------------------------------------------

def faust_app(settings, name: str) -> faust.App:
    broker = f"{transport.SCHEME}://{settings.bootstrap_servers}"
    return faust.App(f"{settings.topic_prefix}{name}", broker=broker, store="memory://", web_enabled=False,
                     autodiscover=False, consumer_auto_offset_reset="earliest",
                     topic_partitions=settings.topic_partitions)


def run_app_until(app: faust.App, topic_name: str, count: int, done: asyncio.Event, timeout_s: float = 120) -> None:
    """Start the app, produce `count` records to the topic, wait until its agent sets `done`, stop."""
    async def main():
        await app.start()
        try:
            for i in range(count):
                await app.producer.send(topic_name, f"k{i}".encode(), f"v{i}".encode(), None, None, None)
            await app.producer.flush()
            await asyncio.wait_for(done.wait(), timeout=timeout_s)
        finally:
            await app.stop()

    app.loop.run_until_complete(main())


def collected(app: faust.App, topic_name: str, count: int) -> tuple[list[bytes], asyncio.Event]:
    """An agent of the app that keeps the values it reads; the event is set at the `count`th."""
    received: list[bytes] = []
    all_received = asyncio.Event()

    @app.agent(raw_topic(app, topic_name))
    async def read(stream):
        async for value in stream:
            received.append(value)
            if len(received) == count:
                all_received.set()

    return received, all_received


def test_faust_fetch_loop_delivers_in_place(settings):
    """A Faust app on the test broker: the messages its agent reads came through the in-place path.
    Fails when a Faust or mode change makes the fetch loop call differently (the path not taken)."""
    topic_name = T.UPLOADS.name(settings)
    count = 50
    app = faust_app(settings, "transport-test")
    received, all_received = collected(app, topic_name, count)

    run_app_until(app, topic_name, count, all_received)
    assert sorted(received) == sorted(f"v{i}".encode() for i in range(count))
    assert isinstance(app.consumer, transport.Consumer)
    assert app.consumer.in_place_deliveries >= count


def test_a_partition_without_a_committed_offset_is_read_from_its_start_after_the_seek(settings, monkeypatch):
    """aiokafka fetches no input partition from its assignment until the seek (records it handed
    over were dropped by Faust, the partition being held, with aiokafka's position moved past
    them), and the seek puts the partitions without a committed offset at their start. Here every
    input partition's position is moved to its end just before the seek, as those drops left it:
    the agent must still read every record (a restarted worker once never matched what an
    input partition held before its first commit)."""
    topic_name = T.HASHES.name(settings)
    count = 40
    client = Client(settings)
    for i in range(count):
        client.produce_raw(T.HASHES, f"k{i}", f"v{i}".encode())
    client.flush()

    moved: list[int] = []
    paused_at_the_seek: set = set()
    seek_to_committed = transport.ConsumerThread.seek_to_committed

    async def seek_after_the_records_were_dropped(thread):
        consumer = thread._ensure_consumer()
        inputs = [tp for tp in consumer.assignment() if tp.topic == topic_name]
        paused_at_the_seek.update(tp for tp in consumer.paused() if tp.topic == topic_name)
        await thread.call_thread(consumer.seek_to_end, *inputs)
        moved.extend([await thread.call_thread(consumer.position, tp) for tp in inputs])
        return await seek_to_committed(thread)
    monkeypatch.setattr(transport.ConsumerThread, "seek_to_committed", seek_after_the_records_were_dropped)

    app = faust_app(settings, "seek-test")
    received, all_received = collected(app, topic_name, count)

    run_app_until(app, topic_name, 0, all_received, timeout_s=60)
    assert sum(moved) == count  # the positions were past every record before the seek
    assert paused_at_the_seek == {tp for tp in app.consumer.assignment() if tp.topic == topic_name}  # none fetched until then
    assert not app.consumer._thread._ensure_consumer().paused()
    assert sorted(received) == sorted(f"v{i}".encode() for i in range(count))


def test_table_writes_of_a_batch_go_to_the_partition_of_its_events(settings):
    """pipeline/state/faust_cells.py sets Faust's current event (an internal) so that a batch's table
    writes go to the changelog partition of its events; without it Faust refuses writes outside
    a single event's processing. Fails when Faust stops reading that hook."""
    topic_name = T.FLOOD_HITS.name(settings)
    count = 40
    app = faust_app(settings, "current-event-test")
    table = app.Table("cells", partitions=settings.topic_partitions, key_type=str, value_type=bytes)
    store = FaustTableCellStore(table)
    written: list[str] = []
    all_written = asyncio.Event()

    @app.agent(raw_topic(app, topic_name))
    async def count_hits(stream):
        async for events in stream.take_events(16, within=0.2):
            for event in events:
                with in_partition_of(event, store):
                    key = f"{event.message.partition}:{event.message.key.decode()}"
                    table[key] = b"1"
                    written.append(key)
            if len(written) == count:
                all_written.set()

    run_app_until(app, topic_name, count, all_written)
    landed = asyncio.run(changelog_partitions(settings, table.changelog_topic.get_topic_name(), count))
    assert sorted(landed) == sorted(written)
    assert {partition for partition in landed.values()} == {0, 1}
    assert all(int(key.split(":")[0]) == partition for key, partition in landed.items())


async def changelog_partitions(settings, topic: str, count: int) -> dict[str, int]:
    """The partition of each of the first `count` records of a changelog topic, by key."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        landed: dict[str, int] = {}
        while len(landed) < count:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    landed[record.key.decode().strip('"')] = tp.partition
        return landed
    finally:
        await consumer.stop()
