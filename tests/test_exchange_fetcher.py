"""The exchange fetcher on the real broker: python-threatexchange's file, sample and an incremental
exchange fetched into banks, one transaction per batch, one fetcher per deployment."""

from __future__ import annotations

import asyncio
import typing as t
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from confluent_kafka.admin import AdminClient
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPIWithSimpleUpdates

from connectors.exchanges import sample_signals
from connectors.exchanges.config import EXCHANGE_APIS, exchange_record
from connectors.exchanges.control import configure, request_fetch, wait_for_fetch
from connectors.exchanges.fetcher import ExchangeFetcher, fetch_group
from pipeline import topics as T
from pipeline.services.output import DeliveryFailed
from pipeline.state.log_reader import read_latest

pytestmark = pytest.mark.kafka
PDQ = ["f" * 64, "0" * 64, "a" * 64, "5" * 64]
WAIT_S = 90


# -- an incremental exchange whose deltas and checkpoints a test scripts -------------------------
@dataclass
class ScriptedCheckpoint(state.FetchCheckpointBase):
    at: int = 0
    stale: bool = False

    def is_stale(self) -> bool:
        return self.stale

    def get_progress_timestamp(self) -> int:
        return self.at


@dataclass
class Script:
    # each fetch: the deltas fetch_iter yields, as (updates {pdq: tags or None}, checkpoint)
    fetches: list[list[tuple[dict[str, list[str] | None], ScriptedCheckpoint]]] = field(default_factory=list)
    checkpoints_given: list[ScriptedCheckpoint | None] = field(default_factory=list)


SCRIPT = Script()


@dataclass
class TaggedRecord(state.FetchedSignalMetadata):
    tags: list[str] = field(default_factory=list)

    def get_as_opinions(self) -> t.Sequence[state.SignalOpinion]:
        return [state.SignalOpinion(False, state.SignalOpinionCategory.POSITIVE_CLASS, set(self.tags))]


class ScriptedExchange(SignalExchangeAPIWithSimpleUpdates[CollaborationConfigBase, ScriptedCheckpoint, TaggedRecord]):
    @classmethod
    def get_name(cls) -> str:
        return "scripted"

    @staticmethod
    def get_config_cls() -> t.Type[CollaborationConfigBase]:
        return CollaborationConfigBase

    @staticmethod
    def get_checkpoint_cls() -> t.Type[ScriptedCheckpoint]:
        return ScriptedCheckpoint

    @staticmethod
    def get_record_cls() -> t.Type[TaggedRecord]:
        return TaggedRecord

    @classmethod
    def for_collab(cls, collab: CollaborationConfigBase) -> "ScriptedExchange":
        return cls()

    def fetch_iter(self, supported_signal_types, checkpoint):
        SCRIPT.checkpoints_given.append(checkpoint)
        for updates, cp in SCRIPT.fetches.pop(0):
            yield state.FetchDelta(
                {("pdq", v): (None if tags is None else TaggedRecord(tags)) for v, tags in updates.items()}, cp)


# -- helpers ------------------------------------------------------------------------------------
def configured(settings, name: str, api: str, api_json: dict | None = None) -> dict:
    """An exchange that fetches only on request (disabled), and its bank."""
    record = exchange_record(name, api, api_json or {}, enabled=False)
    configure(settings, record)
    return record


def bank_signals(settings, bank: str) -> dict[str, dict]:
    return {r["value"]: r for r in read_latest(settings, T.BANK_SIGNALS).values() if r["bank"] == bank}


async def fetched(settings, record: dict) -> dict:
    """Ask for a fetch as `hmas exchange fetch` does, and wait for the status that ends it."""
    requested = request_fetch(settings, record)
    status = await asyncio.to_thread(wait_for_fetch, settings, record["name"], requested, WAIT_S)
    assert status is not None, f"no fetch of {record['name']} finished"
    return status


async def started(fetcher: ExchangeFetcher) -> ExchangeFetcher:
    await fetcher.start()
    await asyncio.wait_for(fetcher.leader.wait(), WAIT_S)
    return fetcher


