"""The Kafka transport of the worker's Faust app: Faust's aiokafka transport, with each fetched
message handed to the streams in place when it can be.

Faust's consumer gives every fetched message to the conductor through
`wait_first(deliver(message), suspend_flow.wait())`, so that a rebalance can interrupt a delivery
that waits for room in a full stream buffer. That costs four tasks and an asyncio.wait per
message, about 40% of a worker's main thread at 2,000 uploads/s. The delivery almost never
waits (the buffers have room), so here it is started in place: when it completes without
suspending, no task is made; when it does suspend, the rest of it runs under Faust's own
wait_first, interruptible by a rebalance as before.

This leans on Faust's and mode's internals (the shape of the fetch loop's call, `suspend_flow`,
WaitResults), so it is only used on the versions it was written for (WRITTEN_FOR, pinned in
pyproject.toml); on others the worker logs a warning and runs Faust's stock consumer.
tests/test_transport.py runs Faust's real fetch loop and fails if the in-place path is not taken.

The producer is Faust's, whose flush (which Faust runs before every offset commit) raises once a
delivery failed (pipeline/services/output.py reports them), so no offset is committed past a
lost output.

In exactly-once mode (`use_exactly_once`, pipeline/services/delivery.py; the app's
`in_transaction` is then true, pipeline/app.py) Faust's transactional paths are on: the consumer
reads with `isolation_level=read_committed`, table recovery steps over aborted transactions, and
offset commits go to the transaction manager, here `TransactionCommits`: the worker's one
transaction on its one transactional producer (Faust's own keeps a producer per partition and
gets the partitions wrong).

The app reaches it through the broker URL scheme `hmas://` (registered in pyproject.toml under
Faust's "faust.transports" entry points).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Coroutine, Iterable, Mapping, Set

import faust
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from mode import Service
from mode.services import WaitResults

from pipeline.config import Settings
from pipeline.services.delivery import ExactlyOnce, TransactionFailed
from pipeline.state.changelog_ends import record_ends

log = logging.getLogger(__name__)
SCHEME = "hmas"
CHANGELOG_SUFFIX = "-changelog"  # Faust's table changelog topics
COMMIT_SLOW_S = 20.0  # a commit longer than this is logged (the transaction timeout is 60 s)
WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
_EXACTLY_ONCE: "weakref.WeakKeyDictionary[faust.App, ExactlyOnce]" = weakref.WeakKeyDictionary()
_SETTINGS: "weakref.WeakKeyDictionary[faust.App, Settings]" = weakref.WeakKeyDictionary()


def use_settings(app: faust.App, settings: Settings) -> None:
    """The settings an app's transport makes its own Kafka clients with (before it starts)."""
    _SETTINGS[app] = settings


def use_exactly_once(app: faust.App, transactions: ExactlyOnce) -> None:
    """Run an app's Kafka clients in exactly-once mode with these transactions (before it starts)."""
    _EXACTLY_ONCE[app] = transactions


def exactly_once_of(app: faust.App) -> ExactlyOnce | None:
    return _EXACTLY_ONCE.get(app)


def installed_versions() -> dict[str, str]:
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    return {name: installed(name) for name in WRITTEN_FOR}


