"""How a worker's outputs and consumed offsets reach Kafka: at least once, or exactly once.

Agents take their input through the worker's delivery mode (`batches`, `events`), and a task
that writes without input (the retroactive search) wraps its writes in `unit()`, so the mode
knows where each piece of work begins and ends.

- `AtLeastOnce` (the default): outputs are handed to the producer, and Faust commits the input
  offsets after flushing the producer. A crash writes the uncommitted input's outputs again, with
  the same event ids (pipeline/event_ids.py).
- `ExactlyOnce` (HMAS_PROCESSING_GUARANTEE=exactly_once): the worker's one producer is
  transactional, its `transactional.id` the worker's static member id, so a restarted worker
  fences its killed predecessor and aborts its open transaction. Each transaction holds whole
  units: their outputs, the Faust tables' changelog records they wrote, and the offsets of the
  input they consumed (`send_offsets_to_transaction`), so a consumer reading with
  `isolation_level=read_committed` sees each input's outputs once. A commit stops new units,
  waits for the running ones to end, flushes, commits the offsets within the transaction and
  begins the next one; it runs on Faust's commit interval and whenever Faust commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Iterable, Protocol

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from pipeline import metrics
from pipeline.config import PROCESSING_GUARANTEES, Settings

log = logging.getLogger(__name__)

AT_LEAST_ONCE, EXACTLY_ONCE = PROCESSING_GUARANTEES


class TransactionFailed(Exception):
    """A transaction that could not be committed: the worker must stop (its input is processed
    again from the last committed offsets)."""


class FlushingProducer(Protocol):
    """What a commit needs of Faust's producer: the flush of its buffer and of the aiokafka
    producer it wraps, and that producer."""

    async def flush(self) -> None: ...

    def _ensure_producer(self) -> AIOKafkaProducer: ...


class AtLeastOnce:
    """Units are only markers: Faust commits the offsets of what the agents acknowledged."""

    guarantee = AT_LEAST_ONCE

    @asynccontextmanager
    async def unit(self, events: Iterable[faust.EventT] = ()) -> AsyncIterator[None]:
        yield

    async def batches(self, stream: faust.StreamT, size: int, within_s: float) -> AsyncIterator[list[faust.EventT]]:
        """The stream's events in batches of up to `size` (or what came within `within_s`), each a unit."""
        async for events in stream.take_events(size, within=within_s):
            async with self.unit(events):
                yield events

    async def events(self, stream: faust.StreamT) -> AsyncIterator[faust.EventT]:
        """The stream's events one at a time, each a unit."""
        async for event in stream.events():
            async with self.unit((event,)):
                yield event


class ExactlyOnce(AtLeastOnce):
    """The worker's transaction: which units it holds and the input offsets they consumed."""

    guarantee = EXACTLY_ONCE

    def __init__(self, settings: Settings, transactional_id: str) -> None:
        self.settings = settings
        self.group_id = settings.worker_group
        self.transactional_id = transactional_id
        self._producer: FlushingProducer | None = None
        self._accepting = asyncio.Event()  # new units may begin (no commit under way)
        self._open = asyncio.Event()  # a transaction is open: records may be sent
        self._idle = asyncio.Event()  # no unit is running
        self._idle.set()
        self._running = 0
        self._offsets: dict[TopicPartition, int] = {}  # next offset to consume, of finished units' input
        self._dirty = False  # a unit finished since the last commit
        self._failed: BaseException | None = None  # a unit that raised: its partial outputs must not commit
        self._commit_lock = asyncio.Lock()
        self._commit_step = ""  # what a commit under way waits for (`commit_state`)
        self._commit_since = 0.0
        self.commits = 0

    async def begin(self, producer: FlushingProducer) -> None:
        """Begin the first transaction on the worker's started producer (its start fenced any
        earlier producer of the same transactional id)."""
        self._producer = producer
        await producer._ensure_producer().begin_transaction()
        self._open.set()
        self._accepting.set()
        log.info("transactional producer ready", extra={"transactional_id": self.transactional_id})

    async def transaction_open(self) -> None:
        """Wait until records may be sent (not between a commit and the next transaction). What
        is sent then makes the transaction one to commit even if no unit finishes: left open, the
        broker would abort it after the transaction timeout and fence the worker's producer."""
        await _until_set(self._open)
        self._dirty = True

    @asynccontextmanager
    async def unit(self, events: Iterable[faust.EventT] = ()) -> AsyncIterator[None]:
        await _until_set(self._accepting)
        self._running += 1
        self._idle.clear()
        try:
            yield
        except BaseException as exc:
            self._failed = self._failed or exc
            raise
        else:
            for event in events:
                message = event.message
                tp = TopicPartition(message.topic, message.partition)
                self._offsets[tp] = max(self._offsets.get(tp, 0), message.offset + 1)
            self._dirty = True
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()

    async def commit(self) -> bool:
        """Commit the finished units' outputs and input offsets in one transaction and begin the
        next; whether there was anything to commit. Raises TransactionFailed."""
        async with self._commit_lock:
            if not self._dirty and self._failed is None:
                return False
            if self._producer is None:
                raise TransactionFailed("no transaction was begun")
            self._accepting.clear()
            started = self._commit_since = time.monotonic()
            self._commit_step = "waiting for running units"
            await _until_set(self._idle)
            producer = self._producer._ensure_producer()
            try:
                if self._failed is not None:
                    self._open.clear()
                    self._commit_step = "aborting"
                    await producer.abort_transaction()
                    raise TransactionFailed(f"aborted: a unit failed: {self._failed!r}")
                self._commit_step = "flushing the producer"
                await self._producer.flush()  # Faust's buffer (table changelogs) too; raises on a lost delivery
                self._open.clear()
                offsets, self._offsets = self._offsets, {}
                self._commit_step = "committing"
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group_id)
                await producer.commit_transaction()
                self._dirty = False
                self.commits += 1
                metrics.TRANSACTIONS.inc()
                log.debug("transaction committed", extra={"partitions": len(offsets), "seconds": time.monotonic() - started})
                self._commit_step = "beginning the next transaction"
                await producer.begin_transaction()
            except TransactionFailed:
                raise
            except Exception as exc:
                raise TransactionFailed(f"{type(exc).__name__}: {exc}") from exc
            finally:
                self._commit_step = ""
            self._open.set()
            self._accepting.set()
            return True

    def commit_state(self) -> dict[str, object] | None:
        """What a commit under way has waited for and how long (None: no commit under way); for
        the log when one takes too long."""
        if not self._commit_step:
            return None
        return {"step": self._commit_step, "seconds": round(time.monotonic() - self._commit_since, 1),
                "running_units": self._running, "transaction_open": self._open.is_set()}


async def _until_set(event: asyncio.Event) -> None:
    """Wait until the event is set now: a waiter woken by a `set` runs later, and the event may
    have been cleared again by then (a commit right after another)."""
    while not event.is_set():
        await event.wait()


def delivery_mode(settings: Settings, transactional_id: str) -> AtLeastOnce:
    """The worker's delivery mode for its processing guarantee (HMAS_PROCESSING_GUARANTEE)."""
    if settings.processing_guarantee == EXACTLY_ONCE:
        return ExactlyOnce(settings, transactional_id)
    return AtLeastOnce()
