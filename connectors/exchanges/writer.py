"""The exchange writer: exactly one in a deployment delivers hma.exchange-outbox to the exchanges.

Writers join the consumer group `<prefix>exchange-writer` on hma.exchange-outbox (one partition),
like fetchers on hma.exchanges: the member holding the partition writes, with the group's
transactional id, which fences any earlier holder. Each outbox record is delivered through the
exchange's write adapter (writeback.py), tried up to HMAS_EXCHANGE_WRITE_ATTEMPTS times with an
exponential backoff, then dead-lettered on hma.dead-letters with the last error. Its outcome (the
hma.exchange-delivered record of its idempotency key, or the dead letter), the exchange's
hma.exchange-write-status and the outbox offset are committed in one transaction: a writer that
dies after a delivery and before that commit leaves the record to the next writer, which delivers
it again, an idempotent call (writeback.py); a copy of a write that was committed is skipped.

The writer also keeps shared banks published: every HMAS_EXCHANGE_SHARE_INTERVAL_S it compares
what banks with `share_to` hold with what hma.exchange-delivered says their exchanges were sent,
and puts the difference on the outbox (so switching sharing on publishes the bank's earlier
content too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from connectors.exchanges.clients import exchange_client
from connectors.exchanges.config import collab_config, exchange_api
from connectors.exchanges.credentials import credentials_for
from connectors.exchanges.fetcher import Membership, cancel_loop, redacted, run_loop_until
from connectors.exchanges.outbox import already_delivered, share_writes, wanted_shares
from connectors.exchanges.retry import backoff_s
from connectors.exchanges.writeback import WriteRefused, deliver, write_api
from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.config import Settings
from pipeline.deadletters import dead_letter
from pipeline.metrics import EXCHANGE_WRITES
from pipeline.services.output import Output, Write
from pipeline.state.log_reader import read_latest

log = logging.getLogger(__name__)
STAGE = "exchange-writer"
CREDENTIALS_TTL_S = 5.0


def writer_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}exchange-writer"


def initial_write_status(exchange: str) -> dict[str, Any]:
    return T.EXCHANGE_WRITE_STATUS.codec.conform({"exchange": exchange})


class ExchangeWriter:
    def __init__(self, settings: Settings, name: str = "exchange-writer") -> None:
        self.settings = settings
        self.name = name
        self.leader = asyncio.Event()
        self.delivered: dict[str, dict[str, Any]] = {}  # idempotency key -> hma.exchange-delivered value
        self.statuses: dict[str, dict[str, Any]] = {}  # exchange -> hma.exchange-write-status value
        self.pending_shares: dict[str, str] = {}  # share key -> op put on the outbox, not yet delivered
        self._consumer: AIOKafkaConsumer | None = None
        self._tx: AIOKafkaProducer | None = None
        self._loop: asyncio.Task | None = None
        self._last_share = 0.0
        self._committing = asyncio.Lock()  # one transaction at a time on the writer's producer
        self._credentials: dict[str, dict[str, Any]] = {}  # API name -> sealed hma.exchange-credentials value
        self._credentials_read = float("-inf")

    # -- membership (the fetcher's Membership listener calls these) -----------------------------
    async def start(self) -> None:
        self._consumer = kafka_clients.aio_consumer(
            self.settings, group_id=writer_group(self.settings), enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            client_id=f"hmas-{self.name}",
        )
        await self._consumer.start()
        self._consumer.subscribe([T.EXCHANGE_OUTBOX.name(self.settings)], listener=Membership(self))
        self._loop = asyncio.create_task(self._run(), name=self.name)

    async def _gained(self, assigned: set[TopicPartition]) -> None:
        if not assigned:
            return
        self._tx = kafka_clients.aio_producer(
            self.settings, transactional_id=writer_group(self.settings),
            enable_idempotence=True, acks="all", max_request_size=self.settings.max_request_bytes,
        )
        await self._tx.start()  # fences the previous writer's producer
        self.delivered = await asyncio.to_thread(read_latest, self.settings, T.EXCHANGE_DELIVERED)
        self.statuses = await asyncio.to_thread(read_latest, self.settings, T.EXCHANGE_WRITE_STATUS)
        self.pending_shares.clear()
        self._last_share = 0.0
        self.leader.set()
        log.info("exchange writer elected", extra={"writer": self.name, "delivered": len(self.delivered)})

    async def _lost(self) -> None:
        if not self.leader.is_set():
            return
        self.leader.clear()
        if self._tx is not None:
            await self._tx.stop()
            self._tx = None
        log.info("exchange writer stood down", extra={"writer": self.name})

    async def run_until(self, stop: asyncio.Event) -> None:
        await run_loop_until(self._loop, stop)

    async def stop(self) -> None:
        await cancel_loop(self._loop)
        await self._lost()
        if self._consumer is not None:
            await self._consumer.stop()

    # -- the loop ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            if not self.leader.is_set():
                # fetched while the election is still reading its state: read them again once elected
                assigned = self._consumer.assignment()
                for tp, records in batches.items():
                    if tp in assigned:
                        self._consumer.seek(tp, records[0].offset)
                continue
            records = [r for rs in batches.values() for r in rs]
            try:
                configs = await asyncio.to_thread(read_latest, self.settings, T.EXCHANGES) if records else {}
                for record in records:
                    if not self.leader.is_set():
                        break  # deposed: the next writer starts from the last committed outbox offset
                    await self._handle(record, configs)
                if time.monotonic() - self._last_share >= self.settings.exchange_share_interval_s:
                    self._last_share = time.monotonic()
                    await self.share()
            except Exception as exc:
                if self.leader.is_set():
                    raise
                # deposed mid-batch: the next writer starts from the last committed outbox offset
                log.info("exchange writer lost its partition mid-batch", extra={"error": redacted(exc)})

    async def share(self) -> int:
        """Put on the outbox what shared banks hold and their exchanges lack, and withdrawals of
        what they no longer hold; returns how many writes."""
        banks, configs = await asyncio.gather(*(
            asyncio.to_thread(read_latest, self.settings, spec) for spec in (T.BANKS, T.EXCHANGES)))
        sharing = any(bank["share_to"] for bank in banks.values())
        if not sharing and not any(key.startswith("share/") for key in self.delivered):
            return 0  # nothing shared, nothing to withdraw: the bank signals are not read
        signals = await asyncio.to_thread(read_latest, self.settings, T.BANK_SIGNALS) if sharing else {}
        writes = share_writes(wanted_shares(banks, signals.values(), configs), self.delivered, self.pending_shares)
        if writes:
            await self._commit(writes)
            for _, key, record in writes:
                assert record is not None and isinstance(key, str)
                self.pending_shares[key] = record["op"]
            log.info("exchange shares queued", extra={"writes": len(writes)})
        return len(writes)

    async def _handle(self, message: ConsumerRecord, configs: dict[str, dict[str, Any]]) -> None:
        try:
            write = T.EXCHANGE_OUTBOX.codec.decode(message.value)
        except ValueError as exc:
            await self._finish(message, None, None, f"undecodable outbox record: {exc}")
            return
        exchange = write["exchange"]
        status = self.statuses.setdefault(exchange, initial_write_status(exchange))
        if already_delivered(write, self.delivered):
            status["skipped"] += 1
            EXCHANGE_WRITES.labels(exchange, "skipped").inc()
            await self._finish(message, write, status, None, attempts=0)
            return
        attempts, error = 0, None
        while attempts < max(1, self.settings.exchange_write_attempts):
            attempts += 1
            status["last_attempt_ts"] = int(time.time())
            try:
                await asyncio.to_thread(self._deliver, configs.get(exchange), write, attempts > 1)
                error = None
                break
            except WriteRefused as exc:
                error = redacted(exc)
                break
            except Exception as exc:  # an exchange's or a client's error: retried
                error = redacted(exc)
            if attempts < self.settings.exchange_write_attempts:
                status["retries"] += 1
                EXCHANGE_WRITES.labels(exchange, "retried").inc()
                wait = backoff_s(self.settings, attempts)
                log.warning("exchange write failed, retrying", extra={
                    "exchange": exchange, "op": write["op"], "attempt": attempts, "retry_in_s": wait, "error": error})
                await asyncio.sleep(wait)
        await self._finish(message, write, status, error, attempts)

    def _deliver(self, config: dict[str, Any] | None, write: dict[str, Any], retrying: bool) -> None:
        """Blocking: build the exchange's client and make the write. Stored credentials are read
        at most every CREDENTIALS_TTL_S, and again for every retry, so renewed ones apply to it."""
        if config is None:
            raise WriteRefused(f"no exchange {write['exchange']} is configured")
        api_cls = exchange_api(config["api"])
        if retrying or time.monotonic() - self._credentials_read >= CREDENTIALS_TTL_S:
            self._credentials = read_latest(self.settings, T.EXCHANGE_CREDENTIALS)
            self._credentials_read = time.monotonic()
        creds_record = self._credentials.get(config["api"])
        creds = credentials_for(api_cls, creds_record, self.settings.secret_key)
        client = exchange_client(api_cls, collab_config(config), creds, config["endpoint"])
        deliver(write_api(client), write)

    async def _finish(self, message: ConsumerRecord, write: dict[str, Any] | None, status: dict[str, Any] | None,
                      error: str | None, attempts: int = 1) -> None:
        """The outcome of one outbox record and its offset, in one transaction."""
        writes: list[Write] = []
        now = int(time.time())
        if error is not None:
            writes.append((T.DEAD_LETTERS, message.key, dead_letter(
                message.topic, message.partition, message.offset, message.key, message.value,
                f"exchange write failed after {attempts} attempt(s): {error}", STAGE, self.settings.max_message_bytes)))
        done: dict[str, Any] | None = None
        if write is not None and status is not None:
            key = write["idempotency_key"]
            if error is None and attempts:
                done = None if write["op"] == "share_remove" else T.EXCHANGE_DELIVERED.codec.conform({
                    "exchange": write["exchange"], "op": write["op"], "attempts": attempts, "delivered_at": now * 1000})
                writes.append((T.EXCHANGE_DELIVERED, key, done))
                status.update(delivered=status["delivered"] + 1, last_success_ts=now, last_error=None)
                EXCHANGE_WRITES.labels(write["exchange"], "delivered").inc()
            elif error is not None:
                status.update(dead_lettered=status["dead_lettered"] + 1, last_error=error)
                EXCHANGE_WRITES.labels(write["exchange"], "dead_lettered").inc()
            status["updated_at"] = now * 1000
            writes.append((T.EXCHANGE_WRITE_STATUS, write["exchange"], dict(status)))
        offsets = {TopicPartition(message.topic, message.partition): OffsetAndMetadata(message.offset + 1, "")}
        await self._commit(writes, offsets)
        if write is not None and self.pending_shares.get(write["idempotency_key"]) == write["op"]:
            del self.pending_shares[write["idempotency_key"]]  # delivered, or to be queued again if dead
        if write is not None and error is None and attempts:
            key = write["idempotency_key"]
            if done is None:
                self.delivered.pop(key, None)
            else:
                self.delivered[key] = done
            log.info("exchange write delivered", extra={
                "exchange": write["exchange"], "op": write["op"], "attempts": attempts})

    async def _commit(self, writes: list[Write], offsets: dict[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        producer = self._tx
        if producer is None:
            raise RuntimeError("not the elected exchange writer")
        async with self._committing, producer.transaction():
            await Output(self.settings, lambda: producer).deliver(writes)
            if offsets:
                await producer.send_offsets_to_transaction(offsets, writer_group(self.settings))