# -- tests --------------------------------------------------------------------------------------
def test_file_exchange_fetch_update_and_delete(settings, tmp_path):
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"pdq {PDQ[0]}\npdq {PDQ[1]}\nsha1 ignored\n")
    record = configured(settings, "FILE_X", "local_file", {"filename": str(hashes)})

    async def scenario() -> None:
        fetcher = await started(ExchangeFetcher(settings))
        try:
            status = await fetched(settings, record)
            held = bank_signals(settings, "FILE_X")
            assert set(held) == {PDQ[0], PDQ[1]}
            assert status["last_fetch_succeeded"] and status["up_to_date"] and status["fetched_items"] == 2
            assert held[PDQ[0]]["metadata"]["exchange"] == "FILE_X"
            assert held[PDQ[0]]["bank_content_id"] != held[PDQ[1]]["bank_content_id"]
            kept_id = held[PDQ[1]]["bank_content_id"]

            hashes.write_text(f"pdq {PDQ[1]}\npdq {PDQ[2]}\n")  # one line gone, one new
            status = await fetched(settings, record)
            held = bank_signals(settings, "FILE_X")
            assert set(held) == {PDQ[1], PDQ[2]} and status["fetched_items"] == 2
            assert held[PDQ[1]]["bank_content_id"] == kept_id

            hashes.write_text("")
            await fetched(settings, record)
            assert bank_signals(settings, "FILE_X") == {}

            hashes.unlink()  # the exchange fails: visibly, and the bank keeps what it had
            hashes.write_text(f"pdq {PDQ[3]}\n")
            await fetched(settings, record)
            hashes.unlink()
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] is False and "No such file" in status["last_error"]
            assert set(bank_signals(settings, "FILE_X")) == {PDQ[3]}
        finally:
            await fetcher.stop()

    asyncio.run(scenario())


def fetch_once(settings, record) -> dict:
    """Start a fetcher, have it fetch the exchange once, stop it: the fetch status it left."""
    async def scenario() -> dict:
        fetcher = await started(ExchangeFetcher(settings))
        try:
            return await fetched(settings, record)
        finally:
            await fetcher.stop()

    return asyncio.run(scenario())


def test_sample_exchange_fills_its_bank(settings):
    record = configured(settings, "SAMPLE_X", "sample")

    status = fetch_once(settings, record)
    held = read_latest(settings, T.BANK_SIGNALS).values()
    assert sorted((r["signal_type"], r["value"]) for r in held if r["bank"] == "SAMPLE_X") == sample_signals()
    assert status["fetched_items"] == len(sample_signals()) and status["records_last_fetch"] == len(sample_signals())


def test_incremental_fetch_checkpoints_deletes_and_stale_refetch(settings, monkeypatch):
    monkeypatch.setitem(EXCHANGE_APIS, "scripted", ScriptedExchange)
    monkeypatch.setattr(SCRIPT, "fetches", [
        [({PDQ[0]: ["a"], PDQ[1]: []}, ScriptedCheckpoint(at=10)), ({PDQ[2]: []}, ScriptedCheckpoint(at=20))],
        [({PDQ[0]: None, PDQ[2]: ["b"]}, ScriptedCheckpoint(at=30))],  # a deletion and an update
        [({PDQ[3]: []}, ScriptedCheckpoint(at=25))],  # goes back: refused, nothing applied
        [({PDQ[3]: []}, ScriptedCheckpoint(at=40, stale=True))],
        [({PDQ[1]: []}, ScriptedCheckpoint(at=50))],  # the full refetch after the stale checkpoint
    ])
    monkeypatch.setattr(SCRIPT, "checkpoints_given", [])
    settings = settings.with_overrides(exchange_batch_records=1)  # a transaction per record
    record = configured(settings, "SCRIPTED_X", "scripted")

    async def scenario() -> None:
        fetcher = await started(ExchangeFetcher(settings))
        try:
            status = await fetched(settings, record)
            assert set(bank_signals(settings, "SCRIPTED_X")) == {PDQ[0], PDQ[1], PDQ[2]}
            assert status["checkpoint_ts"] == 20 and status["fetched_items"] == 3
            assert bank_signals(settings, "SCRIPTED_X")[PDQ[0]]["metadata"]["exchange_tags"] == '["a"]'

            status = await fetched(settings, record)
            held = bank_signals(settings, "SCRIPTED_X")
            assert set(held) == {PDQ[1], PDQ[2]} and status["checkpoint_ts"] == 30
            assert held[PDQ[2]]["metadata"]["exchange_tags"] == '["b"]'
            assert held[PDQ[2]]["metadata"]["exchange_category"] == "positive_class"

            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] is False and "older than the stored one" in status["last_error"]
            assert status["checkpoint_ts"] == 30 and set(bank_signals(settings, "SCRIPTED_X")) == {PDQ[1], PDQ[2]}

            status = await fetched(settings, record)
            assert status["checkpoint_ts"] == 40 and PDQ[3] in bank_signals(settings, "SCRIPTED_X")

            status = await fetched(settings, record)  # stale: everything again, what is gone is removed
            assert set(bank_signals(settings, "SCRIPTED_X")) == {PDQ[1]}
            assert status["checkpoint_ts"] == 50 and status["fetched_items"] == 1
        finally:
            await fetcher.stop()

    asyncio.run(scenario())
    assert [cp.at if cp else None for cp in SCRIPT.checkpoints_given] == [None, 20, 30, 30, None]


