"""The exchange fetcher: exactly one in a deployment fetches, however many run.

Every fetcher joins the consumer group `<prefix>exchange-fetcher` on hma.exchanges, a topic of one
partition: the member that Kafka assigns that partition is the fetcher, the others wait. On
assignment it starts a transactional producer with the group's one transactional id, which fences
any earlier holder: a fetcher that lost the partition (paused, partitioned away) can no longer
commit a batch. Each batch of fetched records becomes hma.bank-signals records, written in one
Kafka transaction with the hma.exchange-fetch record (checkpoint and progress) that follows them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from threatexchange.exchanges.auth import SignalExchangeAPIInvalidAuthException, SignalExchangeAPIMissingAuthException
from threatexchange.exchanges.fetch_state import FetchCheckpointBase, FetchDelta
from threatexchange.utils import dataclass_json

from connectors.exchanges.config import (
    FETCHED_SIGNAL_TYPES, SNAPSHOT_APIS, collab_config, exchange_api,
)
from connectors.exchanges.clients import exchange_client
from connectors.exchanges.credentials import credentials_for
from connectors.exchanges.records import BankOfExchange, Held, Signals
from connectors.exchanges.retry import backoff_s, rate_limited
from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.config import Settings
from pipeline.metrics import EXCHANGE_FETCHES, EXCHANGE_LAST_SUCCESS, EXCHANGE_RECORDS
from pipeline.services.content_ids import ContentIds, read_content_id_base
from pipeline.services.output import Output, Write, bulk_options, new_producer
from pipeline.state.log_reader import iter_to_end, read_latest

log = logging.getLogger(__name__)

SECRET_IN_TEXT = re.compile(r"(?i)(token|key|secret|password|authorization)([=:]\s*)[^&\s,'\"]+")


class CheckpointWentBack(Exception):
    """A fetched checkpoint older than the stored one: nothing of it is applied."""


def fetch_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}exchange-fetcher"


def redacted(exc: BaseException) -> str:
    """An error for the status route and the log, without anything that looks like a credential.
    python-threatexchange's auth exceptions carry their text in attributes of their own."""
    if isinstance(exc, SignalExchangeAPIMissingAuthException):
        text = exc.pretty_str().replace("\n", " ")
    elif isinstance(exc, SignalExchangeAPIInvalidAuthException):
        text = exc.message
    else:
        text = str(exc)
    return SECRET_IN_TEXT.sub(r"\1\2<redacted>", f"{type(exc).__name__}: {text}")[:500]


def initial_status(exchange: str, api: str) -> dict[str, Any]:
    return T.EXCHANGE_FETCH.codec.conform({"exchange": exchange, "api": api})


@dataclass
class FetchRun:
    """One fetch of one exchange, and the status record it keeps writing."""

    record: dict[str, Any]
    status: dict[str, Any]
    started: float
    applied: int = 0

    def progress(self, **changes: Any) -> dict[str, Any]:
        elapsed = max(time.time() - self.started, 1e-6)
        self.status.update(records_last_fetch=self.applied, records_per_s=round(self.applied / elapsed, 1),
                           updated_at=int(time.time() * 1000), **changes)
        return dict(self.status)