def in_place_delivery_supported(installed: Mapping[str, str] | None = None) -> bool:
    """Whether the installed Faust and aiokafka are those the in-place delivery was written for;
    a warning says so when they are not."""
    installed = installed_versions() if installed is None else installed
    if dict(installed) == WRITTEN_FOR:
        return True
    log.warning("in-place delivery is written for other versions: running Faust's stock consumer",
                extra={"written_for": WRITTEN_FOR, "installed": dict(installed)})
    return False


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose highwaters stay the broker's in exactly-once mode: there
    Faust takes a partition's last stable offset as known to aiokafka, which knows it only after
    a fetch from that partition (-1 before), so table recovery would find every table ahead of
    its changelog. End offsets read with read_committed are the last stable offsets. In both modes
    a table changelog's end is the offset after the last record the consumer can read
    (pipeline/state/changelog_ends.py): an exactly-once worker's recovery then ends when that
    record is applied rather than after two idle polls, and an at-least-once worker restarted on
    changelogs an exactly-once one wrote (ending in transaction markers) recovers at all."""

    def highwater(self, tp: Any) -> int:
        return self._ensure_consumer().highwater(tp)

    async def _highwaters(self, partitions: Any) -> Mapping[Any, int]:
        ends = await self._ensure_consumer().end_offsets(partitions)
        changelogs = {tp: end for tp, end in ends.items() if tp.topic.endswith(CHANGELOG_SUFFIX) and end > 0}
        settings = _SETTINGS.get(self.app)
        if changelogs and settings is not None:
            committed = exactly_once_of(self.app) is not None
            isolation = "read_committed" if committed else "read_uncommitted"
            ends.update(await record_ends(settings, changelogs, isolation))
        return ends


class RebalanceListener(faust_aiokafka.ConsumerRebalanceListener):
    """Faust's rebalance listener, which first stops aiokafka fetching the assigned stream
    partitions (here, on the consumer thread, where aiokafka's `pause` must run): they are
    fetched again only once `Consumer.perform_seek` has put them at their committed offsets."""

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        streams = [tp for tp in assigned if not tp.topic.endswith(CHANGELOG_SUFFIX)]
        self._thread._ensure_consumer().pause(*streams)
        self._thread.consumer._fetch_stopped = streams
        await super().on_partitions_assigned(assigned)


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with each fetched message delivered in place when it can be
    (`in_place`); in exactly-once mode on a thread that reads highwaters from the broker; and
    whose stream partitions are read only from where `perform_seek` put them.

    After a rebalance Faust's recovery resumes the stream partitions and only then seeks them to
    their committed offsets (an OffsetFetch, seconds on a loaded broker). Records fetched from the
    earlier position in between reached the agents, and the seek reset the read offsets under a
    batch still being delivered: a restarted worker processed some uploads twice and skipped
    others whose offsets a later unit then committed (in exactly-once mode, outputs doubled or
    missing, and a restarted worker that looked stalled: ready, its input consumed, nothing out).
    So a stream partition resumed before the seek stays paused until the seek is done.

    That hold is Faust's alone, and records of a held partition still came out of aiokafka
    (the consumer thread filters by Faust's set of active partitions while the main thread
    changes it): Faust dropped them, and aiokafka's position had moved past them, also during
    the seek itself, which goes through the partitions one OffsetFetch at a time. Seen under
    load in exactly-once mode: 41 uploads of a partition fetched and dropped between its seek
    and the end of the others', and an input partition with no committed offset at 50 instead
    of 0 (aiokafka seeks only the partitions with a committed offset above 0); a restarted
    worker then never processed them. So aiokafka itself does not fetch the stream partitions
    from their assignment (`RebalanceListener`) until the seek is done, and the seek puts the
    partitions without a committed offset at their start. Both modes run this consumer."""

    RebalanceListener = RebalanceListener
    in_place_deliveries = 0  # deliveries that completed without a task (what the tests look for)
    _fetch_stopped: list[Any] = []  # stream partitions aiokafka does not fetch until the seek

    def __init__(self, *args: Any, in_place: bool = True, **kwargs: Any) -> None:
        self.in_place = in_place
        self._seek_pending = False  # partitions assigned, not yet sought to their committed offsets
        self._held: set[Any] = set()  # stream partitions resumed while the seek was pending
        super().__init__(*args, **kwargs)

    async def on_partitions_assigned(self, assigned: Set[Any], generation_id: int = 0) -> None:
        self._seek_pending = True
        self._held = set()
        await super().on_partitions_assigned(assigned, generation_id)

    def resume_partitions(self, tps: Iterable[Any]) -> None:
        tps = set(tps)
        if self._seek_pending:
            streams = {tp for tp in tps if not tp.topic.endswith(CHANGELOG_SUFFIX)}
            self._held |= streams
            tps -= streams
        super().resume_partitions(tps)

    def on_buffer_drop(self, tp: Any) -> None:
        if tp not in self._held:
            super().on_buffer_drop(tp)

    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Seek the partitions to their committed offsets, and the stream partitions with none
        (or 0) to their start: aiokafka seeks only those with a committed offset above 0 and
        leaves the others where its fetcher got to."""
        committed = await super().seek_to_committed()
        unread = [tp for tp, offset in committed.items()
                  if (offset is None or offset <= 0) and not tp.topic.endswith(CHANGELOG_SUFFIX)]
        if unread and self.app.conf.consumer_auto_offset_reset == "earliest":
            await self._thread.seek_to_beginning(*unread)
        return committed

    async def perform_seek(self) -> None:
        await super().perform_seek()
        await self._resume_fetching()
        held, self._held = self._held, set()
        self._seek_pending = False
        if held:
            log.info("stream partitions resumed at their committed offsets", extra={"partitions": len(held)})
            super().resume_partitions(held)

    async def _resume_fetching(self) -> None:
        """Let aiokafka fetch the stream partitions the rebalance listener stopped (those still assigned)."""
        stopped, self._fetch_stopped = self._fetch_stopped, []
        if not stopped:
            return
        consumer = self._thread._ensure_consumer()

        async def resume() -> None:
            assigned = consumer.assignment()
            consumer.resume(*(tp for tp in stopped if tp in assigned))
        await self._thread.call_thread(resume)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: float | None = None) -> WaitResults:
        if not self.in_place or not self._is_delivery(coros, timeout):
            return await super().wait_first(*coros, timeout=timeout)
        delivery, flow_suspended = coros
        try:
            step = delivery.send(None)
        except StopIteration as done:  # delivered without waiting: the common case
            self.in_place_deliveries += 1
            flow_suspended.close()
            return WaitResults([delivery], [done.value], False)
        except BaseException:  # it failed at once: as from Faust's wait_first, the error propagates
            flow_suspended.close()
            raise
        return await super().wait_first(_finish(delivery, step), flow_suspended)

    def _is_delivery(self, coros: tuple[Any, ...], timeout: float | None) -> bool:
        """The call of Faust's fetch loop: a fresh delivery coroutine and `suspend_flow.wait()`."""
        if timeout is not None or len(coros) != 2 or self.suspend_flow.is_set() or self.should_stop:
            return False
        delivery, waiter = coros
        return (
            inspect.iscoroutine(delivery) and inspect.getcoroutinestate(delivery) == inspect.CORO_CREATED
            and inspect.iscoroutine(waiter) and waiter.cr_frame is not None
            and waiter.cr_frame.f_locals.get("self") is self.suspend_flow
        )


async def _finish(coro: Coroutine, step: Any) -> Any:
    """Drive a coroutine that suspended on `step` (what it yielded) to its end, as a Task would."""
    try:
        while True:
            if step is None:  # a bare yield: run again on the next loop cycle
                await asyncio.sleep(0)
            else:
                step._asyncio_future_blocking = False
                try:
                    await asyncio.wait([step])
                except asyncio.CancelledError:
                    step.cancel()
                    coro.throw(asyncio.CancelledError())
                    raise
            step = coro.send(None)
    except StopIteration as done:
        return done.value
    finally:
        coro.close()


class TransactionCommits(TransactionManager):
    """Where Faust's consumer sends its offset commits in exactly-once mode: the worker's
    transaction, committed with the offsets of the units it holds (not Faust's acknowledged
    offsets, which lag the outputs already in the transaction). Also commits on Faust's commit
    interval, so writes without input (retroactive matches) do not wait for input to come."""

    def __init__(self, transactions: ExactlyOnce, *args: Any, **kwargs: Any) -> None:
        self.transactions = transactions
        super().__init__(*args, **kwargs)

    async def commit(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        try:
            return await self.transactions.commit()
        except TransactionFailed as exc:
            log.error("transaction failed: the worker stops", extra={"error": str(exc)})
            await self.app.crash(exc)
            return False

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.commit({})

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Any, *, transactional_id: str | None = None) -> Any:
        """Faust's sends (table changelogs) go to the worker's one transactional producer."""
        return await self.producer.send(topic, key, value, partition, timestamp, headers)

    async def send_and_wait(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                            timestamp: float | None, headers: Any, *, transactional_id: str | None = None) -> Any:
        return await (await self.send(topic, key, value, partition, timestamp, headers))

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        """One transactional id per worker: nothing to start or stop per partition."""

    @Service.task
    async def _commit_on_interval(self) -> None:
        interval = self.app.conf.broker_commit_interval
        while not self.should_stop:
            await self.sleep(interval)
            await self.commit({})

    @Service.task
    async def _watch_commits(self) -> None:
        """Log a commit that has taken more than COMMIT_SLOW_S, with the step it waits on."""
        while not self.should_stop:
            await self.sleep(COMMIT_SLOW_S)
            state = self.transactions.commit_state()
            if state is not None and state["seconds"] > COMMIT_SLOW_S:
                log.error("transaction commit is slow", extra=state)


class ChangelogBuffer(ProducerBuffer):
    """Faust's buffer of table changelog writes, which can be drained: Faust's own flush gives up
    after 0.1 s without a send and does not count the write being sent."""

    sending = 0  # writes taken off the queue and not yet handed to the producer

    async def _send_pending(self, fut: Any) -> None:
        self.sending += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.sending -= 1

    async def drain(self) -> None:
        """Wait until every buffered write has been handed to the producer."""
        while self.size or self.sending:
            if self.state != "running":  # nothing would send them (as Faust's flush says)
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, whose flush raises once a delivery has failed (`fail`) and
    drains Faust's buffer of changelog writes first (`ChangelogBuffer`); in exactly-once mode
    transactional, with the worker's first transaction begun at its start."""

    delivery_failure: BaseException | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = ChangelogBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        if self.threaded_producer is not None:
            buffer.threaded_producer = self.threaded_producer
        self.buffer = buffer

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        transactions = exactly_once_of(self.app)
        if transactional_id is None and transactions is not None:
            transactional_id = transactions.transactional_id
        return super()._new_producer(transactional_id=transactional_id)

    async def on_start(self) -> None:
        await super().on_start()
        transactions = exactly_once_of(self.app)
        if transactions is not None:
            await transactions.begin(self)

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        """Faust's own sends (table changelogs) wait while no transaction is open."""
        transactions = exactly_once_of(self.app)
        if transactions is not None:
            await transactions.transaction_open()
        return await super().send(*args, **kwargs)

    def fail(self, failure: BaseException) -> None:
        if self.delivery_failure is None:
            self.delivery_failure = failure

    async def flush(self) -> None:
        """Faust's buffer (table changelog writes) drained, then the aiokafka producer's. Faust's
        own buffer flush gives up after 0.1 s without a send, so under load an exactly-once
        commit could leave a changelog write of a committed unit to the next transaction (lost
        if the worker died first): here it waits until every write is handed over."""
        await self.buffer.drain()
        await super().flush()
        if self.delivery_failure is not None:
            raise self.delivery_failure


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer

    def create_consumer(self, callback: Any, **kwargs: Any) -> faust_aiokafka.Consumer:
        """The in-place consumer on the versions it was written for, Faust's stock one on others
        (in exactly-once mode ours, delivering through Faust's wait_first there)."""
        in_place = in_place_delivery_supported()
        if not in_place and exactly_once_of(self.app) is None:
            return faust_aiokafka.Consumer(self, callback=callback, loop=self.loop, **kwargs)
        return Consumer(self, callback=callback, loop=self.loop, in_place=in_place, **kwargs)

    def create_transaction_manager(self, consumer: Any, producer: Any, **kwargs: Any) -> TransactionManager:
        transactions = exactly_once_of(self.app)
        if transactions is None:
            return super().create_transaction_manager(consumer=consumer, producer=producer, **kwargs)
        return TransactionCommits(transactions, self, consumer=consumer, producer=producer, **kwargs)