def test_missing_credentials_show_on_the_status(settings, monkeypatch):
    monkeypatch.delenv("TX_NCMEC_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.tx_ncmec_credentials either
    record = configured(settings, "NCMEC_X", "ncmec", {"environment": "https://exttest.cybertip.org/hashsharing"})

    status = fetch_once(settings, record)
    assert status["last_fetch_succeeded"] is False and status["checkpoint_ts"] is None
    assert "missing authentification" in status["last_error"] and "TX_NCMEC_CREDENTIALS" in status["last_error"]


def test_exactly_one_fetcher_and_a_deposed_one_cannot_commit(settings):
    record = configured(settings, "ONE_X", "sample")

    async def scenario() -> None:
        first = await started(ExchangeFetcher(settings, name="first"))
        second = ExchangeFetcher(settings, name="second")
        await second.start()
        try:
            admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
            for _ in range(WAIT_S * 4):  # until both are members of the group
                [group] = admin.describe_consumer_groups([fetch_group(settings)]).values()
                if len(group.result().members) == 2 and (first.leader.is_set() or second.leader.is_set()):
                    break
                await asyncio.sleep(0.25)
            assert first.leader.is_set() != second.leader.is_set()
            leader, standby = (first, second) if first.leader.is_set() else (second, first)

            # a new holder of the fetcher's transactional id fences the old one's producer
            usurper = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                       transactional_id=fetch_group(settings), enable_idempotence=True)
            await usurper.start()
            with pytest.raises(DeliveryFailed) as fenced:
                await leader._commit("ONE_X", [(T.BANKS, "FENCED", T.BANKS.codec.conform({"name": "FENCED"}))],
                                     {"exchange": "ONE_X", "api": "sample"})
            await usurper.stop()
            assert isinstance(fenced.value.__cause__, ProducerFenced)
            assert "FENCED" not in read_latest(settings, T.BANKS)

            await leader.stop()  # the standby takes over and fetches
            await asyncio.wait_for(standby.leader.wait(), WAIT_S)
            assert (await fetched(settings, record))["last_fetch_succeeded"]
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())


def test_a_fetcher_killed_mid_fetch_leaves_whole_batches_and_the_next_one_completes(kafka_broker, tmp_path):
    import os
    import signal
    import time

    from pipeline.admin import ensure_topics
    from tests.pipeline_env import HmasProcess, pipeline_env, settings_from

    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_EXCHANGE_BATCH_RECORDS="500")
    settings = settings_from(env)
    ensure_topics(settings.bootstrap_servers, settings)
    values = [f"{i:064x}" for i in range(1, 20_001)]
    hashes = tmp_path / "many.txt"
    hashes.write_text("".join(f"pdq {v}\n" for v in values))
    record = configured(settings, "MANY_X", "local_file", {"filename": str(hashes)})

    first = HmasProcess(env, tmp_path / "first.log", "--log-level", "debug", "fetcher").start()
    request_fetch(settings, record)
    deadline = time.monotonic() + WAIT_S
    while "exchange batch committed" not in first.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(first.proc.pid, signal.SIGKILL)  # right after its first transaction
    first.proc.wait()
    status = read_latest(settings, T.EXCHANGE_FETCH).get("MANY_X")
    assert status is not None and status["running_fetch_start_ts"] is not None
    assert 0 < status["records_last_fetch"] < len(values)

    held = bank_signals(settings, "MANY_X")
    assert len(held) % 500 == 0 and len(held) < len(values)  # whole transactions only

    second = HmasProcess(env, tmp_path / "second.log", "fetcher").start()
    try:
        done = wait_for_fetch(settings, "MANY_X", request_fetch(settings, record), WAIT_S * 2)
    finally:
        second.stop()
    assert done is not None and done["last_fetch_succeeded"] and done["fetched_items"] == len(values)
    after = bank_signals(settings, "MANY_X")
    assert set(after) == set(values)
    assert len({r["bank_content_id"] for r in after.values()}) == len(values)
    assert all(after[v]["bank_content_id"] == r["bank_content_id"] for v, r in held.items())