class ExchangeFetcher:
    """Fetches every enabled exchange every HMAS_EXCHANGE_FETCH_INTERVAL_S, and on request."""

    def __init__(self, settings: Settings, name: str = "exchange-fetcher") -> None:
        self.settings = settings
        self.name = name
        self.exchanges: dict[str, dict[str, Any]] = {}
        self.leader = asyncio.Event()
        self.last_start_ms: dict[str, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tx: AIOKafkaProducer | None = None
        self._claims: AIOKafkaProducer | None = None
        self._fetching: asyncio.Task | None = None
        self._loop: asyncio.Task | None = None

    # -- membership -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._claims = new_producer(self.settings, **bulk_options(self.settings))
        await self._claims.start()
        self._consumer = kafka_clients.aio_consumer(
            self.settings, group_id=fetch_group(self.settings),
            enable_auto_commit=False, auto_offset_reset="earliest", client_id=f"hmas-{self.name}",
            # a fetcher starved of CPU for a few seconds (converting on a busy host) keeps its place
            session_timeout_ms=int(self.settings.worker_session_timeout_s * 1000),
        )
        await self._consumer.start()
        self._consumer.subscribe([T.EXCHANGES.name(self.settings)], listener=Membership(self))
        self._loop = asyncio.create_task(self._follow_configs(), name=self.name)

    async def _gained(self, assigned: set[TopicPartition]) -> None:
        if not assigned:
            return
        assert self._consumer is not None
        self.exchanges.clear()
        await self._consumer.seek_to_beginning(*assigned)
        self._tx = kafka_clients.aio_producer(
            self.settings, transactional_id=fetch_group(self.settings),
            enable_idempotence=True, acks="all", max_request_size=self.settings.max_request_bytes,
            **bulk_options(self.settings),
        )
        await self._tx.start()  # fences the previous fetcher's producer
        self.leader.set()
        log.info("exchange fetcher elected", extra={"fetcher": self.name})

    async def _lost(self) -> None:
        if not self.leader.is_set():
            return
        self.leader.clear()
        await self._cancel_fetch()
        if self._tx is not None:
            await self._tx.stop()
            self._tx = None
        log.info("exchange fetcher stood down", extra={"fetcher": self.name})

    async def _cancel_fetch(self) -> None:
        if self._fetching is not None and not self._fetching.done():
            self._fetching.cancel()
            try:
                await self._fetching
            except (asyncio.CancelledError, Exception):
                pass

    async def run_until(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; raises what ended the fetcher's loop if it ended first."""
        await run_loop_until(self._loop, stop)

    async def stop(self) -> None:
        await cancel_loop(self._loop)
        await self._lost()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._claims is not None:
            await self._claims.stop()

    # -- scheduling -------------------------------------------------------------------------------
    async def _follow_configs(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    name = r.key.decode()
                    if r.value is None:
                        self.exchanges.pop(name, None)
                    else:
                        self.exchanges[name] = T.EXCHANGES.codec.decode(r.value)
            if self.leader.is_set() and (self._fetching is None or self._fetching.done()):
                due = self._due()
                if due is not None:
                    self._fetching = asyncio.create_task(self.fetch(due), name=f"fetch-{due['name']}")

    def _due(self) -> dict[str, Any] | None:
        now = int(time.time() * 1000)
        interval_ms = self.settings.exchange_fetch_interval_s * 1000
        for name, record in sorted(self.exchanges.items()):
            last = self.last_start_ms.get(name)
            requested = record["fetch_requested_at"] > (last or 0)
            if requested or (record["enabled"] and (last is None or now - last >= interval_ms)):
                return record
        return None

    # -- fetching ---------------------------------------------------------------------------------
    async def fetch(self, record: dict[str, Any]) -> dict[str, Any]:
        """Fetch one exchange to its end; returns the final status. Failures land in the status."""
        name = record["name"]
        self.last_start_ms[name] = int(time.time() * 1000)
        run: FetchRun | None = None
        bank = BankOfExchange(name, exchange_api(record["api"]), collab_config(record), self.settings.data_dir)
        try:
            stored, creds_record, content_id_base = await asyncio.to_thread(self._read_state, record, bank)
            run = FetchRun(record, stored, time.time())
            await self._commit(name, [], run.progress(running_fetch_start_ts=int(run.started)))
            await self._fetch_retrying(run, bank, creds_record, content_id_base)
        except asyncio.CancelledError:
            self.last_start_ms.pop(name, None)  # unfinished: due again when this fetcher is elected again
            raise
        except Exception as exc:
            error = redacted(exc)
            log.warning("exchange fetch failed", extra={"exchange": name, "error": error})
            EXCHANGE_FETCHES.labels(name, "failure").inc()
            if run is None:
                run = FetchRun(record, initial_status(name, record["api"]), time.time())
            await self._commit(name, [], run.progress(
                running_fetch_start_ts=None, last_fetch_complete_ts=int(time.time()), last_fetch_succeeded=False,
                last_error=error, up_to_date=False))
        finally:
            bank.close()
        return run.status

    async def _fetch_retrying(self, run: FetchRun, bank: BankOfExchange, creds_record: dict | None, base: int) -> None:
        """Fetch; a rate-limited fetch is tried again after a backoff, up to
        HMAS_EXCHANGE_FETCH_ATTEMPTS times, from the last checkpoint it committed."""
        attempt = 1
        while True:
            try:
                await self._fetch_into(run, bank, creds_record, base)
                return
            except Exception as exc:
                if not rate_limited(exc) or attempt >= self.settings.exchange_fetch_attempts:
                    raise
                wait = backoff_s(self.settings, attempt)
                log.warning("exchange fetch rate limited, retrying", extra={
                    "exchange": run.record["name"], "attempt": attempt, "retry_in_s": wait})
                attempt += 1
                await asyncio.sleep(wait)

    def _read_state(self, record: dict[str, Any], bank: BankOfExchange) -> tuple[dict[str, Any], dict | None, int]:
        """Blocking: loads the bank's exchange records; the stored status, credentials, content-id base."""
        name = record["name"]
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        bank.load(iter_to_end(self.settings, T.BANK_SIGNALS))
        stored = read_latest(self.settings, T.EXCHANGE_FETCH).get(name) or initial_status(name, record["api"])
        creds = read_latest(self.settings, T.EXCHANGE_CREDENTIALS).get(record["api"])
        return stored, creds, read_content_id_base(self.settings)

    async def _fetch_into(self, run: FetchRun, bank: BankOfExchange, creds_record: dict | None, base: int) -> None:
        record, name = run.record, run.record["name"]
        api_cls = bank.api_cls
        checkpoint_cls = api_cls.get_checkpoint_cls()
        stored = run.status["checkpoint"]
        previous: FetchCheckpointBase | None = (
            dataclass_json.dataclass_loads(stored, checkpoint_cls) if stored is not None else None)
        full = previous is None or previous.is_stale() or record["api"] in SNAPSHOT_APIS
        if full:
            previous = None
        creds = credentials_for(api_cls, creds_record, self.settings.secret_key)
        client = exchange_client(api_cls, bank.collab, creds, record["endpoint"])
        ids = ContentIds(Output(self.settings, lambda: self._claims), lambda: base)
        batches = fetch_batches(client.fetch_iter(list(FETCHED_SIGNAL_TYPES), previous), previous,
                                max(1, self.settings.exchange_batch_records))
        log.info("exchange fetch started", extra={"exchange": name, "full": full})
        committing: asyncio.Task | None = None  # the previous batch's transaction
        try:
            while True:
                # fetching, converting and the held map work in threads: the loop keeps the group's
                # heartbeats and commits the previous batch meanwhile
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    break
                converted, before, wanted = await asyncio.to_thread(_plan, bank, batch.items, full)
                new_ids = await ids.claim(bank.bank, wanted) if wanted else []
                writes = await asyncio.to_thread(bank.writes, converted, iter(new_ids), before)
                if committing is not None:
                    await committing  # one transaction at a time, in fetch order
                changes: dict[str, Any] = {"fetched_items": len(bank)}
                if batch.checkpoint is not None:
                    previous = batch.checkpoint
                    if not full:  # a full fetch commits its checkpoint when it has removed what is gone
                        changes.update(_checkpoint_fields(batch.checkpoint))
                run.applied += len(batch.items)
                committing = asyncio.create_task(self._commit_batch(name, writes, run, changes, len(batch.items)))
            if committing is not None:
                await committing
        except BaseException as exc:
            if committing is not None and not committing.done():
                if isinstance(exc, asyncio.CancelledError):
                    committing.cancel()  # the transaction aborts: a fenced or stopped fetcher
                await asyncio.gather(committing, return_exceptions=True)
            raise
        removals = bank.removals() if full else []
        now = int(time.time())
        final = {"running_fetch_start_ts": None, "last_fetch_complete_ts": now, "last_fetch_succeeded": True,
                 "last_success_ts": now, "last_error": None, "up_to_date": True, "fetched_items": len(bank)}
        if previous is not None:
            final.update(_checkpoint_fields(previous))
        await self._commit(name, removals, run.progress(**final))
        EXCHANGE_FETCHES.labels(name, "success").inc()
        EXCHANGE_LAST_SUCCESS.labels(name).set(now)
        log.info("exchange fetch done", extra={
            "exchange": name, "records": run.applied, "removed": len(removals),
            "held": len(bank), "per_s": run.status["records_per_s"]})

    async def _commit_batch(self, exchange: str, writes: list[Write], run: FetchRun, changes: dict[str, Any],
                            records: int) -> None:
        await self._commit(exchange, writes, run.progress(**changes))
        EXCHANGE_RECORDS.labels(exchange).inc(records)
        log.debug("exchange batch committed", extra={"exchange": exchange, "records": run.applied,
                                                     "per_s": run.status["records_per_s"]})

    async def _commit(self, exchange: str, writes: list[Write], status: dict[str, Any]) -> None:
        """Bank-signal records and the status after them, in one transaction."""
        producer = self._tx
        if producer is None:
            raise RuntimeError("not the elected exchange fetcher")
        async with producer.transaction():
            await Output(self.settings, lambda: producer).deliver_offsets(writes + [(T.EXCHANGE_FETCH, exchange, status)])


@dataclass
class FetchBatch:
    """Fetched records written in one transaction, and the checkpoint of the last delta they
    complete (None: no delta ends in them)."""

    items: list[tuple[Any, Any]]
    checkpoint: FetchCheckpointBase | None


def fetch_batches(deltas: Iterator[FetchDelta], previous: FetchCheckpointBase | None,
                  size: int) -> Iterator[FetchBatch]:
    """Blocking: an exchange's deltas regrouped into batches of `size` records (small deltas
    together, a large one split), each checked never to go back from the one before."""
    items: list[tuple[Any, Any]] = []
    checkpoint: FetchCheckpointBase | None = None
    for delta in deltas:
        _check_forward(previous, delta.checkpoint)
        previous = delta.checkpoint
        updates = list(delta.updates.items())
        taken = 0
        while len(updates) - taken > size - len(items):  # the delta goes on past this batch
            cut = taken + size - len(items)
            items += updates[taken:cut]
            taken = cut
            yield FetchBatch(items, checkpoint)
            items, checkpoint = [], None
        items += updates[taken:]
        checkpoint = delta.checkpoint
        if len(items) >= size:
            yield FetchBatch(items, checkpoint)
            items, checkpoint = [], None
    if items or checkpoint is not None:
        yield FetchBatch(items, checkpoint)


def _plan(bank: BankOfExchange, chunk: list[tuple[Any, Any]], full: bool) -> tuple[dict[str, Signals], Held, int]:
    """Blocking: a batch converted, marked seen on a full fetch, what the bank holds of it, and
    how many content ids it needs."""
    converted = bank.convert_batch(chunk)
    if full:
        bank.saw(converted)
    return (converted, *bank.held_before(converted))


def _checkpoint_fields(checkpoint: FetchCheckpointBase) -> dict[str, Any]:
    return {"checkpoint": dataclass_json.dataclass_dumps(checkpoint),
            "checkpoint_ts": checkpoint.get_progress_timestamp()}


def _check_forward(previous: FetchCheckpointBase | None, new: FetchCheckpointBase) -> None:
    """Upstream's rule: a checkpoint never goes back."""
    if previous is None:
        return
    old_ts, new_ts = previous.get_progress_timestamp(), new.get_progress_timestamp()
    if old_ts is not None and new_ts is not None and new_ts < old_ts:
        raise CheckpointWentBack(f"fetched checkpoint at {new_ts} is older than the stored one at {old_ts}")


class SoleMember(Protocol):
    """A process of which one member of a consumer group works: the one holding the partition."""

    async def _gained(self, assigned: set[TopicPartition]) -> None: ...

    async def _lost(self) -> None: ...



async def run_loop_until(loop: "asyncio.Task | None", stop: asyncio.Event) -> None:
    """Wait for `stop` or the end of a member's loop; raises what ended the loop if it ended first."""
    assert loop is not None, "start() first"
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, loop], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if loop.done():
        loop.result()


async def cancel_loop(loop: "asyncio.Task | None") -> None:
    """A member's loop cancelled and awaited (what it ended with is already logged)."""
    if loop is not None:
        loop.cancel()
        try:
            await loop
        except (asyncio.CancelledError, Exception):
            pass

class Membership(ConsumerRebalanceListener):
    """Tells a sole-member process when it gains or loses its group's partition."""

    def __init__(self, member: SoleMember) -> None:
        self.member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.member._lost()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.member._gained(assigned)
